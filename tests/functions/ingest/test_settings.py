"""IngestSettings.from_env: timestamp limits and the optional rejects queue."""

from datetime import timedelta

import pytest
from common.settings import ConfigError
from common.telemetry import DEFAULT_LIMITS
from ingest.settings import IngestSettings


def test_defaults_are_the_telemetry_limits_and_no_rejects_queue():
    assert IngestSettings.from_env({}) == IngestSettings(DEFAULT_LIMITS, None)
    assert IngestSettings.from_env({"INGEST_REJECTS_QUEUE_URL": ""}).rejects_queue_url is None


def test_limits_and_rejects_queue_from_the_environment():
    settings = IngestSettings.from_env(
        {"INGEST_MAX_AGE_DAYS": "7.5", "INGEST_MAX_FUTURE_HOURS": "0", "INGEST_REJECTS_QUEUE_URL": "http://sqs/q"}
    )
    assert settings.limits.max_age == timedelta(days=7, hours=12)
    assert settings.limits.max_future == timedelta(0)
    assert settings.limits.max_bytes == DEFAULT_LIMITS.max_bytes  # what the environment does not set
    assert settings.rejects_queue_url == "http://sqs/q"


@pytest.mark.parametrize(("name", "raw"), [("INGEST_MAX_AGE_DAYS", "a week"), ("INGEST_MAX_FUTURE_HOURS", "-1")])
def test_a_bad_limit_is_refused_by_name(name, raw):
    with pytest.raises(ConfigError, match=name):
        IngestSettings.from_env({name: raw})
