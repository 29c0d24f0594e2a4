"""AlertSettings.from_env: the stack's environment, the documented defaults, and refusals naming the variable."""

from datetime import timedelta

import pytest
from alerts.settings import AlertSettings, Damping
from common.settings import ConfigError

TOPIC = {"ALERTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:iotkpi-alerts"}


def test_settings_from_environment():
    settings = AlertSettings.from_env(
        {**TOPIC, "OFFLINE_AFTER_MINUTES": "30", "MIN_BATTERY_PCT": "15.5", "RESOLVE_AFTER_MINUTES": "0",
         "MIN_UPTIME_PCT": "", "KPI_MAX_LAG_MINUTES": "20", "TEMPERATURE_MIN_HISTORY": "6"}
    )  # fmt: skip
    assert settings.thresholds.offline_after_minutes == 30.0
    assert settings.thresholds.min_battery_pct == 15.5
    assert settings.thresholds.min_uptime_pct == 80.0
    assert settings.thresholds.temperature_min_history == 6
    assert settings.damping == Damping(open_after=timedelta(0), resolve_after=timedelta(0))
    assert settings.kpi_max_lag == timedelta(minutes=20)
    assert settings.topic_arn == TOPIC["ALERTS_TOPIC_ARN"]
    assert AlertSettings.from_env(TOPIC) == AlertSettings(topic_arn=TOPIC["ALERTS_TOPIC_ARN"])


@pytest.mark.parametrize(
    ("environ", "names"),
    [
        ({}, "ALERTS_TOPIC_ARN"),
        ({**TOPIC, "MIN_AVG_RSS_DBM": "weak"}, "MIN_AVG_RSS_DBM"),
        ({**TOPIC, "TEMPERATURE_MIN_HISTORY": "1"}, "TEMPERATURE_MIN_HISTORY"),  # a deviation needs two values
        ({**TOPIC, "TEMPERATURE_HISTORY_HOURS": "6"}, "TEMPERATURE_HISTORY_HOURS"),  # fewer than the minimum 12
        ({**TOPIC, "RESOLVE_AFTER_MINUTES": "-5"}, "RESOLVE_AFTER_MINUTES"),
    ],
)
def test_a_bad_or_missing_value_is_refused_by_name(environ, names):
    with pytest.raises(ConfigError, match=names):
        AlertSettings.from_env(environ)
