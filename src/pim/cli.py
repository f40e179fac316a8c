"""The ``pim`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime
from uuid import UUID

import msgspec
import psycopg

from pim.auth.tokens import SCOPE_READ, SCOPE_WRITE, load_or_create_secret, mint_token
from pim.bootstrap import build_services
from pim.infra.embedded import embedded_services
from pim.projections import operations
from pim.queries.audit import AuditFilters, build_log_query, to_entry
from pim.server import run_job_process, run_projections, run_worker, serve, serve_workers
from pim.services import Services
from pim.settings import Settings


def _datetime(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("include a time zone, e.g. 2026-01-01T00:00:00Z")
    return parsed


def cmd_serve(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.workers > 1:
        serve_workers(settings, args.workers, whole_service=True)
    else:
        serve(settings, whole_service=True)
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.workers > 1:
        serve_workers(settings, args.workers)
    else:
        serve(settings, whole_service=False)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.job_process:
        run_job_process(Settings.from_env())
    else:
        run_worker(Settings.from_env(), threads=args.threads, processes=args.processes)
    return 0


def cmd_projections_run(_: argparse.Namespace) -> int:
    run_projections(Settings.from_env())
    return 0


@contextlib.contextmanager
def _services() -> Iterator[Services]:
    with embedded_services(Settings.from_env()) as resolved:
        services = build_services(resolved)
        try:
            yield services
        finally:
            services.close()


def cmd_projections_status(_: argparse.Namespace) -> int:
    with _services() as services:
        projections, partitions = operations.status(services)
    print(f"{'projection':<12} {'tenants':>8} {'behind':>8} {'lag':>10} {'events/s':>10}")
    for row in projections:
        print(
            f"{row.name:<12} {row.tenants:>8} {row.behind:>8} {row.lag:>10}"
            f" {row.events_per_s:>10.1f}"
        )
    print()
    print(f"{'partition':<10} {'tenants':>8} {'behind':>8} {'lag':>10} {'events/s':>10}  runner")
    for part in partitions:
        print(
            f"{part.partition:<10} {part.tenants:>8} {part.behind:>8} {part.lag:>10}"
            f" {part.events_per_s:>10.1f}  {part.runner or '-'}"
        )
    return 0


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    with _services() as services:
        reached = operations.rebuild(services, args.name, show_progress=not args.quiet)
    print(f"rebuilt {args.name} up to position {reached}; reads switched to the new tables")
    return 0


def cmd_projections_verify(args: argparse.Namespace) -> int:
    with _services() as services:
        equal = operations.verify(services, args.name, show_progress=not args.quiet)
    print(
        f"{args.name}: {'equal to a rebuild from the log' if equal else 'DIFFERS from a rebuild'}"
    )
    return 0 if equal else 1


def cmd_token(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    secret = settings.jwt_secret or load_or_create_secret(settings.data_dir)
    scopes = args.scope or [SCOPE_READ, SCOPE_WRITE]
    print(
        mint_token(
            secret,
            tenant_id=args.tenant,
            org_ids=args.org,
            scopes=scopes,
            subject=args.sub,
            email=args.email,
            ttl_s=args.ttl,
        )
    )
    return 0


def cmd_audit_replay(args: argparse.Namespace) -> int:
    """Stream a tenant's events from the log as NDJSON, oldest first (compliance replay)."""
    settings = Settings.from_env()
    tenant = str(args.tenant)
    filters = AuditFilters(since=args.since, until=args.until)
    encoder = msgspec.json.Encoder()
    out = sys.stdout.buffer
    with embedded_services(settings) as resolved:
        services = build_services(resolved)
        try:
            with psycopg.connect(services.database_url, autocommit=True) as conn:
                after: int | None = None
                while True:
                    query, params = build_log_query(
                        tenant, filters, newest_first=False, after=after, limit=1000
                    )
                    rows = conn.execute(query, params).fetchall()
                    for row in rows:
                        entry = to_entry(
                            services.store, row[0], row[1], row[2], row[3], bytes(row[4])
                        )
                        out.write(encoder.encode(entry) + b"\n")
                    if len(rows) < 1000:
                        break
                    after = int(rows[-1][0])
            out.flush()
        finally:
            services.close()
    return 0


