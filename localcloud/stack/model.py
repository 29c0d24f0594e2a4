"""The stack definition (infrastructure/stack.yaml), loaded and validated once for the local cloud.

Terraform reads the same file with yamldecode(); nothing here may carry a value Terraform would not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localcloud.config import REPO_ROOT
from localcloud.errors import LocalCloudError


class StackError(LocalCloudError, ValueError):
    """The stack definition is missing a value or has one out of range."""


@dataclass(frozen=True)
class KinesisTrigger:
    batch_size: int
    maximum_batching_window_s: int
    starting_position: str
    parallelization_factor: int
    bisect_batch_on_function_error: bool
    maximum_retry_attempts: int
    maximum_record_age_s: int
    report_batch_item_failures: bool
    on_failure_queue: str | None


@dataclass(frozen=True)
class FunctionSpec:
    key: str
    packages: tuple[Path, ...]
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    reserved_concurrency: int | None
    environment: dict[str, str]
    kinesis_trigger: KinesisTrigger | None = None
    schedule: str | None = None

    @property
    def code_root(self) -> Path:
        """The folder that plays the zip's root: the packages' common parent."""
        return self.packages[0].parent


@dataclass(frozen=True)
class TopicRuleSpec:
    key: str
    sql: str
    sql_version: str
    description: str
    kinesis_partition_key: str
    error_queue: str | None


@dataclass(frozen=True)
class QueueAlarm:
    """A CloudWatch alarm on one SQS metric of a stack queue (`>= threshold` in one period)."""

    metric: str
    statistic: str
    threshold: float
    period_s: int
    description: str


@dataclass(frozen=True)
class Stack:
    project: str
    stream_name: str
    stream_mode: str
    shard_count: int
    retention_hours: int
    queues: dict[str, dict[str, int]]
    bucket_name: str
    alerts_topic_name: str
    functions: dict[str, FunctionSpec]
    topic_rules: dict[str, TopicRuleSpec]
    settings: dict[str, Any] = field(default_factory=dict)
    queue_alarms: dict[str, QueueAlarm] = field(default_factory=dict)

    def resource_name(self, suffix: str) -> str:
        """AWS name of a stack resource: `<project>-<suffix>`."""
        return f"{self.project}-{suffix}"

    def queue_alarm_name(self, key: str) -> str:
        """`<project>-<queue key>-<metric>`, as Terraform names it."""
        return self.resource_name(f"{key}-{self.queue_alarms[key].metric}")

    def rule_name(self, key: str) -> str:
        # IoT rule names allow only [A-Za-z0-9_].
        return f"{self.project}_{key}".replace("-", "_")


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise StackError(f"{where}: missing '{key}'")
    return mapping[key]


# The SQS metrics CloudWatch publishes per queue, and the statistics an alarm may apply to them.
QUEUE_METRICS = frozenset({
    "ApproximateAgeOfOldestMessage", "ApproximateNumberOfMessagesDelayed", "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesVisible", "NumberOfEmptyReceives", "NumberOfMessagesDeleted",
    "NumberOfMessagesReceived", "NumberOfMessagesSent", "SentMessageSize",
})  # fmt: skip
ALARM_STATISTICS = frozenset({"Average", "Maximum", "Minimum", "SampleCount", "Sum"})
# After a trigger gives up on a batch, the stream must keep its records at least this long for a replay.
MIN_REPLAY_WINDOW_S = 86_400


def _bounded(value: Any, low: int, high: int, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise StackError(f"{where}: {value!r} is not an integer in [{low}, {high}]")
    return value


def _trigger(raw: dict[str, Any], where: str) -> KinesisTrigger:
    position = _require(raw, "starting_position", where)
    if position not in {"TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"}:
        raise StackError(f"{where}.starting_position: {position!r} is not TRIM_HORIZON, LATEST or AT_TIMESTAMP")
    retries = _require(raw, "maximum_retry_attempts", where)
    age = _require(raw, "maximum_record_age_s", where)
    return KinesisTrigger(
        batch_size=_bounded(_require(raw, "batch_size", where), 1, 10_000, f"{where}.batch_size"),
        maximum_batching_window_s=_bounded(
            _require(raw, "maximum_batching_window_s", where), 0, 300, f"{where}.maximum_batching_window_s"
        ),
        starting_position=position,
        parallelization_factor=_bounded(raw.get("parallelization_factor", 1), 1, 10, f"{where}.parallelization_factor"),
        bisect_batch_on_function_error=bool(raw.get("bisect_batch_on_function_error", False)),
        # -1 means "infinite" in the AWS API, as it does here.
        maximum_retry_attempts=-1 if retries == -1 else _bounded(retries, 0, 10_000, f"{where}.maximum_retry_attempts"),
        maximum_record_age_s=-1 if age == -1 else _bounded(age, 60, 604_800, f"{where}.maximum_record_age_s"),
        report_batch_item_failures=bool(raw.get("report_batch_item_failures", False)),
        on_failure_queue=raw.get("on_failure_queue"),
    )


def _function(key: str, raw: dict[str, Any], root: Path) -> FunctionSpec:
    where = f"functions.{key}"
    trigger = raw.get("kinesis_trigger")
    packages = tuple(root / package for package in _require(raw, "packages", where))
    if not packages or len({package.parent for package in packages}) != 1:
        raise StackError(f"{where}.packages: list one or more packages that share one parent folder")
    return FunctionSpec(
        key=key,
        packages=packages,
        handler=_require(raw, "handler", where),
        runtime=raw.get("runtime", "python3.12"),
        memory_mb=_bounded(_require(raw, "memory_mb", where), 128, 10_240, f"{where}.memory_mb"),
        timeout_s=_bounded(_require(raw, "timeout_s", where), 1, 900, f"{where}.timeout_s"),
        reserved_concurrency=raw.get("reserved_concurrency"),
        environment={str(k): str(v) for k, v in (raw.get("environment") or {}).items()},
        kinesis_trigger=_trigger(trigger, f"{where}.kinesis_trigger") if trigger else None,
        schedule=raw.get("schedule"),
    )


def _queue_alarm(key: str, raw: dict[str, Any]) -> QueueAlarm:
    where = f"queues.{key}.alarm"
    metric, statistic = _require(raw, "metric", where), _require(raw, "statistic", where)
    if metric not in QUEUE_METRICS:
        raise StackError(f"{where}.metric: {metric!r} is not an SQS metric ({', '.join(sorted(QUEUE_METRICS))})")
    if statistic not in ALARM_STATISTICS:
        raise StackError(f"{where}.statistic: {statistic!r} is not one of {', '.join(sorted(ALARM_STATISTICS))}")
    threshold = _require(raw, "threshold", where)
    if not isinstance(threshold, int | float) or isinstance(threshold, bool) or threshold < 0:
        raise StackError(f"{where}.threshold: {threshold!r} is not a number >= 0")
    period = _bounded(_require(raw, "period_s", where), 60, 86_400, f"{where}.period_s")
    if period % 60:
        raise StackError(f"{where}.period_s: {period} is not a multiple of 60 (SQS metrics are per minute)")
    return QueueAlarm(metric, statistic, threshold, period, str(raw.get("description", "")))


def _check_replay_window(functions: dict[str, FunctionSpec], retention_hours: int) -> None:
    """A batch a trigger gives up on must stay in the stream long enough to be replayed from its record."""
    retention_s = retention_hours * 3600
    for fn in functions.values():
        age = fn.kinesis_trigger.maximum_record_age_s if fn.kinesis_trigger else None
        where = f"functions.{fn.key}.kinesis_trigger.maximum_record_age_s"
        if age == -1:
            raise StackError(
                f"{where}: -1 (no limit) keeps retrying until the records leave the stream, which then cannot be "
                f"replayed; set at most {retention_s - MIN_REPLAY_WINDOW_S} s"
            )
        if age is not None and retention_s - age < MIN_REPLAY_WINDOW_S:
            raise StackError(
                f"{where}: {age} s leaves less than a day to replay a failed batch from the stream, which keeps "
                f"records {retention_hours} h; raise stream.retention_hours to at least "
                f"{-(-(age + MIN_REPLAY_WINDOW_S) // 3600)} or lower the age"
            )


def _topic_rule(key: str, raw: dict[str, Any]) -> TopicRuleSpec:
    where = f"topic_rules.{key}"
    kinesis = _require(raw, "kinesis", where)
    return TopicRuleSpec(
        key=key,
        sql=" ".join(str(_require(raw, "sql", where)).split()),
        sql_version=str(raw.get("sql_version", "2016-03-23")),
        description=raw.get("description", ""),
        kinesis_partition_key=_require(kinesis, "partition_key", f"{where}.kinesis"),
        error_queue=(raw.get("error_action") or {}).get("sqs_queue"),
    )


def load_stack(path: Path, root: Path = REPO_ROOT) -> Stack:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise StackError(f"cannot read stack definition {path}: {exc}") from exc
    stream = _require(raw, "stream", "stack")
    functions = {key: _function(key, spec, root) for key, spec in (raw.get("functions") or {}).items()}
    queues = raw.get("queues") or {}
    for fn in functions.values():
        queue = fn.kinesis_trigger.on_failure_queue if fn.kinesis_trigger else None
        if queue and queue not in queues:
            raise StackError(f"functions.{fn.key}.kinesis_trigger.on_failure_queue: no queue named {queue!r}")
    retention_hours = _bounded(stream.get("retention_hours", 24), 24, 8760, "stream.retention_hours")
    _check_replay_window(functions, retention_hours)
    return Stack(
        project=_require(raw, "project", "stack"),
        stream_name=_require(stream, "name", "stream"),
        stream_mode=stream.get("mode", "PROVISIONED"),
        shard_count=_bounded(stream.get("shard_count", 1), 1, 500, "stream.shard_count"),
        retention_hours=retention_hours,
        queues=queues,
        bucket_name=_require(_require(raw, "bucket", "stack"), "name", "bucket"),
        alerts_topic_name=_require(_require(raw, "alerts_topic", "stack"), "name", "alerts_topic"),
        functions=functions,
        topic_rules={key: _topic_rule(key, spec) for key, spec in (raw.get("topic_rules") or {}).items()},
        settings=raw.get("settings") or {},
        queue_alarms={
            key: _queue_alarm(key, spec["alarm"]) for key, spec in queues.items() if (spec or {}).get("alarm")
        },
    )
