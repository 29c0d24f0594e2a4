"""Which days are due and where their objects live. Pure.

A day is due when all of it is older than the retention period: its end (next midnight UTC) is at or before
now - retention. Keys are deterministic, Hive-style, so that Athena/Spark can partition on them:
`<prefix>year=YYYY/month=MM/day=DD/part-NNNNN.csv.gz` and `.../manifest.json`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

DEFAULT_PREFIX = "telemetry/"
DEFAULT_RETENTION_DAYS = 30
MANIFEST_NAME = "manifest.json"
PART_SUFFIX = ".csv.gz"


def last_due_day(now: datetime, retention_days: int) -> date:
    """The newest day that lies wholly before now - retention."""
    if retention_days < 1:
        raise ValueError(f"retention must be at least one day, not {retention_days}")
    if now.tzinfo is None:
        raise ValueError("now needs a time zone")
    return (now.astimezone(UTC) - timedelta(days=retention_days)).date() - timedelta(days=1)


def days_due(days_with_rows: Iterable[date], unfinished_days: Iterable[date], last_due: date) -> list[date]:
    """Oldest first: the due days still holding readings, plus due days an earlier run left half-way."""
    return sorted({day for day in (*days_with_rows, *unfinished_days) if day <= last_due})


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def day_prefix(prefix: str, day: date) -> str:
    return f"{normalise_prefix(prefix)}year={day.year:04d}/month={day.month:02d}/day={day.day:02d}/"


def part_key(prefix: str, day: date, number: int) -> str:
    return f"{day_prefix(prefix, day)}part-{number:05d}{PART_SUFFIX}"


def manifest_key(prefix: str, day: date) -> str:
    return f"{day_prefix(prefix, day)}{MANIFEST_NAME}"