def _uuid(value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UUID: {value}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pim", description="Event-sourced PIM service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the whole service (API + projections)")
    serve.add_argument(
        "--workers", type=int, default=1, help="API processes (an integer, default 1)"
    )
    serve.set_defaults(func=cmd_serve)

    api = sub.add_parser("api", help="run the HTTP API only")
    api.add_argument("--workers", type=int, default=1, help="API processes (an integer, default 1)")
    api.set_defaults(func=cmd_api)

    worker = sub.add_parser("worker", help="run job and webhook workers (dramatiq on Redis)")
    worker.add_argument(
        "--threads", type=int, default=4, help="webhook deliveries at once (default 4)"
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=None,
        help="job processes, each running one job at a time (default: PIM_JOB_PROCESSES, 3)",
    )
    worker.add_argument("--job-process", action="store_true", help=argparse.SUPPRESS)
    worker.set_defaults(func=cmd_worker)

    projections = sub.add_parser("projections", help="projection operations")
    psub = projections.add_subparsers(dest="action", required=True)
    prun = psub.add_parser("run", help="follow the log and keep the read models current")
    prun.set_defaults(func=cmd_projections_run)
    pstatus = psub.add_parser("status", help="position, lag and throughput of each projection")
    pstatus.set_defaults(func=cmd_projections_status)
    names = list(operations.PROJECTIONS)
    prebuild = psub.add_parser("rebuild", help="blue/green rebuild from position 0")
    prebuild.add_argument("name", choices=names)
    prebuild.add_argument("--quiet", action="store_true", help="no progress bar")
    prebuild.set_defaults(func=cmd_projections_rebuild)
    pverify = psub.add_parser("verify", help="rebuild into scratch tables and diff with live")
    pverify.add_argument("name", choices=names)
    pverify.add_argument("--quiet", action="store_true", help="no progress bar")
    pverify.set_defaults(func=cmd_projections_verify)

    token = sub.add_parser("token", help="print a token for local use")
    token.add_argument("--tenant", required=True, type=_uuid, help="the tenant's UUID")
    token.add_argument(
        "--org",
        required=True,
        type=_uuid,
        action="append",
        help="an organization's UUID (repeat for several)",
    )
    token.add_argument(
        "--scope",
        action="append",
        choices=[SCOPE_READ, SCOPE_WRITE],
        help="a scope to grant (repeat; default: both)",
    )
    token.add_argument("--sub", default="local-user", help="the subject (default local-user)")
    token.add_argument("--email", help="the actor's email, shown in audit entries")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    audit = sub.add_parser("audit", help="audit and compliance")
    asub = audit.add_subparsers(dest="action", required=True)
    replay = asub.add_parser("replay", help="stream a tenant's events as NDJSON")
    replay.add_argument("--tenant", required=True, type=_uuid, help="the tenant's UUID")
    replay.add_argument(
        "--since",
        type=_datetime,
        help="first time included, RFC 3339 with a zone, e.g. 2026-01-01T00:00:00Z",
    )
    replay.add_argument(
        "--until",
        type=_datetime,
        help="first time excluded, RFC 3339 with a zone, e.g. 2026-02-01T00:00:00+01:00",
    )
    replay.set_defaults(func=cmd_audit_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    level = (os.environ.get("PIM_LOG_LEVEL") or "info").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    # pgserver logs every command it runs (and their output) at INFO.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    if level != "DEBUG":  # dramatiq announces each worker's start and stop at INFO
        logging.getLogger("dramatiq").setLevel(logging.WARNING)
    # pgserver asks platformdirs for a runtime directory, which warns where there is none.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    # Background processes of `pim serve` run at a lower CPU priority than its API.
    nice = int(os.environ.get("PIM_NICE") or "0")
    if nice > 0:
        os.nice(nice)
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
