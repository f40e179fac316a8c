"""JWT verification with a pinned algorithm list, and minting of local development tokens."""

from __future__ import annotations

import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import jwt

SCOPE_READ = "pim:read"
# Claims that are dates: NumericDate (RFC 7519), a JSON number of seconds.
NUMERIC_DATES = ("exp", "nbf", "iat")
# A token longer than this is refused before any work on it (a real one is well under 2 KiB).
MAX_TOKEN_BYTES = 8 * 1024
SCOPE_WRITE = "pim:write"
CACHE_SIZE = 4096  # verified tokens kept in memory
SECRET_FILE = "jwt_secret"  # noqa: S105 - a file name, not a secret


class InvalidToken(Exception):
    """The token is missing, malformed, expired, badly signed or lacks required claims."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified identity behind a request."""

    subject: str
    tenant_id: str
    org_ids: frozenset[str]
    scopes: frozenset[str]
    email: str | None

    def can_read(self) -> bool:
        # pim:write implies pim:read: a writer must be able to see what it wrote.
        return SCOPE_READ in self.scopes or SCOPE_WRITE in self.scopes

    def can_write(self) -> bool:
        return SCOPE_WRITE in self.scopes


def _canonical_uuid(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(UUID(value))
    except ValueError:
        return None


class TokenVerifier:
    """Verifies bearer tokens: HS256 with a shared secret, or RS256/ES256 with a public key or a
    JWKS file. The accepted algorithms are fixed by the configured key, never by the token."""

    def __init__(
        self,
        *,
        secret: str | None = None,
        public_key: str | None = None,
        jwks_file: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys: list[tuple[Any, list[str], str | None]] = []  # (key, algorithms, kid)
        if secret:
            self._keys.append((secret, ["HS256"], None))
        if public_key:
            # PIM_JWT_PUBLIC_KEY holds the PEM itself or the path of a PEM file.
            pem = (
                public_key
                if public_key.lstrip().startswith("-----BEGIN")
                else (Path(public_key).read_text())
            )
            self._keys.append((pem, ["RS256", "ES256"], None))
        if jwks_file:
            jwks = jwt.PyJWKSet.from_json(Path(jwks_file).read_text())
            for jwk in jwks.keys:
                algorithms = (
                    [jwk.algorithm_name]
                    if jwk.algorithm_name in ("RS256", "ES256")
                    else ["RS256", "ES256"]
                )
                self._keys.append((jwk.key, algorithms, jwk.key_id))
        if not self._keys:
            raise ValueError("no JWT verification key configured")
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; InvalidToken otherwise. Verified tokens are cached
        until they expire (clients reuse one token for many requests)."""
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken(f"token longer than {MAX_TOKEN_BYTES} bytes")
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() < expires_at:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal, expires_at = self._verify(token)
        self._cache[token] = (principal, expires_at)
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        kid = header.get("kid")
        candidates = [k for k in self._keys if k[2] is None or kid is None or k[2] == kid]
        last_error: Exception | None = None
        for key, algorithms, _ in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=algorithms,
                    issuer=self.issuer,
                    audience=self.audience,
                    options={
                        "require": ["exp", "sub"],
                        "verify_aud": self.audience is not None,
                        "verify_iss": self.issuer is not None,
                    },
                )
            except jwt.ExpiredSignatureError as exc:
                raise InvalidToken("token expired") from exc
            except (jwt.PyJWTError, ValueError, TypeError) as exc:
                last_error = exc
                continue
            for name in NUMERIC_DATES:
                value = claims.get(name)
                # PyJWT reads a numeric string ("9999999999") as a date; the JWT spec says
                # NumericDate, a JSON number.
                if name in claims and (
                    isinstance(value, bool) or not isinstance(value, int | float)
                ):
                    raise InvalidToken(f"token claim {name!r} must be a number")
            return self._principal(claims), float(claims["exp"])
        raise InvalidToken("invalid token") from last_error

    @staticmethod
    def _principal(claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        tenant_id = _canonical_uuid(claims.get("tenant_id"))
        org_ids_claim = claims.get("org_ids")
        scope = claims.get("scope", "")
        email = claims.get("email")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("token has no subject")
        # The subject and email are recorded on every event and projected into text columns,
        # which cannot hold NUL.
        if "\x00" in subject or (isinstance(email, str) and "\x00" in email):
            raise InvalidToken("token subject or email contains a NUL character")
        if tenant_id is None:
            raise InvalidToken("token has no valid tenant_id claim")
        if not isinstance(org_ids_claim, list):
            raise InvalidToken("token has no org_ids claim")
        org_ids = {o for o in (_canonical_uuid(v) for v in org_ids_claim) if o}
        if not isinstance(scope, str):
            raise InvalidToken("token scope must be a space-separated string")
        return Principal(
            subject=subject,
            tenant_id=tenant_id,
            org_ids=frozenset(org_ids),
            scopes=frozenset(scope.split()),
            email=email if isinstance(email, str) else None,
        )


def load_or_create_secret(data_dir: Path) -> str:
    """The development HS256 secret kept in PIM_DATA_DIR (created once, mode 0600)."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(secret)
    return secret


def mint_token(
    secret: str,
    *,
    tenant_id: str,
    org_ids: list[str],
    scopes: list[str] | None = None,
    subject: str = "local-user",
    email: str | None = None,
    ttl_s: int = 3600,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": subject,
        "tenant_id": tenant_id,
        "org_ids": org_ids,
        "scope": " ".join([SCOPE_READ, SCOPE_WRITE] if scopes is None else scopes),
        "iat": now,
        "exp": now + ttl_s,
    }
    if email:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")


def describe_claims(token: str) -> str:
    """Unverified claims as JSON, for the CLI's --show option (never logs the token)."""
    return json.dumps(jwt.decode(token, options={"verify_signature": False}), indent=2)
