"""The fast paths under the log and the read models give exactly what the slow ones gave:
events decode as eventsourcing's own decoder reads them, and a batch of rows sent as one
statement ends as the same rows applied one by one."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import psycopg
import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from psycopg import sql

from pim.eventstore import FastJSONTranscoder
from pim.projections.base import EventHandler, Projection, RowsStatement
from pim.projections.statements import Statements


def _transcoders() -> tuple[JSONTranscoder, JSONTranscoder]:
    fast, reference = FastJSONTranscoder(), JSONTranscoder()
    for transcoder in (fast, reference):
        for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
            transcoder.register(transcoding)
    return fast, reference


@pytest.mark.parametrize(
    "state",
    [
        {"timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, UTC), "fields": {"a": [1, {"b": None}]}},
        # typed values below the top level: the general decoder is used
        {"timestamp": datetime.now(UTC), "fields": {"d": Decimal("1.10"), "u": uuid.uuid4()}},
        # a client's text that looks like a type tag is still text
        {"title": 'say "_type_" and "_data_"', "n": 1.5, "big": 2**70},
        # a client's object that IS shaped like a tag (eventsourcing reads it as one)
        {"attributes": {"_type_": "decimal_str", "_data_": "2.5"}},
        {"nan": float("nan"), "text": "é ✓ \u2028"},
        {"nested": {"_type_": "only one key"}},
    ],
)
def test_fast_decoding_equals_eventsourcings_own(state: dict[str, Any]) -> None:
    fast, reference = _transcoders()
    data = reference.encode(state)
    assert repr(fast.decode(data)) == repr(reference.decode(data))


@pytest.mark.parametrize(
    "state",
    [
        {"timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, UTC), "fields": {"title": "é"}},
        {"timestamp": datetime.now(UTC), "created": datetime(2020, 1, 1, tzinfo=UTC)},
        {"no_timestamp": True},
    ],
)
def test_encoding_is_byte_for_byte_eventsourcings_own(state: dict[str, Any]) -> None:
    fast, reference = _transcoders()
    assert fast.encode(state) == reference.encode(state)


def test_an_unknown_type_tag_fails_as_eventsourcing_fails() -> None:
    fast, reference = _transcoders()
    data = b'{"x":{"_type_":"no_such_type","_data_":1}}'
    with pytest.raises(TypeError) as expected:
        reference.decode(data)
    with pytest.raises(TypeError) as got:
        fast.decode(data)
    assert str(got.value) == str(expected.value)


class _Rows(Projection):
    name: ClassVar[str] = "rows-test"
    handlers: ClassVar[dict[type[Any], EventHandler]] = {}

    def ddl(self) -> list[str]:
        return []


def test_rows_for_one_target_twice_in_a_run_apply_in_order(make_database: Any) -> None:
    """UPDATE ... FROM applies one of two rows matching the same target: the run is split, so
    the later change wins as it would row by row."""
    with psycopg.connect(make_database(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text, n int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO t (id, v) SELECT g, 'start' FROM generate_series(1, 3) g")
        update = RowsStatement(
            sql.SQL(
                "UPDATE t SET v = r.v, n = t.n + 1 FROM jsonb_to_recordset(%s::jsonb)"
                " AS r(id int, v text) WHERE t.id = r.id"
            ),
            key=("id",),
        )
        projection = _Rows()
        for row in ({"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 1, "v": "c"}):
            projection.defer(update, row)
        with conn.transaction():
            statements = Statements(conn)
            projection.write_inserts(statements)
            statements.flush()
        rows = conn.execute("SELECT id, v, n FROM t ORDER BY id").fetchall()
    assert rows == [(1, "c", 2), (2, "b", 1), (3, "start", 0)]


def test_projected_events_show_a_nul_as_u_fffd_and_leave_escaped_backslashes_alone() -> None:
    from pim.projections.base import without_nul

    values = ["a\x00b", "a\\u0000", "x\\\x00", "\x00\x00", "plain"]
    stored = json.dumps({"t": values}).encode()
    assert json.loads(without_nul(stored))["t"] == [
        "a\ufffdb",
        "a\\u0000",
        "x\\\ufffd",
        "\ufffd\ufffd",
        "plain",
    ]
    assert without_nul(b'{"t":"plain"}') == b'{"t":"plain"}'
