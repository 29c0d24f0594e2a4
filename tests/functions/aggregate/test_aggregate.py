"""The aggregate against real PostgreSQL, with hand-computed fixtures.

Telemetry is inserted with SQL the way the ingest does (one statement: readings ON CONFLICT DO NOTHING, the
dirty hours of the rows actually inserted, the device registry). Every expected number below was worked
out by hand from the readings listed next to it, never by the code under test.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest
from aggregate import handler
from aggregate.service import run_full_recompute, run_incremental
from common.db import Database
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

PLUS_2 = timezone(timedelta(hours=2))
KPI_COLUMNS = (
    "message_count, active_minutes, inactive_minutes, uptime_pct, avg_rss, min_rss, max_rss, min_battery, "
    "avg_temperature, stddev_temperature, distinct_seq_count, expected_count, completeness_pct, last_seen, is_closed"
)

INSERT_READINGS = """
WITH inserted AS (
    INSERT INTO telemetry (device_id, ts, seq, rss, battery, temperature)
    SELECT %(device)s, r.ts, r.seq, r.rss, r.battery, r.temperature
    FROM unnest(%(ts)s::timestamptz[], %(seq)s::int8[], %(rss)s::float4[], %(battery)s::float4[],
                %(temperature)s::float4[]) AS r(ts, seq, rss, battery, temperature)
    ON CONFLICT DO NOTHING
    RETURNING device_id, ts
), dirty AS (
    INSERT INTO kpi_dirty_hours (device_id, hour_start)
    SELECT DISTINCT device_id, date_trunc('hour', ts, 'UTC') FROM inserted
    ON CONFLICT DO NOTHING
), seen AS (
    INSERT INTO devices AS d (device_id, first_seen, last_seen, is_test)
    SELECT device_id, min(ts), max(ts), %(is_test)s FROM inserted GROUP BY device_id
    ON CONFLICT (device_id) DO UPDATE
        SET first_seen = least(d.first_seen, excluded.first_seen),
            last_seen = greatest(d.last_seen, excluded.last_seen)
)
SELECT count(*) FROM inserted
"""


@dataclass(frozen=True)
class R:
    """One reading: ts, seq, rss and the optional sensors."""

    ts: datetime
    seq: int
    rss: float = -70.0
    battery: float | None = None
    temperature: float | None = None


def utc(hour: int, minute: int = 0, second: int = 0, micro: int = 0, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, micro, tzinfo=UTC)


def _floats(values: list[float | None]) -> list[float | None]:
    return [None if v is None else float(v) for v in values]


def insert(url: str, device: str, readings: list[R], is_test: bool = False) -> int:
    """Insert like the ingest, in one transaction; return the rows actually inserted."""
    days = sorted({r.ts.astimezone(UTC).date() for r in readings})
    params = {
        "device": device,
        "ts": [r.ts for r in readings],
        "seq": [r.seq for r in readings],
        "rss": _floats([r.rss for r in readings]),
        "battery": _floats([r.battery for r in readings]),
        "temperature": _floats([r.temperature for r in readings]),
        "is_test": is_test,
    }
    with psycopg.connect(url) as conn:
        conn.execute("SELECT telemetry_ensure_partitions(%s::date[])", (days,))
        return conn.execute(INSERT_READINGS, params).fetchone()[0]


def kpi(url: str, device: str, minutes: int, start: datetime) -> dict | None:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            f"SELECT {KPI_COLUMNS} FROM device_kpi WHERE device_id = %s AND window_minutes = %s AND window_start = %s",
            (device, minutes, start),
        ).fetchone()


def all_rows(url: str, table: str) -> list[tuple]:
    key = "device_id, window_minutes, window_start" if table == "device_kpi" else "window_start"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        names = [c.name for c in conn.execute(f"SELECT * FROM {table} LIMIT 0").description]
    stamp = names.index("computed_at")
    return [row[:stamp] + row[stamp + 1 :] for row in rows]


def count(url: str, query: str, *params) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchone()[0]


# Device a, 12:00-12:05: a gap (seq 12, 13 lost), a redelivered reading, +02:00 timestamps, a reading a
# microsecond before the boundary and one exactly on it (which belongs to the 12:05 window).
DEVICE_A = [
    R(utc(12, 0, 0), 10, rss=-70, battery=90, temperature=20),
    R(utc(12, 0, 30), 11, rss=-72, battery=89.5, temperature=22),
    R(datetime(2024, 3, 10, 14, 2, 10, tzinfo=PLUS_2), 14, rss=-80, battery=89, temperature=24),  # 12:02:10Z
    R(utc(12, 4, 59, 999_000), 15, rss=-60),
    R(utc(12, 5, 0), 16, rss=-65),
]


def test_five_minute_and_hourly_kpis_by_hand(url, db):
    assert insert(url, "a", DEVICE_A) == 5
    assert insert(url, "a", [DEVICE_A[1]]) == 0  # redelivered: same (device, ts, seq), not stored twice
    run_incremental(db, now=utc(12, 7))

    first = kpi(url, "a", 5, utc(12, 0))
    assert first["message_count"] == 4
    assert first["active_minutes"] == 3  # 12:00, 12:02, 12:04
    assert first["inactive_minutes"] == 2
    assert first["uptime_pct"] == pytest.approx(60.0)
    assert first["avg_rss"] == pytest.approx(-70.5)  # (-70 - 72 - 80 - 60) / 4
    assert (first["min_rss"], first["max_rss"], first["min_battery"]) == (-80, -60, 89)
    assert first["avg_temperature"] == pytest.approx(22.0)
    assert first["stddev_temperature"] == pytest.approx(2.0)  # sample stddev of 20, 22, 24
    assert (first["distinct_seq_count"], first["expected_count"]) == (4, 6)  # 10, 11, 14, 15 of 10..15
    assert first["completeness_pct"] == pytest.approx(400 / 6)
    assert first["last_seen"] == utc(12, 4, 59, 999_000)
    assert first["is_closed"] is True

    boundary = kpi(url, "a", 5, utc(12, 5))  # open at 12:07: partial, recomputed when it closes
    assert (boundary["message_count"], boundary["active_minutes"], boundary["uptime_pct"]) == (1, 1, 20.0)
    assert (boundary["expected_count"], boundary["completeness_pct"]) == (1, 100.0)  # a single reading
    assert boundary["min_battery"] is None and boundary["avg_temperature"] is None
    assert boundary["stddev_temperature"] is None
    assert boundary["is_closed"] is False
    assert kpi(url, "a", 5, utc(12, 10)) is None  # open and empty: no row yet

    hour = kpi(url, "a", 60, utc(12))
    assert (hour["message_count"], hour["active_minutes"], hour["inactive_minutes"]) == (5, 4, 56)
    assert hour["uptime_pct"] == pytest.approx(400 / 60)
    assert hour["avg_rss"] == pytest.approx(-69.4)  # (-282 - 65) / 5
    assert (hour["distinct_seq_count"], hour["expected_count"]) == (5, 7)  # 10..16 without 12, 13
    assert hour["completeness_pct"] == pytest.approx(500 / 7)
    assert hour["is_closed"] is False


def test_closed_windows_after_silence_get_zero_rows_and_the_hour_is_consistent(url, db):
    insert(url, "a", DEVICE_A)
    run_incremental(db, now=utc(12, 7))
    run_incremental(db, now=utc(13, 1))  # closes 12:05 .. 12:55 and the hour

    assert kpi(url, "a", 5, utc(12, 5))["is_closed"] is True
    for minute in range(10, 60, 5):
        silent = kpi(url, "a", 5, utc(12, minute))
        assert (silent["message_count"], silent["active_minutes"], silent["inactive_minutes"]) == (0, 0, 5)
        assert (silent["uptime_pct"], silent["expected_count"], silent["distinct_seq_count"]) == (0.0, 0, 0)
        assert silent["completeness_pct"] is None and silent["avg_rss"] is None and silent["last_seen"] is None
    assert kpi(url, "a", 5, utc(13)) is None  # not closed at 13:01 and no reading
    with psycopg.connect(url) as conn:
        five = conn.execute(
            "SELECT count(*), sum(message_count), sum(active_minutes), min(min_rss), max(max_rss),"
            " sum(distinct_seq_count), max(last_seen) FROM device_kpi"
            " WHERE device_id = 'a' AND window_minutes = 5 AND window_start >= %s AND window_start < %s",
            (utc(12), utc(13)),
        ).fetchone()
    hour = kpi(url, "a", 60, utc(12))
    assert five == (12, 5, 4, -80, -60, 5, utc(12, 5))
    assert (hour["message_count"], hour["active_minutes"], hour["min_rss"], hour["max_rss"]) == (5, 4, -80, -60)
    assert (hour["distinct_seq_count"], hour["last_seen"], hour["is_closed"]) == (5, utc(12, 5), True)


def test_seq_counter_resets_wraps_and_resent_seqs(url, db):
    insert(url, "reset", [R(utc(12, 0, 0), 7), R(utc(12, 0, 20), 8), R(utc(12, 0, 40), 0), R(utc(12, 1), 1)])
    insert(url, "reset-gap", [R(utc(12, 0), 98), R(utc(12, 1), 99), R(utc(12, 2), 0), R(utc(12, 3), 2)])
    insert(url, "wrap", [R(utc(12, 0), 2**32 - 2), R(utc(12, 1), 2**32 - 1), R(utc(12, 2), 0)])
    insert(url, "resent", [R(utc(12, 0, 0), 5), R(utc(12, 0, 20), 5), R(utc(12, 0, 40), 6)])
    run_incremental(db, now=utc(12, 5))

    expected = {  # (message_count, distinct_seq_count, expected_count, completeness_pct)
        "reset": (4, 4, 4, 100.0),  # 7, 8 | 0, 1: 2 + 2
        "reset-gap": (4, 4, 5, 80.0),  # 98, 99 | 0, 2: 2 + 3
        "wrap": (3, 3, 3, 100.0),  # 4294967294, 4294967295 | 0
        "resent": (3, 2, 2, 100.0),  # seq 5 twice with two timestamps counts once
    }
    for device, numbers in expected.items():
        row = kpi(url, device, 5, utc(12))
        assert (
            row["message_count"],
            row["distinct_seq_count"],
            row["expected_count"],
            row["completeness_pct"],
        ) == numbers, device


def test_late_reading_recomputes_its_windows_on_the_next_run(url, db):
    insert(url, "a", DEVICE_A)
    run_incremental(db, now=utc(12, 7))
    assert kpi(url, "a", 5, utc(12, 0))["message_count"] == 4

    insert(url, "a", [R(utc(12, 1, 15), 12, rss=-90)])  # arrives after its window was aggregated
    insert(url, "a", [R(utc(9, 30), 3, rss=-50)])  # and one for an hour long closed
    summary = run_incremental(db, now=utc(12, 8))

    assert summary.dirty_hours == 2
    late = kpi(url, "a", 5, utc(12, 0))
    assert (late["message_count"], late["active_minutes"], late["min_rss"]) == (5, 4, -90)
    assert (late["distinct_seq_count"], late["expected_count"]) == (5, 6)  # seq 13 still missing
    assert kpi(url, "a", 60, utc(12))["message_count"] == 6
    old = kpi(url, "a", 5, utc(9, 30))
    assert (old["message_count"], old["is_closed"]) == (1, True)
    assert kpi(url, "a", 60, utc(9))["message_count"] == 1
    # first_seen moved back to 09:30: the closed windows of that hour after it are rows, the ones before not
    assert kpi(url, "a", 5, utc(9, 35))["message_count"] == 0
    assert kpi(url, "a", 5, utc(9, 25)) is None


def test_fleet_availability_per_window(url, db):
    insert(url, "a", [R(utc(12, 1), 1), R(utc(12, 6), 2), R(utc(12, 11), 3)])
    insert(url, "b", [R(utc(12, 2), 1)])  # then silent
    insert(url, "c", [R(utc(12, 12), 1)])  # registered from 12:12 on
    insert(url, "t", [R(utc(12, 1), 1), R(utc(12, 6), 2)], is_test=True)  # never counted
    run_incremental(db, now=utc(12, 4))  # first run: watermark 12:00, nothing closed yet
    run_incremental(db, now=utc(12, 16))

    with psycopg.connect(url) as conn:
        fleet = conn.execute(
            "SELECT window_start, registered_devices, active_devices, inactive_devices, availability_pct"
            " FROM fleet_kpi WHERE is_closed ORDER BY window_start"
        ).fetchall()
    assert fleet == [
        (utc(12, 0), 2, 2, 0, 100.0),  # a, b
        (utc(12, 5), 2, 1, 1, 50.0),  # a; b silent
        (utc(12, 10), 3, 2, 1, pytest.approx(200 / 3)),  # a, c; b silent
    ]


def test_fleet_availability_now_view(url):
    now = datetime.now(UTC)
    insert(url, "fresh", [R(now - timedelta(minutes=1), 1)])
    insert(url, "stale", [R(now - timedelta(minutes=20), 1)])
    insert(url, "test", [R(now, 1)], is_test=True)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT * FROM fleet_availability_now").fetchone()
    assert row == (2, 1, 1, 50.0)


def test_windows_are_utc_whatever_the_session_time_zone(url):
    kathmandu = make_conninfo(url, options="-c TimeZone=Asia/Kathmandu")  # +05:45
    insert(kathmandu, "a", DEVICE_A)
    with psycopg.connect(kathmandu) as conn:  # a mark made with a local-time date_trunc: 17:45 local = 12:00Z
        conn.execute("INSERT INTO kpi_dirty_hours VALUES ('a', date_trunc('hour', %s::timestamptz))", (utc(12, 20),))
    local_db = Database(lambda: kathmandu)
    try:
        run_incremental(local_db, now=utc(12, 7))
    finally:
        local_db.reset()
    first = kpi(url, "a", 5, utc(12, 0))
    assert (first["message_count"], first["active_minutes"], first["expected_count"]) == (4, 3, 6)
    assert kpi(url, "a", 60, utc(12))["message_count"] == 5
    with psycopg.connect(url) as conn:
        starts = [row[0] for row in conn.execute("SELECT DISTINCT window_start FROM device_kpi ORDER BY 1")]
    assert all(start.minute % 5 == 0 and start.second == 0 for start in starts)


def test_rerunning_is_idempotent(url, db):
    insert(url, "a", DEVICE_A)
    insert(url, "b", [R(utc(12, 2), 1)])
    run_incremental(db, now=utc(13, 1))
    device_rows, fleet_rows = all_rows(url, "device_kpi"), all_rows(url, "fleet_kpi")

    with psycopg.connect(url) as conn:  # the same hours dirty again: same rows
        conn.execute("INSERT INTO kpi_dirty_hours SELECT device_id, %s FROM devices", (utc(12),))
    run_incremental(db, now=utc(13, 1))
    assert (all_rows(url, "device_kpi"), all_rows(url, "fleet_kpi")) == (device_rows, fleet_rows)

    run_full_recompute(db, utc(12), utc(13), now=utc(13, 1))
    run_full_recompute(db, utc(12), utc(13), now=utc(13, 1))
    assert (all_rows(url, "device_kpi"), all_rows(url, "fleet_kpi")) == (device_rows, fleet_rows)


def test_a_failed_run_loses_no_dirty_mark(url, db):
    insert(url, "a", DEVICE_A)
    with psycopg.connect(url) as conn:  # fault: the KPI upsert fails
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$;"
            "CREATE TRIGGER refuse BEFORE INSERT ON device_kpi FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    with pytest.raises(psycopg.errors.RaiseException, match="injected fault"):
        run_incremental(db, now=utc(12, 7))
    assert count(url, "SELECT count(*) FROM kpi_pending_hours") == 1  # claimed, kept
    assert count(url, "SELECT count(*) FROM device_kpi") == 0

    with psycopg.connect(url) as conn:
        conn.execute("DROP TRIGGER refuse ON device_kpi")
    run_incremental(db, now=utc(12, 7))
    assert kpi(url, "a", 5, utc(12, 0))["message_count"] == 4
    assert count(url, "SELECT count(*) FROM kpi_pending_hours") == 0


def test_a_reading_committed_while_the_run_claims_is_not_lost(url, db):
    insert(url, "a", DEVICE_A[:2])  # the mark for (a, 12:00) exists
    ingest = psycopg.connect(url)  # an ingest transaction in flight: its mark insert is a no-op conflict
    ingest.execute("SELECT telemetry_ensure_partitions(ARRAY['2024-03-10'::date])")
    ingest.commit()
    params = {"device": "a", "ts": [utc(12, 3)], "seq": [12], "rss": [-75.0], "battery": [None],
              "temperature": [None], "is_test": False}  # fmt: skip
    ingest.execute(INSERT_READINGS, params)

    run = ThreadPoolExecutor(max_workers=1).submit(run_incremental, db, now=utc(12, 7))
    deadline = time.monotonic() + 30
    while count(url, "SELECT count(*) FROM pg_locks WHERE relation = 'kpi_dirty_hours'::regclass AND NOT granted") == 0:
        assert time.monotonic() < deadline, "the run never waited for the ingest transaction"
        time.sleep(0.05)
    ingest.commit()
    ingest.close()
    run.result(timeout=60)

    assert kpi(url, "a", 5, utc(12, 0))["message_count"] == 3


def test_handler_runs_on_a_scheduled_event_and_on_a_backfill(url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url)
    handler.db.reset()
    insert(url, "a", DEVICE_A)
    context = LambdaContext()
    scheduled = {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2024-03-10T12:10:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/iotkpi-aggregate"],
        "detail": {},
    }
    try:
        summary = handler.lambda_handler(scheduled, context)
        assert (summary["mode"], summary["dirty_hours"], summary["devices"]) == ("incremental", 1, 1)
        assert kpi(url, "a", 5, utc(12, 0))["message_count"] == 4  # real clock: 2024 windows are closed

        backfill = {"full_recompute": {"from": "2024-03-10T14:00:00+02:00", "to": "2024-03-10T13:00:00Z"}}
        summary = handler.lambda_handler(backfill, context)
        assert (summary["mode"], summary["windows_planned"], summary["device_windows_written"]) == (
            "full_recompute", 13, 13,
        )  # fmt: skip
    finally:
        handler.db.reset()


class LambdaContext:
    function_name = "iotkpi-aggregate"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:iotkpi-aggregate"
    aws_request_id = "5b5f4a87-6a1f-4f53-9d0b-3f9b1c3b7e11"
