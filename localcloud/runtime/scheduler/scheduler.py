"""Fires EventBridge scheduled rules and EventBridge Scheduler schedules at their Lambda targets.

moto stores rules and schedules but never fires them. This scheduler reads them from the endpoint
(refreshed periodically, so `terraform apply`/`aws events put-rule` against the endpoint take effect) and
invokes the target function through the Lambda invoker at each fire time:
- EventBridge rule: the target's constant `Input` when set, else AWS's "Scheduled Event";
- Scheduler schedule: `Target.Input` verbatim (with Scheduler's `<aws.scheduler.*>` context attributes
  substituted), `{}` when absent.
As in AWS, fires missed while the scheduler was not running are not replayed; if the process stalls past
several fire times it fires once and carries on from the present.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import aws_session
from localcloud.runtime.scheduler.expressions import ScheduleExpression, ScheduleExpressionError, parse

log = logging.getLogger(__name__)

RULE = "events-rule"
SCHEDULE = "scheduler-schedule"


class Invoker(Protocol):
    def invoke(self, function_name: str, event: Any) -> Any: ...


class UnknownScheduleError(KeyError):
    """No enabled or disabled rule/schedule of that name targets a Lambda function."""


@dataclass
class ScheduledTarget:
    """One rule or schedule with a Lambda target, and its firing state."""

    name: str
    kind: str  # RULE | SCHEDULE
    arn: str
    expression: ScheduleExpression
    function_name: str
    input: str | None
    enabled: bool
    anchor: datetime
    start: datetime | None = None
    end: datetime | None = None
    next_fire: datetime | None = None
    last_fire: datetime | None = None
    last_ok: bool | None = None
    fires: int = 0
    definition: tuple = field(default=(), repr=False)

    def latest_fire_time(self, now: datetime) -> datetime:
        """The last fire time not after `now`, of a due target (several may have passed during a stall)."""
        assert self.next_fire is not None
        fire = self.next_fire
        while (following := self.expression.next_after(fire, self.anchor)) is not None and following <= now:
            fire = following
        return fire

    def schedule_next(self, now: datetime) -> None:
        after = max(now, self.start - timedelta(microseconds=1)) if self.start else now
        fire = self.expression.next_after(after, self.anchor) if self.enabled else None
        self.next_fire = fire if fire is not None and (self.end is None or fire <= self.end) else None


def function_name_from_arn(arn: str) -> str | None:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]` → name; None for other targets."""
    parts = arn.split(":")
    if len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return parts[6]
    return None


def scheduled_event(rule_arn: str, fire_time: datetime) -> dict[str, Any]:
    """The event EventBridge sends a target of a scheduled rule."""
    _, _, _, region, account, _ = rule_arn.split(":", 5)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": fire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


def scheduler_input(target: ScheduledTarget, fire_time: datetime) -> Any:
    """Scheduler passes Target.Input verbatim, after substituting its context attributes."""
    text = target.input if target.input is not None else "{}"
    for key, value in {
        "<aws.scheduler.schedule-arn>": target.arn,
        "<aws.scheduler.scheduled-time>": fire_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "<aws.scheduler.execution-id>": str(uuid.uuid4()),
        "<aws.scheduler.attempt-number>": "1",
    }.items():
        text = text.replace(key, value)
    try:
        return json.loads(text)
    except ValueError:
        return text


