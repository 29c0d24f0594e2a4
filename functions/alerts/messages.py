"""Notification texts and SNS message attributes, pure.

SNS wants a Subject of fewer than 100 characters, printable ASCII without line breaks; the body is plain
text, "Key: value" lines after a sentence, readable in an e-mail and easy to parse. Attributes are
strings so that subscription filter policies can match them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from alerts.rules import Observation, Rule
from alerts.state import Event

MAX_SUBJECT_CHARS = 99

RULE_TITLES: dict[Rule, str] = {
    Rule.OFFLINE: "offline",
    Rule.LOW_UPTIME: "low uptime",
    Rule.WEAK_SIGNAL: "weak signal",
    Rule.LOW_BATTERY: "low battery",
    Rule.TEMPERATURE_ANOMALY: "temperature anomaly",
}


@dataclass(frozen=True)
class AlertFacts:
    """What a notification is about: the alert row's identity and the observation that changed it."""

    alert_id: int
    device_id: str
    observation: Observation
    opened_at: datetime


@dataclass(frozen=True)
class Notification:
    notification_id: str  # deterministic: one per alert and event, the subscribers' deduplication key
    subject: str
    body: str
    attributes: dict[str, str]


def notification_id(alert_id: int, event: Event) -> str:
    return f"alert-{alert_id}-{event.value}"


def describe(device_id: str, observation: Observation) -> str:
    """One sentence on the observed state."""
    value, limit = observation.value, observation.threshold
    match observation.rule:
        case Rule.OFFLINE if observation.breached:
            return f"Device {device_id} has sent no reading for {value:.0f} minutes (limit {limit:g})."
        case Rule.OFFLINE:
            return f"Device {device_id} is reporting again (last reading {value:.0f} minutes ago)."
        case Rule.LOW_UPTIME:
            return f"Device {device_id} uptime over the last hour is {value:.1f}% (minimum {limit:g}%)."
        case Rule.WEAK_SIGNAL:
            return f"Device {device_id} average signal over the last hour is {value:.1f} dBm (minimum {limit:g} dBm)."
        case Rule.LOW_BATTERY:
            return f"Device {device_id} battery is at {value:.0f}% (minimum {limit:g}%)."
        case Rule.TEMPERATURE_ANOMALY:
            return f"Device {device_id} temperature z-score is {value:+.1f} (limit ±{limit:g}); {observation.detail}."
    raise ValueError(f"no description for rule {observation.rule!r}")


def _short(observation: Observation) -> str:
    value, limit = observation.value, observation.threshold
    match observation.rule:
        case Rule.OFFLINE:
            return f"offline for {value:.0f} min"
        case Rule.LOW_UPTIME:
            return f"uptime {value:.1f}% < {limit:g}%"
        case Rule.WEAK_SIGNAL:
            return f"avg RSS {value:.1f} dBm < {limit:g} dBm"
        case Rule.LOW_BATTERY:
            return f"battery {value:.0f}% < {limit:g}%"
        case Rule.TEMPERATURE_ANOMALY:
            return f"temperature z {value:+.1f} beyond {limit:g}"
    raise ValueError(f"no summary for rule {observation.rule!r}")


def subject_text(text: str) -> str:
    """Printable ASCII, one line, fewer than 100 characters."""
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in " ".join(text.split()))
    if len(printable) > MAX_SUBJECT_CHARS:
        printable = printable[: MAX_SUBJECT_CHARS - 3] + "..."
    return printable


def render(facts: AlertFacts, event: Event, now: datetime) -> Notification:
    observation = facts.observation
    title = RULE_TITLES[observation.rule]
    if event is Event.OPENED:
        subject = f"[{observation.severity.upper()}] {facts.device_id}: {_short(observation)}"
        headline = describe(facts.device_id, observation)
    else:
        subject = f"[RESOLVED] {facts.device_id}: {title}"
        open_minutes = (now - facts.opened_at).total_seconds() / 60
        headline = f"Resolved after {open_minutes:.0f} minutes: {describe(facts.device_id, observation)}"
    lines = [
        headline,
        "",
        f"Device: {facts.device_id}",
        f"Rule: {observation.rule.value} ({title})",
        f"Severity: {observation.severity}",
        f"Event: {event.value}",
        f"Value: {observation.value:.3f}",
        f"Threshold: {observation.threshold:g}",
        f"Opened at: {facts.opened_at.isoformat()}",
    ]
    if event is Event.RESOLVED:
        lines.append(f"Resolved at: {now.isoformat()}")
    lines.append(f"Alert id: {facts.alert_id}")
    return Notification(
        notification_id=notification_id(facts.alert_id, event),
        subject=subject_text(subject),
        body="\n".join(lines),
        attributes={
            "rule": observation.rule.value,
            "severity": observation.severity,
            "device_id": facts.device_id,
            "event": event.value,
            "notification_id": notification_id(facts.alert_id, event),
        },
    )
