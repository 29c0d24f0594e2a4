"""The scheduler against the real moto server and the real invoker, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from localcloud.config import REPO_ROOT
from localcloud.runtime.lambdas.invoker import LambdaInvoker
from localcloud.runtime.scheduler.scheduler import Scheduler, UnknownScheduleError
from localcloud.stack.deploy import deploy_stack
from localcloud.stack.model import load_stack

T0 = datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class RecordingInvoker:
    """The real invoker, plus a record of which events reached which function."""

    def __init__(self, invoker: LambdaInvoker) -> None:
        self._invoker = invoker
        self.calls: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    def invoke(self, function_name, event):
        with self._lock:
            self.calls.append((function_name, event))
        return self._invoker.invoke(function_name, event)

    def events_for(self, function_name: str) -> list[dict]:
        with self._lock:
            return [event for name, event in self.calls if name == function_name]


@pytest.fixture
def probe(aws_env, tmp_path: Path):
    """The probe function deployed under a unique project (its own stack schedule removed)."""
    raw = yaml.safe_load((REPO_ROOT / "tests" / "stacks" / "probe-stack.yaml").read_text())
    raw["project"] = f"sched-{uuid.uuid4().hex[:8]}"
    probe_spec = raw["functions"]["probe"]
    del probe_spec["schedule"], probe_spec["kinesis_trigger"]
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(yaml.safe_dump(raw))
    stack = load_stack(stack_file)
    outputs = deploy_stack(stack, aws_env.url, "us-east-1", database_secret={})
    invoker = LambdaInvoker(aws_env.url, "us-east-1")
    try:
        yield stack, outputs, RecordingInvoker(invoker)
    finally:
        invoker.close()


def schedule_definitions(aws_endpoint, project: str, function_arn: str, role_arn: str) -> dict[str, str]:
    events, scheduler = aws_endpoint.client("events"), aws_endpoint.client("scheduler")
    names = {kind: f"{project}-{kind}" for kind in ("every-minute", "cron", "disabled")}
    rule_arn = events.put_rule(Name=names["every-minute"], ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule=names["every-minute"], Targets=[{"Id": "probe", "Arn": function_arn}])
    cron_input = {"kind": "cron", "scheduled": "<aws.scheduler.scheduled-time>"}
    common = {"FlexibleTimeWindow": {"Mode": "OFF"}}
    scheduler.create_schedule(
        Name=names["cron"],
        ScheduleExpression="cron(0/10 * * * ? *)",
        Target={"Arn": function_arn, "RoleArn": role_arn, "Input": json.dumps(cron_input)},
        **common,
    )
    scheduler.create_schedule(
        Name=names["disabled"],
        ScheduleExpression="rate(1 minute)",
        State="DISABLED",
        Target={"Arn": function_arn, "RoleArn": role_arn, "Input": json.dumps({"kind": "disabled"})},
        **common,
    )
    return {**names, "rule_arn": rule_arn}


def test_rules_and_schedules_fire_at_their_times_with_the_aws_event_shapes(aws_endpoint, probe):
    stack, outputs, invoker = probe
    function = outputs["PROBE_FUNCTION_NAME"]
    names = schedule_definitions(aws_endpoint, stack.project, outputs["PROBE_FUNCTION_ARN"], outputs["LOCAL_ROLE_ARN"])
    clock = FakeClock(T0)
    scheduler = Scheduler(aws_endpoint.url, "us-east-1", invoker, clock=clock)
    scheduler.refresh()

    clock.now = T0 + timedelta(seconds=59)
    scheduler.run_pending()
    assert invoker.events_for(function) == []

    clock.now = T0 + timedelta(seconds=60)
    results = [r for r in scheduler.run_pending() if r.function_name == function]
    assert [r.ok for r in results] == [True]
    [event] = invoker.events_for(function)
    assert uuid.UUID(event.pop("id"))
    assert event == {
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": names["rule_arn"].split(":")[4],
        "time": "2030-01-01T00:01:30Z",
        "region": "us-east-1",
        "resources": [names["rule_arn"]],
        "detail": {},
    }

    # A stall past several fire times fires each target once (no replay), at the latest due time.
    clock.now = datetime(2030, 1, 1, 0, 10, 5, tzinfo=UTC)
    scheduler.run_pending()
    fired = invoker.events_for(function)[1:]
    by_kind = sorted(fired, key=lambda e: e.get("kind", "rule"))
    assert [e.get("kind", "rule") for e in by_kind] == ["cron", "rule"]
    assert by_kind[0] == {"kind": "cron", "scheduled": "2030-01-01T00:10:00Z"}
    assert by_kind[1]["time"] == "2030-01-01T00:09:30Z"

    status = {s["name"]: s for s in scheduler.status()}
    assert status[names["every-minute"]]["next_fire"] == "2030-01-01T00:10:30+00:00"
    assert status[names["cron"]]["next_fire"] == "2030-01-01T00:20:00+00:00"
    assert status[names["disabled"]]["next_fire"] is None
    assert all(e != {"kind": "disabled"} for e in invoker.events_for(function))


def test_fire_now_and_unknown_names(aws_endpoint, probe):
    stack, outputs, invoker = probe
    names = schedule_definitions(aws_endpoint, stack.project, outputs["PROBE_FUNCTION_ARN"], outputs["LOCAL_ROLE_ARN"])
    clock = FakeClock(T0 + timedelta(hours=5, seconds=7))
    scheduler = Scheduler(aws_endpoint.url, "us-east-1", invoker, clock=clock)

    result = scheduler.fire(names["every-minute"])  # discovered on demand
    assert result.ok and result.function_name == outputs["PROBE_FUNCTION_NAME"]
    assert invoker.events_for(result.function_name)[-1]["time"] == "2030-01-01T05:00:37Z"
    assert scheduler.fire(names["cron"]).ok
    assert invoker.events_for(result.function_name)[-1] == {"kind": "cron", "scheduled": "2030-01-01T05:00:37Z"}
    with pytest.raises(UnknownScheduleError):
        scheduler.fire(f"{stack.project}-no-such-schedule")


def test_background_thread_fires_and_stops(aws_endpoint, probe):
    stack, outputs, invoker = probe
    names = schedule_definitions(aws_endpoint, stack.project, outputs["PROBE_FUNCTION_ARN"], outputs["LOCAL_ROLE_ARN"])
    clock = FakeClock(T0)
    scheduler = Scheduler(aws_endpoint.url, "us-east-1", invoker, clock=clock, refresh_interval_s=0.2)

    def rule_fired() -> bool:
        return any(
            e.get("resources") == [names["rule_arn"]] for e in invoker.events_for(outputs["PROBE_FUNCTION_NAME"])
        )

    scheduler.start()
    try:
        deadline = time.monotonic() + 30
        while not any(s["name"] == names["every-minute"] for s in scheduler.status()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not rule_fired()
        clock.now = T0 + timedelta(minutes=1)
        while not rule_fired() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rule_fired()
    finally:
        scheduler.stop()
    fires = len(invoker.calls)
    clock.now = T0 + timedelta(hours=1)
    time.sleep(1.0)  # a stopped scheduler fires nothing, however late it is
    assert len(invoker.calls) == fires
