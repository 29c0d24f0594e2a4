"""What one run computes, pure: the (device, window) pairs and the fleet windows.

Incremental run: every window of each dirty hour (late readings included) for that device, plus every
window that closed since the previous run for every registered device, so that a device gone silent gets
rows with message_count 0. Whether an empty window gets a row is decided with the data (see postgres.py):
closed windows always do, from the device's first reading on; open windows only once they have readings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregate.windows import (
    FIVE_MINUTES,
    HOUR,
    Window,
    next_watermark,
    utc_hours_overlapping,
    windows_closing_between,
    windows_of_hour,
)


@dataclass(frozen=True)
class RunPlan:
    items: list[tuple[str, Window]]  # (device_id, window), sorted, no duplicates
    fleet_windows: list[datetime]  # starts of the 5-minute windows whose fleet KPIs are recomputed
    watermark: datetime | None  # the new closed-windows watermark; None leaves it as it is

    @property
    def device_count(self) -> int:
        return len({device_id for device_id, _ in self.items})


def _plan(items: set[tuple[str, Window]], now: datetime, watermark: datetime | None) -> RunPlan:
    fleet = sorted({w.start for _, w in items if w.minutes == FIVE_MINUTES and w.start <= now})
    return RunPlan(items=sorted(items), fleet_windows=fleet, watermark=watermark)


def plan_incremental(
    dirty_hours: Iterable[tuple[str, datetime]],
    device_ids: Iterable[str],
    previous_watermark: datetime,
    now: datetime,
    max_catchup_windows: int,
) -> RunPlan:
    items: set[tuple[str, Window]] = set()
    for device_id, hour_start in dirty_hours:
        for hour in utc_hours_overlapping(hour_start, hour_start + timedelta(minutes=HOUR)):
            items.update((device_id, w) for w in windows_of_hour(hour))
    watermark = next_watermark(previous_watermark, now, max_catchup_windows)
    closing = windows_closing_between(previous_watermark, watermark)
    for device_id in device_ids:
        items.update((device_id, w) for w in closing)
    return _plan(items, now, watermark)


def plan_full_recompute(device_ids: Iterable[str], start: datetime, end: datetime, now: datetime) -> RunPlan:
    """Every window of every hour overlapping [start, end), for every device; the watermark is untouched."""
    if end <= start:
        raise ValueError(f"full_recompute: 'to' ({end.isoformat()}) must be after 'from' ({start.isoformat()})")
    hours = utc_hours_overlapping(start, end)
    items = {(device_id, w) for device_id in device_ids for hour in hours for w in windows_of_hour(hour)}
    return _plan(items, now, None)
