"""The alert rules, pure: a device's snapshot in, one observation per rule that has data out.

"Below" and "above" are strict: a value exactly at its threshold is healthy. A rule without data (no KPI
windows yet, too little temperature history) yields no observation, which leaves its alert state as it is.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from alerts.settings import Thresholds

ROLLING_HOUR = timedelta(hours=1)
FIVE_MINUTES = timedelta(minutes=5)
WINDOWS_PER_HOUR = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rule(StrEnum):
    OFFLINE = "offline"
    LOW_UPTIME = "low_uptime"
    WEAK_SIGNAL = "weak_signal"
    LOW_BATTERY = "low_battery"
    TEMPERATURE_ANOMALY = "temperature_anomaly"


SEVERITY: dict[Rule, str] = {
    Rule.OFFLINE: "critical",
    Rule.LOW_UPTIME: "warning",
    Rule.WEAK_SIGNAL: "warning",
    Rule.LOW_BATTERY: "warning",
    Rule.TEMPERATURE_ANOMALY: "warning",
}


@dataclass(frozen=True)
class DeviceSnapshot:
    """What the rules look at for one device; None where the KPIs do not say."""

    device_id: str
    last_seen: datetime
    uptime_pct: float | None = None  # rolling hour: the last twelve closed 5-minute windows, all present
    avg_rss: float | None = None  # rolling hour, weighted by readings; None without readings
    battery_pct: float | None = None  # the latest 5-minute window's min_battery within the last hour
    temperature: float | None = None  # the latest closed hour's average
    temperature_history: tuple[float, ...] = ()  # the hourly averages before it, oldest first


@dataclass(frozen=True)
class Observation:
    rule: Rule
    breached: bool
    value: float
    threshold: float
    detail: str = ""  # extra context for people, e.g. the history a z-score compares against

    @property
    def severity(self) -> str:
        return SEVERITY[self.rule]


def kpi_horizon(now: datetime, closed_until: datetime | None, max_lag: timedelta) -> datetime | None:
    """Where the KPI windows the rules read end: the last 5-minute boundary that the aggregate has closed
    (its watermark), or None when it has not run or lags more than `max_lag` behind `now`."""
    if closed_until is None:
        return None
    horizon = min(_EPOCH + (now - _EPOCH) // FIVE_MINUTES * FIVE_MINUTES, closed_until)
    return horizon if now - horizon <= max_lag else None


def observe_offline(snapshot: DeviceSnapshot, thresholds: Thresholds, now: datetime) -> Observation:
    silent_minutes = (now - snapshot.last_seen).total_seconds() / 60
    limit = thresholds.offline_after_minutes
    return Observation(Rule.OFFLINE, silent_minutes > limit, silent_minutes, limit)


def temperature_z(latest: float, history: tuple[float, ...], min_stddev: float) -> float:
    """z-score of `latest` against `history` (sample standard deviation, floored at `min_stddev`)."""
    spread = max(statistics.stdev(history), min_stddev)
    return (latest - statistics.fmean(history)) / spread


def observe_kpis(snapshot: DeviceSnapshot, thresholds: Thresholds) -> list[Observation]:
    """The KPI rules that have data for this snapshot."""
    found: list[Observation] = []
    if snapshot.uptime_pct is not None:
        limit = thresholds.min_uptime_pct
        found.append(Observation(Rule.LOW_UPTIME, snapshot.uptime_pct < limit, snapshot.uptime_pct, limit))
    if snapshot.avg_rss is not None:
        limit = thresholds.min_avg_rss_dbm
        found.append(Observation(Rule.WEAK_SIGNAL, snapshot.avg_rss < limit, snapshot.avg_rss, limit))
    if snapshot.battery_pct is not None:
        limit = thresholds.min_battery_pct
        found.append(Observation(Rule.LOW_BATTERY, snapshot.battery_pct < limit, snapshot.battery_pct, limit))
    history = snapshot.temperature_history
    if snapshot.temperature is not None and len(history) >= thresholds.temperature_min_history:
        z = temperature_z(snapshot.temperature, history, thresholds.temperature_min_stddev_c)
        limit = thresholds.temperature_z_max
        detail = (
            f"latest hour {snapshot.temperature:.1f} °C vs {statistics.fmean(history):.1f} ± "
            f"{statistics.stdev(history):.2f} °C over the previous {len(history)} hours"
        )
        found.append(Observation(Rule.TEMPERATURE_ANOMALY, abs(z) > limit, z, limit, detail))
    return found
