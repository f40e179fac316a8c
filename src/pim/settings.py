"""One settings object, read from the environment once at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on", "y"}


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    redis_url: str | None
    data_dir: Path
    host: str
    port: int
    jwt_secret: str | None
    jwt_public_key: str | None
    jwks_file: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    webhook_allow_private: bool
    read_your_writes_timeout_s: float
    projection_batch_size: int
    job_batch_size: int
    log_level: str
    access_log: bool
    sweep_interval_s: float
    background_nice: int
    jobs_per_tenant: int
    job_processes: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            database_url=get("PIM_DATABASE_URL"),
            redis_url=get("PIM_REDIS_URL"),
            data_dir=Path(get("PIM_DATA_DIR") or "./.pim").resolve(),
            host=get("PIM_HOST") or "127.0.0.1",
            port=int(get("PIM_PORT") or "8000"),
            jwt_secret=get("PIM_JWT_SECRET"),
            jwt_public_key=get("PIM_JWT_PUBLIC_KEY"),
            jwks_file=get("PIM_JWKS_FILE"),
            jwt_issuer=get("PIM_JWT_ISSUER"),
            jwt_audience=get("PIM_JWT_AUDIENCE"),
            webhook_allow_private=_flag(get("PIM_WEBHOOK_ALLOW_PRIVATE")),
            read_your_writes_timeout_s=float(get("PIM_READ_YOUR_WRITES_TIMEOUT") or "2.0"),
            projection_batch_size=int(get("PIM_PROJECTION_BATCH_SIZE") or "1000"),
            job_batch_size=int(get("PIM_JOB_BATCH_SIZE") or "500"),
            log_level=(get("PIM_LOG_LEVEL") or "info").lower(),
            access_log=_flag(get("PIM_ACCESS_LOG")),
            sweep_interval_s=float(get("PIM_SWEEP_INTERVAL") or "15"),
            background_nice=int(get("PIM_BACKGROUND_NICE") or "10"),
            jobs_per_tenant=max(1, int(get("PIM_JOBS_PER_TENANT") or "2")),
            job_processes=max(1, int(get("PIM_JOB_PROCESSES") or "3")),
        )
