"""CloudWatch Logs on the real endpoint over HTTP: a log stream keeps its newest events, so the runtime's
shipped Lambda logs cannot grow the endpoint's memory without bound."""

from __future__ import annotations

import time
import uuid

from localcloud.servers.moto_patches.logs import EVENTS_KEPT_PER_STREAM


def test_a_log_stream_keeps_its_newest_events(aws_endpoint):
    logs, group = aws_endpoint.client("logs"), f"/aws/lambda/chatty-{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="worker")
    start, total = int(time.time() * 1000), EVENTS_KEPT_PER_STREAM + 2_500
    for first in range(0, total, 5_000):
        events = [{"timestamp": start + i, "message": f"line {i}"} for i in range(first, min(total, first + 5_000))]
        logs.put_log_events(logGroupName=group, logStreamName="worker", logEvents=events)

    kept = logs.get_log_events(logGroupName=group, logStreamName="worker", startFromHead=True, limit=10_000)["events"]
    assert len(kept) == EVENTS_KEPT_PER_STREAM
    assert (kept[0]["message"], kept[-1]["message"]) == ("line 2500", f"line {total - 1}")
