"""Notification texts: SNS-safe subjects, readable bodies, attributes for filter policies."""

from datetime import UTC, datetime, timedelta

import pytest
from alerts.messages import MAX_SUBJECT_CHARS, AlertFacts, render, subject_text
from alerts.rules import Observation, Rule
from alerts.state import Event

OPENED_AT = datetime(2024, 3, 10, 12, 16, tzinfo=UTC)


def facts(rule: Rule, value: float, threshold: float, breached: bool = True, device: str = "dev-7", detail: str = ""):
    return AlertFacts(42, device, Observation(rule, breached, value, threshold, detail), OPENED_AT)


def test_opened_offline_notification():
    note = render(facts(Rule.OFFLINE, 16.4, 15.0), Event.OPENED, OPENED_AT)
    assert note.subject == "[CRITICAL] dev-7: offline for 16 min"
    assert note.body.splitlines()[0] == "Device dev-7 has sent no reading for 16 minutes (limit 15)."
    assert "Rule: offline (offline)" in note.body and "Event: opened" in note.body and "Alert id: 42" in note.body
    assert note.attributes == {
        "rule": "offline",
        "severity": "critical",
        "device_id": "dev-7",
        "event": "opened",
        "notification_id": "alert-42-opened",
    }
    assert note.notification_id == "alert-42-opened"


def test_resolved_notification_says_how_long_it_was_open():
    now = OPENED_AT + timedelta(minutes=25)
    note = render(facts(Rule.OFFLINE, 1.0, 15.0, breached=False), Event.RESOLVED, now)
    assert note.subject == "[RESOLVED] dev-7: offline"
    assert note.body.startswith("Resolved after 25 minutes: Device dev-7 is reporting again")
    assert f"Resolved at: {now.isoformat()}" in note.body
    assert (note.attributes["event"], note.attributes["severity"]) == ("resolved", "critical")
    assert note.notification_id == "alert-42-resolved"


@pytest.mark.parametrize(
    ("rule", "value", "threshold", "subject"),
    [
        (Rule.LOW_UPTIME, 62.5, 80.0, "[WARNING] dev-7: uptime 62.5% < 80%"),
        (Rule.WEAK_SIGNAL, -91.25, -85.0, "[WARNING] dev-7: avg RSS -91.2 dBm < -85 dBm"),
        (Rule.LOW_BATTERY, 12.0, 20.0, "[WARNING] dev-7: battery 12% < 20%"),
        (Rule.TEMPERATURE_ANOMALY, -4.25, 3.0, "[WARNING] dev-7: temperature z -4.2 beyond 3"),
    ],
)
def test_subjects_per_rule(rule, value, threshold, subject):
    note = render(facts(rule, value, threshold, detail="latest hour 12.0 °C"), Event.OPENED, OPENED_AT)
    assert note.subject == subject
    assert note.attributes["rule"] == rule.value and note.attributes["severity"] == "warning"


def test_subject_is_printable_ascii_and_short_whatever_the_device_id():
    device = "capteur-température\n" + "x" * 200
    note = render(facts(Rule.OFFLINE, 20, 15, device=device), Event.OPENED, OPENED_AT)
    assert len(note.subject) == MAX_SUBJECT_CHARS < 100
    assert note.subject.isascii() and note.subject.isprintable() and note.subject.endswith("...")
    assert note.attributes["device_id"] == device  # attributes keep the real id
    assert subject_text("a\tb\r\nc") == "a b c"
