"""The DDL of the service's own tables, in one place: snapshots, projection positions,
idempotency receipts, webhooks and their deliveries. ``bootstrap`` runs it (idempotent, under
the migration lock) when a process starts.

Two kinds of table are created elsewhere, by what owns their layout: the two event logs
(eventsourcing creates them; ``eventstore/recorders.py`` adds the tenant index and heads
trigger) and the read models, whose tables each projection declares because a blue/green
rebuild creates them again under a generation's name (``projections/runner.py``)."""

from __future__ import annotations

SNAPSHOTS_TABLE = "catalog_snapshots"

SNAPSHOTS_DDL: list[str] = [
    f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} (
        originator_id text PRIMARY KEY,
        originator_version integer NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        schema text NOT NULL
    )""",
]

POSITIONS_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS projection_positions (
        name text NOT NULL,
        tenant_id text NOT NULL,
        position bigint NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, tenant_id)
    )""",
]

IDEMPOTENCY_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        tenant_id uuid NOT NULL,
        key text NOT NULL,
        fingerprint text NOT NULL,
        state text NOT NULL,
        status_code integer,
        response_headers jsonb,
        response_body bytea,
        created_at timestamptz NOT NULL DEFAULT now(),
        locked_until timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, key)
    )""",
    # The claim a write must still hold to record its answer (tables made before claims).
    "ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS claim uuid",
]

WEBHOOKS_DDL: list[str] = [
    """CREATE TABLE IF NOT EXISTS webhooks (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        url text NOT NULL,
        events text[] NOT NULL,
        secret text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        created_by text NOT NULL,
        PRIMARY KEY (tenant_id, id)
    )""",
    # Resource shape (the API contract): a webhook is never changed, so it stays at version 1; the
    # columns are added to tables made before they existed.
    "ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS version integer NOT NULL DEFAULT 1",
    "ALTER TABLE webhooks ADD COLUMN IF NOT EXISTS updated_at timestamptz",
    "CREATE INDEX IF NOT EXISTS webhooks_by_creation ON webhooks (tenant_id, created_at, id)",
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        tenant_id uuid NOT NULL,
        id uuid NOT NULL,
        webhook_id uuid NOT NULL,
        event_id uuid NOT NULL,
        event_type text NOT NULL,
        payload bytea NOT NULL,
        status text NOT NULL DEFAULT 'PENDING'
            CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
        attempts integer NOT NULL DEFAULT 0,
        last_status_code integer,
        last_error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        delivered_at timestamptz,
        PRIMARY KEY (tenant_id, id)
    )""",
    # a webhook's deliveries in creation order (scanned forwards or backwards)
    """CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook
        ON webhook_deliveries (tenant_id, webhook_id, created_at DESC, id DESC)""",
    # the delivery actor only knows the delivery id
    "CREATE UNIQUE INDEX IF NOT EXISTS webhook_deliveries_by_id ON webhook_deliveries (id)",
    # the sweeper looks for PENDING deliveries whose message was lost (see stale_deliveries)
    """CREATE INDEX IF NOT EXISTS webhook_deliveries_pending
        ON webhook_deliveries (updated_at) WHERE status = 'PENDING'""",
]

# Everything above, in the order it is run.
SERVICE_TABLES_DDL: list[str] = [*SNAPSHOTS_DDL, *POSITIONS_DDL, *IDEMPOTENCY_DDL, *WEBHOOKS_DDL]
