"""The aggregate's SQL: claiming dirty hours, THE definition of every KPI, fleet KPIs, run state.

Plain SQL that runs the same on PostgreSQL and TimescaleDB (no continuous aggregates: the seq-gap and
distinct-minute KPIs need window functions and DISTINCT, which continuous aggregates refuse, and one code
path guarantees identical results on both flavours). Windows arrive from the Python window maths as
(device_id, window_minutes, window_start); every window is one range scan of the telemetry primary key
(device_id, ts, seq), so a run costs what its windows hold, whatever the size of the table.

Sequence-counter KPIs, per window, over the readings ordered by (ts, seq):
- a reading whose seq is lower than the previous reading's starts a new segment (a counter reset after a
  reboot, or a wrap);
- expected_count = the sum over segments of (last seq - first seq + 1): a single reading expects 1, seqs
  1, 2, 5 expect 5, seqs 7, 8, 0, 1 (a reset) expect 4;
- distinct_seq_count = readings whose seq differs from the previous reading's (the same seq sent twice with
  two timestamps counts once);
- completeness_pct = distinct_seq_count / expected_count * 100, at most 100 by construction; NULL for a
  window without readings (silence shows in message_count and uptime_pct instead).
Gaps are seen between the first and the last reading of a window: readings lost at a window's edges, or
across a reset, are not (an hourly window sees the gaps between its 5-minute windows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from aggregate.windows import Window

# Window computations per statement: bounds the size of the parameter arrays of a large backfill.
BATCH_WINDOWS = 10_000

CLAIM_DIRTY_HOURS = """
WITH claimed AS (
    DELETE FROM kpi_dirty_hours RETURNING device_id, hour_start
), moved AS (
    INSERT INTO kpi_pending_hours (device_id, hour_start)
    SELECT device_id, hour_start FROM claimed
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM claimed
"""

UPSERT_DEVICE_KPI = """
WITH work AS (
    SELECT w.device_id, w.window_minutes, w.window_start,
           w.window_start + make_interval(mins => w.window_minutes) AS window_end
    FROM unnest(%(device_ids)s::text[], %(minutes)s::smallint[], %(starts)s::timestamptz[])
         AS w(device_id, window_minutes, window_start)
)
INSERT INTO device_kpi (
    device_id, window_minutes, window_start, window_end, is_closed,
    message_count, active_minutes, inactive_minutes, uptime_pct,
    avg_rss, min_rss, max_rss, min_battery, avg_temperature, stddev_temperature,
    distinct_seq_count, expected_count, completeness_pct, last_seen, computed_at
)
SELECT w.device_id, w.window_minutes, w.window_start, w.window_end, w.window_end <= %(now)s,
       k.message_count, k.active_minutes, w.window_minutes - k.active_minutes,
       100.0 * k.active_minutes / w.window_minutes,
       k.avg_rss, k.min_rss, k.max_rss, k.min_battery, k.avg_temperature, k.stddev_temperature,
       k.distinct_seq_count, k.expected_count,
       100.0 * k.distinct_seq_count / nullif(k.expected_count, 0),
       k.last_seen, now()
FROM work w
LEFT JOIN devices d ON d.device_id = w.device_id
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS message_count,
           -- UTC minutes by construction (epoch arithmetic), whatever the session time zone
           count(DISTINCT floor(extract(epoch FROM r.ts) / 60))::smallint AS active_minutes,
           avg(r.rss) AS avg_rss, min(r.rss) AS min_rss, max(r.rss) AS max_rss,
           min(r.battery) AS min_battery,
           avg(r.temperature) AS avg_temperature,
           stddev_samp(r.temperature) AS stddev_temperature,
           count(*) FILTER (WHERE r.previous_seq IS DISTINCT FROM r.seq)::integer AS distinct_seq_count,
           coalesce(sum(CASE WHEN r.previous_seq IS NULL OR r.seq < r.previous_seq THEN 1
                             ELSE r.seq - r.previous_seq END), 0)::bigint AS expected_count,
           max(r.ts) AS last_seen
    FROM (
        SELECT t.ts, t.seq, t.rss, t.battery, t.temperature,
               lag(t.seq) OVER (ORDER BY t.ts, t.seq) AS previous_seq
        FROM telemetry t
        WHERE t.device_id = w.device_id AND t.ts >= w.window_start AND t.ts < w.window_end
    ) r
) k
-- Closed windows get a row from the device's first reading on, readings or not; open ones once they have one.
WHERE k.message_count > 0 OR (w.window_end <= %(now)s AND w.window_end > d.first_seen)
ON CONFLICT (device_id, window_minutes, window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end, is_closed = EXCLUDED.is_closed,
    message_count = EXCLUDED.message_count, active_minutes = EXCLUDED.active_minutes,
    inactive_minutes = EXCLUDED.inactive_minutes, uptime_pct = EXCLUDED.uptime_pct,
    avg_rss = EXCLUDED.avg_rss, min_rss = EXCLUDED.min_rss, max_rss = EXCLUDED.max_rss,
    min_battery = EXCLUDED.min_battery, avg_temperature = EXCLUDED.avg_temperature,
    stddev_temperature = EXCLUDED.stddev_temperature, distinct_seq_count = EXCLUDED.distinct_seq_count,
    expected_count = EXCLUDED.expected_count, completeness_pct = EXCLUDED.completeness_pct,
    last_seen = EXCLUDED.last_seen, computed_at = EXCLUDED.computed_at
"""

# Registered = non-test devices whose first reading is before the window's end; active = those of them
# with at least one reading in the window (their 5-minute device_kpi row, computed first in the same run).
# Windows before the first registration get no row.
UPSERT_FLEET_KPI = """
INSERT INTO fleet_kpi (
    window_start, window_end, is_closed, registered_devices, active_devices, inactive_devices,
    availability_pct, computed_at
)
SELECT f.window_start, f.window_end, f.window_end <= %(now)s, r.registered, a.active, r.registered - a.active,
       100.0 * a.active / nullif(r.registered, 0), now()
FROM (
    SELECT s AS window_start, s + interval '5 minutes' AS window_end
    FROM unnest(%(starts)s::timestamptz[]) AS s
) f
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS registered FROM devices d WHERE NOT d.is_test AND d.first_seen < f.window_end
) r
CROSS JOIN LATERAL (
    SELECT count(*)::integer AS active
    FROM device_kpi k JOIN devices d ON d.device_id = k.device_id
    WHERE k.window_minutes = 5 AND k.window_start = f.window_start AND k.message_count > 0 AND NOT d.is_test
) a
WHERE r.registered > 0
ON CONFLICT (window_start) DO UPDATE SET
    window_end = EXCLUDED.window_end, is_closed = EXCLUDED.is_closed,
    registered_devices = EXCLUDED.registered_devices, active_devices = EXCLUDED.active_devices,
    inactive_devices = EXCLUDED.inactive_devices, availability_pct = EXCLUDED.availability_pct,
    computed_at = EXCLUDED.computed_at
