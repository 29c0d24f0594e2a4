"""The stack loader refuses what Terraform would refuse, with the key that is wrong."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from localcloud.config import STACK_FILE
from localcloud.stack.model import QueueAlarm, StackError, load_stack


@pytest.fixture
def write_stack(tmp_path):
    def write(change: Callable[[dict], object]) -> Path:
        raw = yaml.safe_load(STACK_FILE.read_text())
        change(raw)
        path = tmp_path / "stack.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return write


def test_the_queue_alarms_of_the_stack_file_are_loaded():
    stack = load_stack(STACK_FILE)
    assert stack.queue_alarms["ingest_dlq"] == QueueAlarm(
        "ApproximateNumberOfMessagesVisible", "Maximum", 1, 300, stack.queue_alarms["ingest_dlq"].description
    )
    assert stack.queue_alarms["ingest_rejects"].metric == "NumberOfMessagesSent"
    assert stack.queue_alarm_name("ingest_rejects") == "iotkpi-ingest_rejects-NumberOfMessagesSent"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("metric", "MessagesVisible", "queues.ingest_dlq.alarm.metric: 'MessagesVisible' is not an SQS metric"),
        ("statistic", "p99", "queues.ingest_dlq.alarm.statistic: 'p99' is not one of"),
        ("threshold", -1, "queues.ingest_dlq.alarm.threshold: -1 is not a number >= 0"),
        ("period_s", 90, "queues.ingest_dlq.alarm.period_s: 90 is not a multiple of 60"),
    ],
)
def test_an_alarm_out_of_range_is_refused_by_its_key(write_stack, field, value, message):
    path = write_stack(lambda raw: raw["queues"]["ingest_dlq"]["alarm"].update({field: value}))
    with pytest.raises(StackError, match=re.escape(message)):
        load_stack(path)


def test_a_record_age_within_a_day_of_the_stream_retention_is_refused_with_the_retention_it_needs(write_stack):
    def too_long(raw: dict) -> None:
        raw["stream"]["retention_hours"] = 48
        raw["functions"]["ingest"]["kinesis_trigger"]["maximum_record_age_s"] = 100_000

    with pytest.raises(StackError, match=re.escape("raise stream.retention_hours to at least 52 or lower the age")):
        load_stack(write_stack(too_long))
