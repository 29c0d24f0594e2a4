"""Alert state transitions with damping, pure.

Per (device, rule) the store keeps a condition: whether the rule was breached at the latest evaluation
that had data, and since when it has been so (the first evaluation of the current streak). An alert
opens when a breach has held for `open_after`, stays open without further notifications, and resolves
when the rule has been clear for `resolve_after`; a breach in between restarts the clear streak, so a
flapping device keeps one open alert instead of a stream of open/resolved pairs.

A (device, rule) without a stored condition counts as clear since forever: healthy devices cost no rows.

Rules interact in two ways: while a device is offline the other rules are not evaluated (their numbers
describe the outage the offline alert already reports), and low_uptime waits until the device has been
back for a whole hour, so that the rolling hour no longer contains the outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from alerts.rules import ROLLING_HOUR, DeviceSnapshot, Observation, Rule, observe_kpis, observe_offline
from alerts.settings import AlertSettings, Damping

CLEAR_SINCE_FOREVER_AT = datetime.min.replace(tzinfo=UTC)


class Event(StrEnum):
    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Condition:
    breached: bool
    since: datetime


CLEAR_SINCE_FOREVER = Condition(breached=False, since=CLEAR_SINCE_FOREVER_AT)


@dataclass(frozen=True)
class Decision:
    """The outcome of one observation: the condition to store (None: unchanged) and the event, if any."""

    device_id: str
    observation: Observation
    condition: Condition | None
    event: Event | None


def step(
    observation: Observation, condition: Condition | None, alert_open: bool, damping: Damping, now: datetime
) -> tuple[Condition | None, Event | None]:
    """The next condition (None when unchanged) and the event this observation triggers."""
    current = condition or CLEAR_SINCE_FOREVER
    changed = current.breached != observation.breached
    if changed:
        current = Condition(observation.breached, now)
    held = now - current.since
    if observation.breached and not alert_open and held >= damping.open_after:
        event = Event.OPENED
    elif not observation.breached and alert_open and held >= damping.resolve_after:
        event = Event.RESOLVED
    else:
        event = None
    return (current if changed else None), event


def evaluate_device(
    snapshot: DeviceSnapshot,
    conditions: Mapping[Rule, Condition],
    open_rules: frozenset[Rule] | set[Rule],
    settings: AlertSettings,
    now: datetime,
) -> list[Decision]:
    """Every rule with data for this device, in rule order, offline first."""

    def decide(observation: Observation) -> Decision:
        rule = observation.rule
        condition, event = step(observation, conditions.get(rule), rule in open_rules, settings.damping, now)
        return Decision(snapshot.device_id, observation, condition, event)

    offline = decide(observe_offline(snapshot, settings.thresholds, now))
    decisions = [offline]
    if offline.observation.breached:
        return decisions
    online = offline.condition or conditions.get(Rule.OFFLINE) or CLEAR_SINCE_FOREVER
    back_for_an_hour = now - online.since >= ROLLING_HOUR
    for observation in observe_kpis(snapshot, settings.thresholds):
        if observation.rule is Rule.LOW_UPTIME and not back_for_an_hour:
            continue
        decisions.append(decide(observation))
    return decisions
