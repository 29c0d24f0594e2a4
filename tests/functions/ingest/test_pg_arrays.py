"""ingest/pg_arrays.py against real PostgreSQL: the arrays it dumps in one pass are the arrays given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from ingest.pg_arrays import DeviceIds, UtcTimestamps, register_array_dumpers


@pytest.fixture
def conn(database_url: str):
    with psycopg.connect(database_url) as connection:
        register_array_dumpers(connection)
        yield connection


@pytest.mark.parametrize(
    "ids",
    [
        ["dev-1", "a.b:c@d_e-f", "x" * 128],
        ["NULL", "", "{}", "a,b", " spaced "],  # kept as strings: every item is quoted
        ['quote"d', "back\\slash", '\\"'],  # escaped item by item
        [],
    ],
)
def test_device_ids_come_back_as_given(conn, ids):
    assert conn.execute("SELECT %t::text[]", (DeviceIds(ids),)).fetchone()[0] == ids


def test_timestamps_come_back_as_the_same_instants(conn):
    base = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    stamps = [base, base - timedelta(days=400), base.astimezone(timezone(timedelta(hours=5, minutes=30))),
              datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)]  # fmt: skip

    (back,) = conn.execute("SELECT %b::timestamptz[]", (UtcTimestamps(stamps),)).fetchone()

    assert back == stamps


def test_an_empty_timestamp_array(conn):
    assert conn.execute("SELECT %b::timestamptz[]", (UtcTimestamps(),)).fetchone()[0] == []


def test_the_arrays_unnest_side_by_side_as_the_bookkeeping_reads_them(conn):
    ids = DeviceIds(["dev-b", "dev-a"])
    stamps = UtcTimestamps([datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)])
    rows = conn.execute("SELECT * FROM unnest(%t::text[], %b::timestamptz[])", (ids, stamps)).fetchall()
    assert rows == list(zip(ids, stamps, strict=True))
