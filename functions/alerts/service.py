"""One alerts run: evaluate every device and record the changes, then deliver the outbox.

Evaluation is one transaction: alert rows, damping conditions and the notifications announcing the changes
commit together or not at all. Delivery comes after the commit, one notification per short transaction
(row locked, published, marked sent): a publish that fails leaves its row unsent for the next run, and a
crash between Publish and the commit re-publishes it later (at-least-once, with a deterministic
notification_id for deduplication). A run with failed deliveries reports them; the handler then fails the
invocation so that the failure is visible (Lambda Errors metric, async retry).

Evaluation works on the database directly (postgres.py's statements in one transaction); delivery goes
through the Outbox and Publisher ports (ports.py), so its retry logic is tested with in-memory fakes too.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime

from common.db import Database

from alerts import postgres
from alerts.messages import AlertFacts, describe, render
from alerts.ports import Outbox, Publisher, PublishError
from alerts.rules import Rule, kpi_horizon
from alerts.settings import AlertSettings
from alerts.state import Condition, Decision, Event, evaluate_device

# A pass stops after this many failures in a row (SNS down or unreachable): the rest wait for the next run
# instead of each costing a timeout, which could exceed the function's own.
MAX_CONSECUTIVE_FAILURES = 3


@dataclass(frozen=True)
class Evaluation:
    now: str
    kpi_horizon: str | None  # where the KPI windows read end; None: KPI rules were not evaluated
    devices: int
    opened: dict[str, int]  # per rule
    resolved: dict[str, int]
    open_alerts: int  # after the run


@dataclass(frozen=True)
class Delivery:
    sent: int
    failed: int
    unsent: int  # left in the outbox after the run
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    evaluation: Evaluation
    delivery: Delivery
    duration_ms: float

    def as_dict(self) -> dict:
        return asdict(self)


def _apply(conn, decision: Decision, open_alert: postgres.OpenAlert | None, now: datetime) -> None:
    observation = decision.observation
    if decision.event is Event.OPENED:
        message = describe(decision.device_id, observation)
        alert_id = postgres.insert_alert(conn, decision.device_id, observation, message, now)
        facts = AlertFacts(alert_id, decision.device_id, observation, opened_at=now)
    elif decision.event is Event.RESOLVED and open_alert is not None:
        postgres.resolve_alert(conn, open_alert.id, observation.value, now)
        facts = AlertFacts(open_alert.id, decision.device_id, observation, opened_at=open_alert.opened_at)
    else:
        return
    postgres.enqueue(conn, facts.alert_id, decision.event, render(facts, decision.event, now), now)


def evaluate(db: Database, settings: AlertSettings, now: datetime | None = None) -> Evaluation:
    """Evaluate all non-test devices at `now` (default: the database clock) and record the changes."""
    with db.transaction() as conn:
        db_now = postgres.lock_run(conn)
        now = now or db_now
        horizon = kpi_horizon(now, postgres.kpi_watermark(conn), settings.kpi_max_lag)
        snapshots = postgres.load_snapshots(conn, now, horizon, settings.thresholds.temperature_history_hours)
        conditions: dict[str, dict[Rule, Condition]] = defaultdict(dict)
        for (device, rule), condition in postgres.load_conditions(conn).items():
            conditions[device][rule] = condition
        open_alerts = postgres.load_open_alerts(conn)
        open_rules: dict[str, set[Rule]] = defaultdict(set)
        for device, rule in open_alerts:
            open_rules[device].add(rule)
        changed_conditions, still_open = [], []
        opened: Counter[str] = Counter()
        resolved: Counter[str] = Counter()
        for snapshot in snapshots:
            device = snapshot.device_id
            decisions = evaluate_device(
                snapshot, conditions.get(device, {}), open_rules.get(device, set()), settings, now
            )
            for decision in decisions:
                rule = decision.observation.rule
                if decision.condition is not None:
                    changed_conditions.append((device, rule, decision.condition))
                open_alert = open_alerts.get((device, rule))
                _apply(conn, decision, open_alert, now)
                if decision.event is Event.OPENED:
                    opened[rule.value] += 1
                elif decision.event is Event.RESOLVED:
                    resolved[rule.value] += 1
                elif open_alert is not None:
                    still_open.append((open_alert.id, decision.observation.value))
        postgres.save_conditions(conn, changed_conditions)
        postgres.touch_alerts(conn, still_open, now)
    return Evaluation(
        now=now.isoformat(),
        kpi_horizon=horizon.isoformat() if horizon else None,
        devices=len(snapshots),
        opened=dict(opened),
        resolved=dict(resolved),
        open_alerts=len(open_alerts) + sum(opened.values()) - sum(resolved.values()),
    )


def deliver(outbox: Outbox, publisher: Publisher) -> Delivery:
    """Publish every deliverable unsent notification once, oldest first (stopping early when the topic keeps
    failing)."""
    sent = failed = failed_in_a_row = 0
    errors: list[str] = []
    after_id = 0
    while failed_in_a_row < MAX_CONSECUTIVE_FAILURES:
        with outbox.next_unsent(after_id) as row:
            if row is None:
                break
            after_id = row.id
            try:
                message_id = publisher.publish(row.notification)
            except PublishError as exc:
                outbox.mark_failed(row.id, str(exc))
                failed += 1
                failed_in_a_row += 1
                errors.append(f"{row.notification.notification_id}: {exc}")
                continue
            outbox.mark_sent(row.id, message_id)
            sent += 1
            failed_in_a_row = 0
    return Delivery(sent=sent, failed=failed, unsent=outbox.unsent_count(), errors=errors[:10])


def run(db: Database, publisher: Publisher, settings: AlertSettings, now: datetime | None = None) -> RunSummary:
    started = time.perf_counter()
    evaluation = evaluate(db, settings, now)
    delivery = deliver(postgres.PostgresOutbox(db), publisher)
    return RunSummary(evaluation, delivery, round((time.perf_counter() - started) * 1000, 1))
