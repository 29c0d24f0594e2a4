"""The replay tool's reading side against the real moto server: the exact range of an on-failure record, read
back from its shard; what it cannot replay stays in the queue. Re-driving into the ingest is tested end to end
in tests/e2e/test_replay.py (it needs the runtime that runs the function)."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from localcloud.runtime.esm import events
from localcloud.runtime.esm.batching import Record
from localcloud.tools.replay import FailedBatch, Replayer

FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:iotkpi-ingest"


@pytest.fixture
def stream(aws_endpoint) -> tuple[str, str, list[dict]]:
    """A one-shard stream with 30 records, put in 3 calls: (name, ARN, the records as the shard returns them)."""
    kinesis = aws_endpoint.client("kinesis")
    name = f"replay-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    for part in range(3):
        entries = [{"Data": f"reading {part}-{i}".encode(), "PartitionKey": f"dev-{i % 4}"} for i in range(10)]
        kinesis.put_records(StreamName=name, Records=entries)
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    iterator = kinesis.get_shard_iterator(
        StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert len(records) == 30
    return name, arn, records


def on_failure_record(stream_arn: str, first: dict, last: dict, size: int) -> str:
    """As the mapping sends it (the local poller's builder, checked against AWS's documented example)."""
    document = events.failure_record(
        records=[_batching_record(first), _batching_record(last)], shard_id="shardId-000000000000",
        stream_arn=stream_arn, function_arn=FUNCTION_ARN, condition="RetryAttemptsExhausted",
        request_id=str(uuid.uuid4()), invoke_count=2, function_error=None, now=0.0,
    )  # fmt: skip
    document["KinesisBatchInfo"]["batchSize"] = size
    return json.dumps(document)


def _batching_record(raw: dict) -> Record:
    return Record(raw["SequenceNumber"], raw["PartitionKey"], raw["ApproximateArrivalTimestamp"].timestamp())


def replayer(aws_endpoint) -> Replayer:
    return Replayer(aws_endpoint.client, dry_run=True)


def test_the_range_of_an_on_failure_record_is_read_back_exactly_in_the_mappings_event_shape(aws_endpoint, stream):
    _, arn, records = stream
    batch = FailedBatch.parse(on_failure_record(arn, records[7], records[22], 16))
    assert batch.function_arn == FUNCTION_ARN and batch.stream_name == stream[0] and batch.region == "us-east-1"

    read = replayer(aws_endpoint).read(batch)

    assert [r.sequence_number for r in read] == [r["SequenceNumber"] for r in records[7:23]]
    for got, raw in zip(read, records[7:23], strict=True):
        event = json.loads(got.event)
        assert base64.b64decode(event["kinesis"]["data"]) == raw["Data"]
        assert event["kinesis"]["partitionKey"] == raw["PartitionKey"]
        assert event["eventID"] == f"shardId-000000000000:{raw['SequenceNumber']}"
        assert event["eventSourceARN"] == arn
        assert got.event_bytes == len(got.event.encode())


def test_a_range_that_is_not_all_in_the_shard_cannot_be_replayed(aws_endpoint, stream):
    _, arn, records = stream
    beyond = {**records[-1], "SequenceNumber": str(int(records[-1]["SequenceNumber"]) + 1)}
    outcome = replayer(aws_endpoint).replay_one(on_failure_record(arn, records[25], beyond, 6))
    assert "the shard ends before sequence number" in outcome.error and outcome.records == 0


def test_what_cannot_be_replayed_stays_in_the_queue_visible_for_the_next_run(aws_endpoint, stream):
    sqs = aws_endpoint.client("sqs")
    queue = sqs.create_queue(QueueName=f"replay-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    _, arn, records = stream
    sqs.send_message(QueueUrl=queue, MessageBody="not an invocation record")
    sqs.send_message(QueueUrl=queue, MessageBody=on_failure_record(arn, records[0], records[9], 10))
    reported = []

    outcomes = replayer(aws_endpoint).replay_queue(queue, limit=None, report=reported.append)

    assert reported == outcomes and len(outcomes) == 2
    junk, batch = sorted(outcomes, key=lambda outcome: outcome.batch is not None)
    assert junk.error.startswith("not a Kinesis on-failure record") and batch.records == 10 and not batch.error
    # A dry run deletes nothing; both are visible again at once, not after the 15-minute visibility timeout.
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "2"