"""


@dataclass(frozen=True)
class RunState:
    closed_until: datetime | None  # the closed-windows watermark; None before the first run
    db_now: datetime


def claim_dirty_hours(conn: psycopg.Connection) -> int:
    """Move the ingest's dirty marks to kpi_pending_hours; call in a transaction of its own, committed
    before the recompute. The table lock waits for every ingest transaction that has written marks to
    commit, so the recompute, which starts later, sees all the readings the claimed marks stand for. It is
    held for this short transaction only: ingests wait milliseconds, not a whole run."""
    conn.execute("SELECT 1 FROM kpi_aggregate_state FOR UPDATE")  # not while another run recomputes
    conn.execute("LOCK TABLE kpi_dirty_hours IN SHARE ROW EXCLUSIVE MODE")
    return conn.execute(CLAIM_DIRTY_HOURS).fetchone()[0]


def lock_state(conn: psycopg.Connection) -> RunState:
    """Lock the run state until the transaction ends: runs and backfills never overlap."""
    closed_until, db_now = conn.execute("SELECT closed_until, now() FROM kpi_aggregate_state FOR UPDATE").fetchone()
    return RunState(closed_until, db_now)


def take_pending_hours(conn: psycopg.Connection) -> list[tuple[str, datetime]]:
    """Delete and return the claimed hours; a failed run rolls the delete back, keeping them."""
    return conn.execute("DELETE FROM kpi_pending_hours RETURNING device_id, hour_start").fetchall()


def device_ids(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute("SELECT device_id FROM devices ORDER BY device_id")]


def upsert_device_kpis(conn: psycopg.Connection, items: list[tuple[str, Window]], now: datetime) -> int:
    """Compute and upsert the KPIs of each (device, window); return the rows written."""
    # The planner prices the per-window scans of every partition as if none were pruned, so with a longer
    # history the estimate crosses the JIT thresholds and compiling would cost more than the run (measured:
    # 0.9 s of JIT for 40 ms of work with 10 days of partitions). This transaction only.
    conn.execute("SET LOCAL jit = off")
    written = 0
    for offset in range(0, len(items), BATCH_WINDOWS):
        batch = items[offset : offset + BATCH_WINDOWS]
        params = {
            "device_ids": [device_id for device_id, _ in batch],
            "minutes": [w.minutes for _, w in batch],
            "starts": [w.start for _, w in batch],
            "now": now,
        }
        written += conn.execute(UPSERT_DEVICE_KPI, params).rowcount
    return written


def upsert_fleet_kpis(conn: psycopg.Connection, starts: list[datetime], now: datetime) -> int:
    if not starts:
        return 0
    return conn.execute(UPSERT_FLEET_KPI, {"starts": starts, "now": now}).rowcount


def save_state(conn: psycopg.Connection, closed_until: datetime | None, summary: dict) -> None:
    conn.execute(
        "UPDATE kpi_aggregate_state SET closed_until = coalesce(%s, closed_until), last_run_at = now(),"
        " last_summary = %s",
        (closed_until, Jsonb(summary)),
    )
