"""The alerts' settings from environment variables (the function's `environment` in stack.yaml).

ALERTS_TOPIC_ARN is required; every threshold and damping variable is optional, the defaults are the
documented ones. A value that is not a number fails the run (ConfigError) rather than alerting on a guess.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from common.settings import ConfigError, env_float, env_int, env_required


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
    topic_arn: str | None = None  # the SNS topic notifications go to (from_env requires it)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> AlertSettings:
        t, d = Thresholds(), Damping()

        def minutes(name: str, default: timedelta) -> timedelta:
            return timedelta(minutes=env_float(environ, name, default / timedelta(minutes=1), minimum=0))

        # A standard deviation needs two values.
        min_history = env_int(environ, "TEMPERATURE_MIN_HISTORY", t.temperature_min_history, minimum=2)
        history_hours = env_int(environ, "TEMPERATURE_HISTORY_HOURS", t.temperature_history_hours)
        if history_hours < min_history:
            raise ConfigError(f"TEMPERATURE_HISTORY_HOURS={history_hours} must be at least TEMPERATURE_MIN_HISTORY")
        thresholds = Thresholds(
            offline_after_minutes=env_float(environ, "OFFLINE_AFTER_MINUTES", t.offline_after_minutes),
            min_uptime_pct=env_float(environ, "MIN_UPTIME_PCT", t.min_uptime_pct),
            min_avg_rss_dbm=env_float(environ, "MIN_AVG_RSS_DBM", t.min_avg_rss_dbm),
            min_battery_pct=env_float(environ, "MIN_BATTERY_PCT", t.min_battery_pct),
            temperature_z_max=env_float(environ, "TEMPERATURE_Z_MAX", t.temperature_z_max),
            temperature_min_history=min_history,
            temperature_history_hours=history_hours,
            temperature_min_stddev_c=env_float(environ, "TEMPERATURE_MIN_STDDEV_C", t.temperature_min_stddev_c),
        )
        damping = Damping(
            open_after=minutes("OPEN_AFTER_MINUTES", d.open_after),
            resolve_after=minutes("RESOLVE_AFTER_MINUTES", d.resolve_after),
        )
        return cls(
            thresholds,
            damping,
            minutes("KPI_MAX_LAG_MINUTES", cls.kpi_max_lag),
            env_required(environ, "ALERTS_TOPIC_ARN"),
        )
