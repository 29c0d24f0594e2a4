"""Alert thresholds and damping from environment variables (the function's `environment` in stack.yaml).

Every variable is optional; the defaults are the documented ones. A value that is not a number fails the
cold start rather than alerting on a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Thresholds:
    offline_after_minutes: float = 15.0  # offline: no reading for longer than this
    min_uptime_pct: float = 80.0  # low_uptime: rolling-hour uptime below this
    min_avg_rss_dbm: float = -85.0  # weak_signal: rolling-hour average RSS below this
    min_battery_pct: float = 20.0  # low_battery: latest battery level below this
    temperature_z_max: float = 3.0  # temperature_anomaly: |z| above this
    temperature_min_history: int = 12  # hourly averages needed before the z-score means anything
    temperature_history_hours: int = 24  # hourly averages the z-score compares against
    # A device whose temperature barely moved has a standard deviation near zero, and any change would be an
    # "anomaly" of infinite z; the deviation is taken as at least this (about one sensor resolution step).
    temperature_min_stddev_c: float = 0.2


@dataclass(frozen=True)
class Damping:
    open_after: timedelta = timedelta(0)  # a breach must hold this long before an alert opens
    resolve_after: timedelta = timedelta(minutes=10)  # and be clear this long before it resolves


@dataclass(frozen=True)
class AlertSettings:
    thresholds: Thresholds = Thresholds()
    damping: Damping = Damping()
    # KPI rules read windows up to the aggregate's closed-windows watermark; when it lags further behind
    # than this (aggregate failing), they are not evaluated instead of judging stale numbers.
    kpi_max_lag: timedelta = timedelta(minutes=15)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AlertSettings:
        defaults_t, defaults_d = Thresholds(), Damping()

        def number(name: str, default: float) -> float:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None

        def minutes(name: str, default: timedelta) -> timedelta:
            value = number(name, default.total_seconds() / 60)
            if value < 0:
                raise ValueError(f"{name} must not be negative")
            return timedelta(minutes=value)

        thresholds = Thresholds(
            offline_after_minutes=number("OFFLINE_AFTER_MINUTES", defaults_t.offline_after_minutes),
            min_uptime_pct=number("MIN_UPTIME_PCT", defaults_t.min_uptime_pct),
            min_avg_rss_dbm=number("MIN_AVG_RSS_DBM", defaults_t.min_avg_rss_dbm),
            min_battery_pct=number("MIN_BATTERY_PCT", defaults_t.min_battery_pct),
            temperature_z_max=number("TEMPERATURE_Z_MAX", defaults_t.temperature_z_max),
            temperature_min_history=int(number("TEMPERATURE_MIN_HISTORY", defaults_t.temperature_min_history)),
            temperature_history_hours=int(number("TEMPERATURE_HISTORY_HOURS", defaults_t.temperature_history_hours)),
            temperature_min_stddev_c=number("TEMPERATURE_MIN_STDDEV_C", defaults_t.temperature_min_stddev_c),
        )
        if thresholds.temperature_min_history < 2:
            raise ValueError("TEMPERATURE_MIN_HISTORY must be at least 2 (a standard deviation needs two values)")
        if thresholds.temperature_history_hours < thresholds.temperature_min_history:
            raise ValueError("TEMPERATURE_HISTORY_HOURS must be at least TEMPERATURE_MIN_HISTORY")
        damping = Damping(
            open_after=minutes("OPEN_AFTER_MINUTES", defaults_d.open_after),
            resolve_after=minutes("RESOLVE_AFTER_MINUTES", defaults_d.resolve_after),
        )
        return cls(thresholds, damping, minutes("KPI_MAX_LAG_MINUTES", cls.kpi_max_lag))
