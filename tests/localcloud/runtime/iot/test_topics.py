"""MQTT topic filter matching and validation (MQTT 3.1.1/5 §4.7)."""

import pytest

from localcloud.runtime.iot.topics import InvalidTopicFilter, topic_matches, validate_filter


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("devices/+/telemetry", "devices/d1/telemetry", True),
        ("devices/+/telemetry", "devices/d1/status", False),
        ("devices/+/telemetry", "devices/d1/x/telemetry", False),
        ("devices/+/telemetry", "devices//telemetry", True),
        ("devices/#", "devices", True),
        ("devices/#", "devices/d1", True),
        ("devices/#", "devices/d1/telemetry/extra", True),
        ("devices/#", "device/d1", False),
        ("#", "anything/at/all", True),
        ("#", "$aws/things/x", False),
        ("+/telemetry", "$SYS/telemetry", False),
        ("$aws/+/x", "$aws/things/x", True),
        ("+", "a", True),
        ("+", "a/b", False),
        ("+/+", "/finance", True),
        ("a/b", "a/b", True),
        ("a/b", "a/B", False),
        ("a/b", "a/b/", False),
        ("a/+/#", "a/x", True),
        ("a/+/#", "a", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert validate_filter(topic_filter) == topic_filter
    assert topic_matches(topic_filter, topic) is expected


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a#", "a/b#", "a+/b", "a/+b", "#/a", "a\x00b"])
def test_invalid_filters_are_rejected(topic_filter: str) -> None:
    with pytest.raises(InvalidTopicFilter):
        validate_filter(topic_filter)
