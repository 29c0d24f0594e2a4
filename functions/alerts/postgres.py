"""PostgreSQL adapter: device snapshots from devices and device_kpi, alert state, the notification outbox."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from common.db import Database
from psycopg.types.json import Jsonb

from alerts.messages import Notification
from alerts.ports import OutboxRow
from alerts.rules import FIVE_MINUTES, ROLLING_HOUR, WINDOWS_PER_HOUR, DeviceSnapshot, Observation, Rule
from alerts.state import Condition, Event

# Serialises alert runs (a manual invoke racing the schedule): evaluations never interleave.
RUN_LOCK_KEY = 0x10_7C_9A_04

SNAPSHOTS = """
SELECT d.device_id, d.last_seen,
       CASE WHEN r.windows = %(windows_per_hour)s THEN r.uptime_pct END AS uptime_pct,
       r.rss_weighted / nullif(r.rss_readings, 0) AS avg_rss,
       b.min_battery::double precision AS battery_pct,
       t.latest AS temperature,
       t.history AS temperature_history
FROM devices d
LEFT JOIN LATERAL (
    SELECT count(*) AS windows, avg(k.uptime_pct) AS uptime_pct,
           sum(k.avg_rss * k.message_count) FILTER (WHERE k.avg_rss IS NOT NULL) AS rss_weighted,
           sum(k.message_count) FILTER (WHERE k.avg_rss IS NOT NULL) AS rss_readings
    FROM device_kpi k
    WHERE k.device_id = d.device_id AND k.window_minutes = 5 AND k.is_closed
      AND k.window_start >= %(rolling_from)s AND k.window_start < %(horizon)s
) r ON true
LEFT JOIN LATERAL (
    SELECT k.min_battery
    FROM device_kpi k
    WHERE k.device_id = d.device_id AND k.window_minutes = 5 AND k.min_battery IS NOT NULL
      AND k.window_start > %(battery_after)s AND k.window_start <= %(now)s
    ORDER BY k.window_start DESC
    LIMIT 1
) b ON true
LEFT JOIN LATERAL (
    SELECT max(k.avg_temperature) FILTER (WHERE k.window_start = %(latest_hour)s) AS latest,
           array_agg(k.avg_temperature ORDER BY k.window_start) FILTER (WHERE k.window_start < %(latest_hour)s)
               AS history
    FROM device_kpi k
    WHERE k.device_id = d.device_id AND k.window_minutes = 60 AND k.is_closed AND k.avg_temperature IS NOT NULL
      AND k.window_start >= %(history_from)s AND k.window_start <= %(latest_hour)s
) t ON true
WHERE NOT d.is_test
ORDER BY d.device_id
"""

UPSERT_CONDITION = """
INSERT INTO alert_conditions (device_id, rule, breached, since) VALUES (%s, %s, %s, %s)
ON CONFLICT (device_id, rule) DO UPDATE SET breached = EXCLUDED.breached, since = EXCLUDED.since
"""

NEXT_UNSENT = """
SELECT n.id, n.alert_id, n.notification_id, n.subject, n.body, n.attributes
FROM alert_notifications n
WHERE n.sent_at IS NULL AND n.id > %s
  AND NOT EXISTS (
      SELECT 1 FROM alert_notifications e WHERE e.alert_id = n.alert_id AND e.sent_at IS NULL AND e.id < n.id
  )
ORDER BY n.id
LIMIT 1
FOR UPDATE OF n SKIP LOCKED
"""


@dataclass(frozen=True)
class OpenAlert:
    id: int
    device_id: str
    rule: Rule
    opened_at: datetime


def lock_run(conn: psycopg.Connection) -> datetime:
    """Hold the run lock until the transaction ends; return the database clock."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (RUN_LOCK_KEY,))
    return conn.execute("SELECT now()").fetchone()[0]


def kpi_watermark(conn: psycopg.Connection) -> datetime | None:
    """The aggregate's closed-windows watermark: every window ending at or before it is computed."""
    row = conn.execute("SELECT closed_until FROM kpi_aggregate_state").fetchone()
    return row[0] if row else None


def _utc_hour_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def load_snapshots(
    conn: psycopg.Connection, now: datetime, horizon: datetime | None, history_hours: int
) -> list[DeviceSnapshot]:
    """Non-test devices with their KPI inputs; `horizon` is where closed KPI windows end (None: KPI rules
    get no data). The rolling hour is the twelve 5-minute windows ending at the horizon."""
    latest_hour = _utc_hour_floor(horizon) - ROLLING_HOUR if horizon else None
    params = {
        "windows_per_hour": WINDOWS_PER_HOUR,
        "horizon": horizon,
        "rolling_from": horizon - ROLLING_HOUR if horizon else None,
        "now": now,
        "battery_after": now - ROLLING_HOUR - FIVE_MINUTES,  # windows that end within the last hour
        "latest_hour": latest_hour,
        "history_from": latest_hour - timedelta(hours=history_hours) if latest_hour else None,
    }
    return [
        DeviceSnapshot(
            device_id=row[0],
            last_seen=row[1],
            uptime_pct=row[2],
            avg_rss=row[3],
            battery_pct=row[4],
            temperature=row[5],
            temperature_history=tuple(row[6] or ()),
        )
        for row in conn.execute(SNAPSHOTS, params)
    ]


