"""`localcloud kpis`: the fleet's KPIs as a terminal table, read from the KPI tables the aggregate writes.

Fleet availability now comes from the view `fleet_availability_now` (devices seen in the last 5 minutes), the
latest closed fleet window from `fleet_kpi`. Per device, over the 5-minute windows of `device_kpi` that lie
in the hour before `now` (from the device's first reading on: the aggregate writes a row for every closed
window after it, silent ones included): uptime = active minutes / window minutes, average RSS weighted by
readings, lowest battery, completeness = distinct seqs / expected seqs; open alerts from `alerts` when that
table exists.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from localcloud.config import Settings, read_env_file

_DEVICES = """
SELECT d.device_id,
       d.last_seen,
       d.last_seen > now() - interval '5 minutes' AS active,  -- as in fleet_availability_now
       100.0 * sum(k.active_minutes) / nullif(sum(k.window_minutes), 0) AS uptime_pct,
       sum(k.avg_rss * k.message_count) / nullif(sum(k.message_count) FILTER (WHERE k.avg_rss IS NOT NULL), 0)
           AS avg_rss,
       min(k.min_battery) AS min_battery,
       100.0 * sum(k.distinct_seq_count) / nullif(sum(k.expected_count), 0) AS completeness_pct,
       {open_alerts} AS open_alerts
FROM devices d
LEFT JOIN device_kpi k
       ON k.device_id = d.device_id AND k.window_minutes = 5
      AND k.window_start >= %(now)s - interval '1 hour' AND k.window_end <= %(now)s
WHERE NOT d.is_test AND d.device_id LIKE %(pattern)s
GROUP BY d.device_id, d.last_seen
ORDER BY d.device_id
LIMIT %(limit)s
"""
_OPEN_ALERTS = "(SELECT count(*) FROM alerts a WHERE a.device_id = d.device_id AND a.status = 'open')"
_LATEST_FLEET_WINDOW = """
SELECT window_start, window_end, availability_pct, active_devices, registered_devices
FROM fleet_kpi WHERE window_end <= %(now)s ORDER BY window_start DESC LIMIT 1
"""
COLUMNS = ("device", "status now", "last seen (UTC)", "uptime 1h", "avg RSS", "min battery", "complete", "open alerts")


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _number(value: float | None, suffix: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    # Text columns left-aligned, figures right-aligned.
    def line(row: tuple[str, ...]) -> str:
        cells = (
            cell.ljust(width) if i < 3 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        return "  ".join(cells).rstrip()

    return [line(row) for row in rows]


def fleet_summary(database_url: str, now: datetime | None = None, prefix: str = "", limit: int | None = None) -> str:
    """The summary as text. `now` (default: the database's clock) ends the hour the device figures cover
    (availability and status are always the database's present);
    `prefix` keeps the devices whose id starts with it; `limit` caps the device rows."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        database_now = conn.execute("SELECT now()").fetchone()[0]
        at = now or database_now
        params = {"now": at, "pattern": _like_prefix(prefix), "limit": limit}
        has_alerts = conn.execute("SELECT to_regclass('alerts') IS NOT NULL").fetchone()[0]
        open_alerts = sql.SQL(_OPEN_ALERTS if has_alerts else "NULL::bigint")
        devices = conn.execute(sql.SQL(_DEVICES).format(open_alerts=open_alerts), params).fetchall()
        registered, active, inactive, availability = conn.execute(
            "SELECT registered_devices, active_devices, inactive_devices, availability_pct FROM fleet_availability_now"
        ).fetchone()
        window = conn.execute(_LATEST_FLEET_WINDOW, params).fetchone()
    lines = [
        f"Fleet KPIs at {database_now.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC",
        f"  availability now: {_number(availability, '%')}  ({active} active, {inactive} inactive"
        f" of {registered} registered, seen in the last 5 minutes)",
    ]
    if window:
        start, end, window_availability, window_active, window_registered = window
        lines.append(
            f"  last closed 5-minute window {start.astimezone(UTC):%H:%M}-{end.astimezone(UTC):%H:%M}:"
            f" availability {_number(window_availability, '%')} ({window_active}/{window_registered} devices)"
        )
    if not devices:
        lines.append("no devices" + (f" with ids starting {prefix!r}" if prefix else ""))
        return "\n".join(lines)
    rows = [COLUMNS]
    for device_id, last_seen, is_active, uptime, avg_rss, min_battery, completeness, alerts in devices:
        rows.append((
            device_id,
            "active" if is_active else "inactive",
            f"{last_seen.astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            _number(uptime, "%"),
            _number(avg_rss, " dBm"),
            _number(min_battery, "%"),
            _number(completeness, "%"),
            "-" if alerts is None else str(alerts),
        ))  # fmt: skip
    hour = f"{(at - timedelta(hours=1)).astimezone(UTC):%H:%M}-{at.astimezone(UTC):%H:%M}"
    lines += [
        "",
        f"Devices: status now; uptime, RSS, battery and completeness over the 5-minute windows {hour}",
        *_table(rows),
    ]
    if not has_alerts:
        lines.append("(no alerts table in this database: open alerts not shown)")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", help="default DATABASE_URL, then the one `localcloud up` wrote")
    parser.add_argument("--prefix", default="", help="only devices whose id starts with this")
    parser.add_argument("--limit", type=int, help="at most this many device rows")
    parser.add_argument("--now", type=datetime.fromisoformat, help="end of the hour summarised (ISO, with offset)")


def run(args: argparse.Namespace) -> int:
    url = args.database_url or os.environ.get("DATABASE_URL") or read_env_file(Settings().env_file).get("DATABASE_URL")
    if not url:
        print("kpis: no database: set DATABASE_URL or run `localcloud up`", file=sys.stderr)
        return 2
    print(fleet_summary(url, now=args.now, prefix=args.prefix, limit=args.limit))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.tools.kpi_report", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
