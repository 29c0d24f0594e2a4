"""Window maths, pure: every window is aligned to UTC, whatever the offset a timestamp was written in.

A window is [start, start + minutes). A reading at exactly 12:05:00.000 belongs to the 12:05 window. A
window is closed once its end is at or before the run's clock; until then its KPIs are partial.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

FIVE_MINUTES = 5
HOUR = 60
WINDOW_SIZES = (FIVE_MINUTES, HOUR)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Window:
    minutes: int
    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.minutes)


def _require_aware(ts: datetime) -> None:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"timestamp without a time zone: {ts!r}")


def window_start(ts: datetime, minutes: int) -> datetime:
    """Start (UTC) of the `minutes`-long window containing `ts`."""
    _require_aware(ts)
    size = timedelta(minutes=minutes)
    return _EPOCH + ((ts - _EPOCH) // size) * size


def utc_hours_overlapping(start: datetime, end: datetime) -> list[datetime]:
    """UTC hour starts of every hour that [start, end) overlaps (a dirty mark made in a non-UTC session
    time zone, e.g. +05:45, can straddle two UTC hours)."""
    hour = window_start(start, HOUR)
    hours = []
    while hour < end:
        hours.append(hour)
        hour += timedelta(hours=1)
    return hours


def windows_of_hour(hour_start: datetime) -> list[Window]:
    """The hourly window and its twelve 5-minute windows."""
    if window_start(hour_start, HOUR) != hour_start:
        raise ValueError(f"not a UTC hour start: {hour_start.isoformat()}")
    return [Window(HOUR, hour_start)] + [
        Window(FIVE_MINUTES, hour_start + timedelta(minutes=offset)) for offset in range(0, HOUR, FIVE_MINUTES)
    ]


def windows_closing_between(after: datetime, until: datetime) -> list[Window]:
    """Every 5-minute and hourly window whose end lies in (after, until]."""
    windows = []
    for minutes in WINDOW_SIZES:
        size = timedelta(minutes=minutes)
        start = window_start(after, minutes)  # the window ending first after `after` starts here
        while start + size <= until:
            windows.append(Window(minutes, start))
            start += size
    return sorted(windows)


def initial_watermark(now: datetime) -> datetime:
    """Where a first run starts: one window back, so that it closes exactly the window that closed last.
    Windows before it get rows from their readings' dirty marks; a backfill of silent windows is a
    full recompute."""
    return window_start(now, FIVE_MINUTES) - timedelta(minutes=FIVE_MINUTES)


def next_watermark(previous: datetime, now: datetime, max_catchup_windows: int) -> datetime:
    """The new closed-windows watermark: the end of the last closed 5-minute window, but at most
    `max_catchup_windows` windows past `previous`, so that a long outage is caught up by several bounded
    runs. It never goes backwards."""
    latest_closed_end = window_start(now, FIVE_MINUTES)
    limit = previous + timedelta(minutes=FIVE_MINUTES * max_catchup_windows)
    return max(previous, min(latest_closed_end, limit))
