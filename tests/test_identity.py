"""Identity exactly as API.md specifies, tried from the attacker's side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from pim.auth.tokens import InvalidToken, TokenVerifier
from tests.conftest import JWT_SECRET, Tenant, assert_problem


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_a_request_without_a_token_is_401_with_a_bearer_challenge(tenant: Tenant) -> None:
    response = tenant.get("/products", headers={"Authorization": ""})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Token abc", "Bearer a.b.c"],
)
def test_malformed_authorization_is_401(tenant: Tenant, authorization: str) -> None:
    response = tenant.get("/products", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


def test_an_expired_token_is_401(tenant: Tenant) -> None:
    token = tenant.token(ttl_s=-10)
    assert_problem(tenant.get("/products", headers=tenant.headers(token)), 401)


def test_a_token_signed_with_another_secret_is_401(tenant: Tenant) -> None:
    claims = jwt.decode(tenant.token(), options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256")
    assert_problem(tenant.get("/products", headers=tenant.headers(forged)), 401)


def test_an_unsigned_alg_none_token_is_401(tenant: Tenant) -> None:
    claims = jwt.decode(tenant.token(), options={"verify_signature": False})
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert_problem(tenant.get("/products", headers=tenant.headers(unsigned)), 401)


def test_a_token_without_exp_is_401(tenant: Tenant) -> None:
    claims = jwt.decode(tenant.token(), options={"verify_signature": False})
    del claims["exp"]
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    assert_problem(tenant.get("/products", headers=tenant.headers(token)), 401)


def test_a_tampered_payload_is_401(tenant: Tenant, other_tenant: Tenant) -> None:
    header, _, signature = tenant.token().split(".")
    claims = jwt.decode(tenant.token(), options={"verify_signature": False})
    claims["tenant_id"] = other_tenant.tenant_id
    tampered = f"{header}.{_b64(claims)}.{signature}"
    response = other_tenant.get("/products", headers=other_tenant.headers(tampered))
    assert_problem(response, 401)


@pytest.mark.parametrize("header", ["X-Tenant-ID", "X-Org-ID"])
def test_missing_identity_headers_are_400(tenant: Tenant, header: str) -> None:
    headers = tenant.headers()
    del headers[header]
    response = httpx.get(f"{tenant.base_url}/api/v1/pim/products", headers=headers)
    assert_problem(response, 400)
    assert header in response.json()["detail"]


@pytest.mark.parametrize("header", ["X-Tenant-ID", "X-Org-ID"])
def test_non_uuid_identity_headers_are_400(tenant: Tenant, header: str) -> None:
    assert_problem(tenant.get("/products", headers={header: "acme"}), 400)


def test_a_token_for_another_tenant_is_403(tenant: Tenant, other_tenant: Tenant) -> None:
    # A valid token of tenant A presented with tenant B's id.
    headers = tenant.headers()
    headers["X-Tenant-ID"] = other_tenant.tenant_id
    response = httpx.get(f"{tenant.base_url}/api/v1/pim/products", headers=headers)
    assert_problem(response, 403)


def test_an_org_not_in_the_token_is_403(tenant: Tenant) -> None:
    response = tenant.get("/products", headers={"X-Org-ID": str(uuid.uuid4())})
    assert_problem(response, 403)


def test_a_read_only_token_cannot_write(tenant: Tenant) -> None:
    token = tenant.token(scopes=["pim:read"])
    response = tenant.post(
        "/products", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_problem(response, 403)
    assert tenant.get("/products", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_a_token_without_any_pim_scope_cannot_read(tenant: Tenant) -> None:
    token = tenant.token(scopes=[])
    response = tenant.get("/products", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 403)


def test_another_tenants_product_is_404_for_every_verb(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    product = tenant.create_product(title="Secret")
    path = f"/products/{product['id']}"
    assert_problem(other_tenant.get(path), 404)
    assert_problem(other_tenant.put(path, json={"title": "pwned"}), 404)
    assert_problem(other_tenant.patch(path, json={"title": "pwned"}), 404)
    assert_problem(other_tenant.delete(path), 404)
    assert other_tenant.get("/products").json() == []
    # ... and the owner's product is untouched.
    assert tenant.get(path).json()["title"] == "Secret"
    assert tenant.get(path).json()["version"] == 1


def test_a_missing_product_and_a_foreign_one_answer_identically(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    product = tenant.create_product()
    foreign = other_tenant.get(f"/products/{product['id']}")
    missing = other_tenant.get(f"/products/{uuid.uuid4()}")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"] == missing.json()["detail"]


def test_health_probes_need_no_token(tenant: Tenant) -> None:
    assert httpx.get(f"{tenant.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{tenant.base_url}/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "projections": "ok", "redis": "ok"}


@pytest.mark.parametrize("claim", ["sub", "email"])
def test_a_token_whose_identity_holds_a_nul_is_401(tenant: Tenant, claim: str) -> None:
    """Who acted is recorded on every event and projected into text columns."""
    claims = jwt.decode(tenant.token(), options={"verify_signature": False})
    claims[claim] = "someone\x00else"
    token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    assert_problem(
        tenant.post("/products", json={"title": "x"}, headers=tenant.headers(token)), 401
    )
    assert tenant.get("/products").json() == []


# -- the verifier itself, for the key types a deployment can configure ----------------------


def _claims(**extra: object) -> dict[str, object]:
    return {
        "sub": "u1",
        "tenant_id": str(uuid.uuid4()),
        "org_ids": [str(uuid.uuid4())],
        "scope": "pim:read",
        "exp": int(time.time()) + 60,
        **extra,
    }


def test_rs256_tokens_verify_with_a_public_key_and_hs256_forgeries_do_not() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    verifier = TokenVerifier(public_key=public_pem)
    principal = verifier.verify(jwt.encode(_claims(), private, algorithm="RS256"))
    assert principal.subject == "u1"
    # Key confusion: an HS256 token "signed" with the public key must not pass.
    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{_b64(_claims())}"
    mac = hmac.new(public_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    with pytest.raises(InvalidToken):
        verifier.verify(forged)


def test_es256_tokens_verify_through_a_jwks_file(tmp_path: object) -> None:
    from pathlib import Path

    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwk.update({"kid": "k1", "alg": "ES256", "use": "sig"})
    path = Path(str(tmp_path)) / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    verifier = TokenVerifier(jwks_file=str(path))
    token = jwt.encode(_claims(), private, algorithm="ES256", headers={"kid": "k1"})
    assert verifier.verify(token).subject == "u1"
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidToken):
        verifier.verify(jwt.encode(_claims(), other, algorithm="ES256", headers={"kid": "k1"}))


def test_issuer_and_audience_are_checked_when_configured() -> None:
    verifier = TokenVerifier(secret="s" * 32, issuer="https://idp", audience="pim")
    good = jwt.encode(_claims(iss="https://idp", aud="pim"), "s" * 32, algorithm="HS256")
    assert verifier.verify(good).subject == "u1"
    for claims in (
        _claims(iss="https://evil", aud="pim"),
        _claims(iss="https://idp", aud="x"),
        _claims(),
    ):
        with pytest.raises(InvalidToken):
            verifier.verify(jwt.encode(claims, "s" * 32, algorithm="HS256"))


def test_tokens_and_secrets_never_appear_in_the_service_log(tenant: Tenant, service: Any) -> None:
    token = tenant.token()
    tenant.get("/products", headers={"Authorization": f"Bearer {token}"})
    tenant.get("/products", headers={"Authorization": "Bearer not-a-valid-token.x.y"})
    tenant.post(
        "/products", json={"title": "logged?"}, headers={"Authorization": f"Bearer {token}"}
    )
    log = service.log()
    assert "/api/v1/pim/products" in log  # the access log is on, so requests are logged
    for secret in (token, token.split(".")[2], "not-a-valid-token", JWT_SECRET):
        assert secret not in log


def test_a_public_key_can_be_given_as_a_pem_file_path(tmp_path: Any) -> None:
    from pathlib import Path

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = Path(str(tmp_path)) / "public.pem"
    path.write_bytes(pem)
    verifier = TokenVerifier(public_key=str(path))
    assert verifier.verify(jwt.encode(_claims(), private, algorithm="RS256")).subject == "u1"