class Scheduler:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        invoker: Invoker,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        refresh_interval_s: float = 10.0,
        max_concurrent_fires: int = 4,
    ) -> None:
        session = aws_session(region)
        self._events = session.client("events", endpoint_url=endpoint_url)
        self._scheduler = session.client("scheduler", endpoint_url=endpoint_url)
        self._invoker = invoker
        self._clock = clock
        self._refresh_interval_s = refresh_interval_s
        self._targets: dict[str, ScheduledTarget] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_concurrent_fires, thread_name_prefix="schedule-fire")
        self.last_refresh_error: str | None = None

    # -- discovery ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read rules and schedules; keep the firing state of those whose definition is unchanged."""
        now = self._clock()
        found = [*self._discover_rules(now), *self._discover_schedules(now)]
        with self._lock:
            fresh: dict[str, ScheduledTarget] = {}
            for target in found:
                key = f"{target.kind}:{target.name}:{target.function_name}"
                known = self._targets.get(key)
                if known is not None and known.definition == target.definition:
                    fresh[key] = known
                    continue
                target.schedule_next(now)
                fresh[key] = target
            self._targets = fresh

    def _discover_rules(self, now: datetime) -> list[ScheduledTarget]:
        found = []
        for page in self._events.get_paginator("list_rules").paginate():
            for rule in page["Rules"]:
                if not rule.get("ScheduleExpression"):
                    continue
                expression = self._parse(rule["Name"], rule["ScheduleExpression"], "UTC")
                if expression is None:
                    continue
                for target in self._events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
                    function = function_name_from_arn(target["Arn"])
                    if function is None:
                        continue
                    if target.get("InputPath") or target.get("InputTransformer"):
                        log.warning("rule %s: InputPath/InputTransformer not supported locally", rule["Name"])
                    enabled = rule.get("State", "ENABLED") == "ENABLED"
                    definition = (rule["ScheduleExpression"], target["Arn"], target.get("Input"), enabled)
                    found.append(
                        ScheduledTarget(
                            name=rule["Name"],
                            kind=RULE,
                            arn=rule["Arn"],
                            expression=expression,
                            function_name=function,
                            input=target.get("Input"),
                            enabled=enabled,
                            anchor=now,
                            definition=definition,
                        )
                    )
        return found

    def _discover_schedules(self, now: datetime) -> list[ScheduledTarget]:
        found = []
        for page in self._scheduler.get_paginator("list_schedules").paginate():
            for summary in page["Schedules"]:
                schedule = self._scheduler.get_schedule(Name=summary["Name"], GroupName=summary.get("GroupName"))
                target = schedule["Target"]
                function = function_name_from_arn(target["Arn"])
                if function is None:
                    continue
                timezone = schedule.get("ScheduleExpressionTimezone") or "UTC"
                expression = self._parse(schedule["Name"], schedule["ScheduleExpression"], timezone)
                if expression is None:
                    continue
                enabled = schedule.get("State", "ENABLED") == "ENABLED"
                start, end = schedule.get("StartDate"), schedule.get("EndDate")
                definition = (schedule["ScheduleExpression"], timezone, target["Arn"], target.get("Input"), enabled)
                found.append(
                    ScheduledTarget(
                        name=schedule["Name"],
                        kind=SCHEDULE,
                        arn=schedule["Arn"],
                        expression=expression,
                        function_name=function,
                        input=target.get("Input"),
                        enabled=enabled,
                        anchor=now,
                        start=start.astimezone(UTC) if start else None,
                        end=end.astimezone(UTC) if end else None,
                        definition=(*definition, start, end),
                    )
                )
        return found

    @staticmethod
    def _parse(name: str, text: str, timezone: str) -> ScheduleExpression | None:
        try:
            return parse(text, timezone)
        except ScheduleExpressionError as exc:
            log.error("schedule %s is skipped: %s", name, exc)
            return None

    # -- firing ---------------------------------------------------------------------------------------
    def run_pending(self, *, wait: bool = True) -> list[Any]:
        """Fire every target whose time has come (once, however many fire times were missed)."""
        now = self._clock()
        with self._lock:
            due = [t for t in self._targets.values() if t.next_fire is not None and t.next_fire <= now]
            fires = [(target, target.latest_fire_time(now)) for target in due]
            for target in due:
                target.schedule_next(now)
        if wait:
            return [self._fire(target, fire_time) for target, fire_time in fires]
        for target, fire_time in fires:
            self._pool.submit(self._fire, target, fire_time)
        return []

    def fire(self, name: str) -> Any:
        """Fire the rule or schedule called `name` now (even when disabled), synchronously."""
        with self._lock:
            matches = [t for t in self._targets.values() if t.name == name]
        if not matches:
            self.refresh()
            with self._lock:
                matches = [t for t in self._targets.values() if t.name == name]
        if not matches:
            raise UnknownScheduleError(name)
        now = self._clock()
        results = [self._fire(target, now) for target in matches]  # a rule may have several Lambda targets
        return results[0]

    def _fire(self, target: ScheduledTarget, fire_time: datetime) -> Any:
        if target.kind == RULE:
            event = json.loads(target.input) if target.input else scheduled_event(target.arn, fire_time)
        else:
            event = scheduler_input(target, fire_time)
        try:
            result = self._invoker.invoke(target.function_name, event)
        except Exception:  # nothing to run (function gone, throttled...): AWS would retry, then drop
            log.exception("%s %s: invoking %s failed", target.kind, target.name, target.function_name)
            with self._lock:
                target.last_fire, target.last_ok = fire_time, False
            raise
        with self._lock:
            target.last_fire, target.last_ok, target.fires = fire_time, bool(result.ok), target.fires + 1
        log.info("fired %s %s -> %s ok=%s", target.kind, target.name, target.function_name, result.ok)
        return result

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        next_refresh = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_refresh:
                try:
                    self.refresh()
                    self.last_refresh_error = None
                except (BotoCoreError, ClientError) as exc:
                    self.last_refresh_error = str(exc)
                    log.warning("scheduler refresh failed: %s", exc)
                next_refresh = time.monotonic() + self._refresh_interval_s
            self.run_pending(wait=False)
            # Wake at least every half second: fire times have one-second resolution at best in AWS too.
            self._stop.wait(0.5)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "name": t.name,
                    "kind": t.kind,
                    "expression": t.expression.text,
                    "timezone": t.expression.timezone,
                    "function": t.function_name,
                    "enabled": t.enabled,
                    "next_fire": t.next_fire.isoformat() if t.next_fire else None,
                    "last_fire": t.last_fire.isoformat() if t.last_fire else None,
                    "last_ok": t.last_ok,
                    "fires": t.fires,
                }
                for t in sorted(self._targets.values(), key=lambda t: t.name)
            ]