def load_conditions(conn: psycopg.Connection) -> dict[tuple[str, Rule], Condition]:
    rows = conn.execute("SELECT device_id, rule, breached, since FROM alert_conditions").fetchall()
    return {(device, Rule(rule)): Condition(breached, since) for device, rule, breached, since in rows}


def load_open_alerts(conn: psycopg.Connection) -> dict[tuple[str, Rule], OpenAlert]:
    rows = conn.execute("SELECT id, device_id, rule, opened_at FROM alerts WHERE status = 'open'").fetchall()
    return {(device, Rule(rule)): OpenAlert(id_, device, Rule(rule), opened) for id_, device, rule, opened in rows}


def save_conditions(conn: psycopg.Connection, rows: list[tuple[str, Rule, Condition]]) -> None:
    if rows:
        with conn.cursor() as cur:
            cur.executemany(UPSERT_CONDITION, [(d, r.value, c.breached, c.since) for d, r, c in rows])


def insert_alert(
    conn: psycopg.Connection, device_id: str, observation: Observation, message: str, now: datetime
) -> int:
    return conn.execute(
        "INSERT INTO alerts (device_id, rule, severity, status, opened_at, last_value, threshold, message,"
        " last_evaluated_at) VALUES (%s, %s, %s, 'open', %s, %s, %s, %s, %s) RETURNING id",
        (
            device_id,
            observation.rule.value,
            observation.severity,
            now,
            observation.value,
            observation.threshold,
            message,
            now,
        ),
    ).fetchone()[0]


def touch_alerts(conn: psycopg.Connection, values: list[tuple[int, float]], now: datetime) -> None:
    """The latest value of alerts that stay open."""
    if values:
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE alerts SET last_value = %s, last_evaluated_at = %s WHERE id = %s",
                [(value, now, alert_id) for alert_id, value in values],
            )


def resolve_alert(conn: psycopg.Connection, alert_id: int, value: float, now: datetime) -> None:
    conn.execute(
        "UPDATE alerts SET status = 'resolved', resolved_at = %s, last_value = %s, last_evaluated_at = %s"
        " WHERE id = %s AND status = 'open'",
        (now, value, now, alert_id),
    )


def enqueue(conn: psycopg.Connection, alert_id: int, event: Event, notification: Notification, now: datetime) -> None:
    conn.execute(
        "INSERT INTO alert_notifications (alert_id, event, notification_id, subject, body, attributes, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            alert_id,
            event.value,
            notification.notification_id,
            notification.subject,
            notification.body,
            Jsonb(notification.attributes),
            now,
        ),
    )


class PostgresOutbox:
    """The Outbox port on alert_notifications: each next_unsent block is one short transaction holding the
    row's lock, so two runs never publish the same notification at once."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: psycopg.Connection | None = None  # the transaction of the current next_unsent block

    @contextlib.contextmanager
    def next_unsent(self, after_id: int) -> Iterator[OutboxRow | None]:
        with self._db.transaction() as conn:
            self._conn = conn
            try:
                row = conn.execute(NEXT_UNSENT, (after_id,)).fetchone()
                if row is None:
                    yield None
                else:
                    id_, alert_id, notification_id, subject, body, attributes = row
                    yield OutboxRow(id_, alert_id, Notification(notification_id, subject, body, dict(attributes)))
            finally:
                self._conn = None

    def mark_sent(self, row_id: int, message_id: str) -> None:
        self._held().execute(
            "UPDATE alert_notifications SET sent_at = now(), message_id = %s, attempts = attempts + 1,"
            " last_attempt_at = now(), last_error = NULL WHERE id = %s",
            (message_id, row_id),
        )

    def mark_failed(self, row_id: int, error: str) -> None:
        self._held().execute(
            "UPDATE alert_notifications SET attempts = attempts + 1, last_attempt_at = now(), last_error = %s"
            " WHERE id = %s",
            (error[:2000], row_id),
        )

    def unsent_count(self) -> int:
        with self._db.transaction() as conn:
            return conn.execute("SELECT count(*) FROM alert_notifications WHERE sent_at IS NULL").fetchone()[0]

    def _held(self) -> psycopg.Connection:
        if self._conn is None:
            raise RuntimeError("outbox rows are marked inside their next_unsent block")
        return self._conn
