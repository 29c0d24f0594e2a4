"""The Kinesis event source mapping poller against the real moto server, the real invoker and `esm_probe`.

Each test creates its own stream, function, mapping (and queue), deletes the mapping at the end, and reads what
the function saw from the probe's JSON-lines log. Faults are injected through the records' data (see the probe).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict

import pytest

from localcloud.config import REPO_ROOT
from localcloud.runtime.esm import EventSourceMappingPoller
from localcloud.runtime.lambdas import invoker as lambda_invoker
from localcloud.servers.moto_patches.awslambda_deploy import hot_reload_code

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/x"
WAIT_S = 30


def wait_for(predicate, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Harness:
    """Creates uniquely named resources on the endpoint and reads what the probe function received."""

    def __init__(self, endpoint, invoker, tmp_path):
        self.endpoint = endpoint
        self.invoker = invoker
        self.tmp_path = tmp_path
        self.kinesis = endpoint.client("kinesis")
        self.lam = endpoint.client("lambda")
        self.sqs = endpoint.client("sqs")
        self.name = f"esm-{uuid.uuid4().hex[:10]}"
        self.log = tmp_path / "deliveries.jsonl"
        self.log.touch()
        self.mappings: list[str] = []
        self.pollers: list[EventSourceMappingPoller] = []
        self.checkpoint_file = tmp_path / "checkpoints.sqlite"

    def stream(self, shards=1):
        self.kinesis.create_stream(StreamName=self.name, ShardCount=shards)
        return self.kinesis.describe_stream_summary(StreamName=self.name)["StreamDescriptionSummary"]["StreamARN"]

    def function(self):
        self.lam.create_function(
            FunctionName=self.name,
            Runtime="python3.12",
            Role=ROLE,
            Handler="esm_probe.handler.lambda_handler",
            Code=hot_reload_code(REPO_ROOT / "tests" / "probe_lambdas"),
            Timeout=30,
            Environment={"Variables": {"ESM_PROBE_LOG": str(self.log)}},
        )
        return self.name

    def queue(self):
        url = self.sqs.create_queue(QueueName=f"{self.name}-failures")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    def mapping(self, stream_arn, **settings):
        settings.setdefault("StartingPosition", "TRIM_HORIZON")
        created = self.lam.create_event_source_mapping(FunctionName=self.name, EventSourceArn=stream_arn, **settings)
        self.mappings.append(created["UUID"])
        return created["UUID"]

    def put(self, records):
        """records: [(partition key, data dict)], put in order; returns their sequence numbers."""
        response = self.kinesis.put_records(
            StreamName=self.name,
            Records=[{"PartitionKey": key, "Data": json.dumps(data).encode()} for key, data in records],
        )
        assert response["FailedRecordCount"] == 0
        return [entry["SequenceNumber"] for entry in response["Records"]]

    def poller(self, **kwargs):
        poller = EventSourceMappingPoller(
            self.endpoint.url, REGION, self.invoker, self.checkpoint_file, refresh_interval_s=0.2, **kwargs
        )
        poller.start()
        self.pollers.append(poller)
        return poller

    def batches(self):
        with self.log.open() as lines:
            return [json.loads(line) for line in lines]

    def delivered_ids(self):
        return [record["id"] for batch in self.batches() for record in batch["records"]]

    def wait_delivered(self, ids):
        wanted = set(ids)
        wait_for(lambda: wanted <= set(self.delivered_ids()), what=f"delivery of {sorted(wanted)}")

    def status(self, poller):
        """The poller's rows for this test's mappings (the endpoint is shared with other tests' mappings)."""
        return [row for row in poller.status() if row["uuid"] in self.mappings]

    def wait_checkpoint(self, poller, sequence_number):
        def reached():
            return any(
                row["checkpoint_sequence"] and int(row["checkpoint_sequence"]) >= int(sequence_number)
                for row in self.status(poller)
            )

        wait_for(reached, what=f"checkpoint {sequence_number}")

    def failure_records(self, queue_url, expected):
        found = []

        def received():
            messages = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            found.extend(json.loads(m["Body"]) for m in messages.get("Messages", []))
            return len(found) >= expected

        wait_for(received, what=f"{expected} OnFailure records")
        return found

    def close(self):
        for poller in self.pollers:
            poller.stop()
        for mapping_uuid in self.mappings:
            self.lam.delete_event_source_mapping(UUID=mapping_uuid)


@pytest.fixture(scope="module")
def invoker(aws_endpoint):
    iam = aws_endpoint.client("iam")
    if not any(role["Arn"] == ROLE for role in iam.list_roles()["Roles"]):
        iam.create_role(RoleName="x", AssumeRolePolicyDocument="{}")
    running = lambda_invoker.LambdaInvoker(aws_endpoint.url, REGION, default_concurrency=4)
    yield running
    running.close()


@pytest.fixture
def harness(aws_endpoint, invoker, tmp_path):
    running = Harness(aws_endpoint, invoker, tmp_path)
    yield running
    running.close()


def records(count, prefix="r", keys=1, **behaviour):
    return [(f"key-{i % keys}", {"id": f"{prefix}{i}", **behaviour}) for i in range(count)]


# ---- ordering and batching -----------------------------------------------------------------------------------
def test_each_shard_is_delivered_once_in_order_in_the_aws_event_shape(harness):
    stream_arn = harness.stream(shards=2)
    harness.function()
    harness.mapping(stream_arn, BatchSize=10)
    put = records(60, keys=12)
    sequence_of = dict(zip([data["id"] for _, data in put], harness.put(put), strict=True))
    harness.poller()
    harness.wait_delivered(sequence_of)

    assert sorted(harness.delivered_ids()) == sorted(sequence_of)  # every record exactly once
    per_shard = defaultdict(list)
    for batch in harness.batches():
        assert 1 <= len(batch["records"]) <= 10
        shards = {record["event_id"].split(":")[0] for record in batch["records"]}
        assert len(shards) == 1  # a batch holds the records of one shard
        for record in batch["records"]:
            assert record["seq"] == sequence_of[record["id"]]
            assert record["event_id"] == f"{shards.copy().pop()}:{record['seq']}"
            per_shard[record["event_id"].split(":")[0]].append(int(record["seq"]))
    assert sorted(per_shard) == ["shardId-000000000000", "shardId-000000000001"]
    assert all(seqs == sorted(seqs) for seqs in per_shard.values())


def test_parallelization_factor_keeps_order_per_partition_key(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=4, ParallelizationFactor=3)
    put = records(48, keys=8, sleep=0.02)
    sequences = harness.put(put)
    poller = harness.poller()
    harness.wait_delivered([d["id"] for _, d in put])
    harness.wait_checkpoint(poller, sequences[-1])

    assert sorted(harness.delivered_ids()) == sorted(d["id"] for _, d in put)
    per_key = defaultdict(list)
    for batch in harness.batches():
        for record in batch["records"]:
            per_key[record["key"]].append(int(record["seq"]))
    assert len(per_key) == 8
    assert all(seqs == sorted(seqs) for seqs in per_key.values())


def test_batching_window_gathers_two_bursts_into_one_batch(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=100, MaximumBatchingWindowInSeconds=3)
    harness.poller()
    harness.put(records(5, prefix="a"))
    time.sleep(0.5)
    harness.put(records(5, prefix="b"))
    harness.wait_delivered([f"b{i}" for i in range(5)])
    assert [len(batch["records"]) for batch in harness.batches()] == [10]


def test_batch_size_is_respected(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=4, MaximumBatchingWindowInSeconds=1)
    harness.put(records(10))
    harness.poller()
    harness.wait_delivered([f"r{i}" for i in range(10)])
    assert [len(batch["records"]) for batch in harness.batches()] == [4, 4, 2]


# ---- ReportBatchItemFailures ---------------------------------------------------------------------------------
def test_reported_failure_checkpoints_at_the_lowest_failed_record(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    put = records(10)
    put[7][1]["report"] = 1  # reported failed on its first delivery
    put[4][1]["report"] = 1
    sequences = harness.put(put)
    poller = harness.poller()
    harness.wait_checkpoint(poller, sequences[-1])

    batches = [[record["id"] for record in batch["records"]] for batch in harness.batches()]
    assert batches == [[f"r{i}" for i in range(10)], [f"r{i}" for i in range(4, 10)]]


@pytest.mark.parametrize("answer", ["null", "empty", "missing"])
def test_null_empty_or_missing_failure_list_is_success(harness, answer):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    sequences = harness.put(records(3, response=answer))
    poller = harness.poller()
    harness.wait_checkpoint(poller, sequences[-1])
    assert harness.delivered_ids() == ["r0", "r1", "r2"]


def test_malformed_item_identifier_retries_the_whole_batch(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=10, FunctionResponseTypes=["ReportBatchItemFailures"])
    put = records(5)
    put[2][1]["malformed"] = 1
    sequences = harness.put(put)
    poller = harness.poller()
    harness.wait_checkpoint(poller, sequences[-1])
    whole = [f"r{i}" for i in range(5)]
    assert [[record["id"] for record in batch["records"]] for batch in harness.batches()] == [whole, whole]


# ---- retries, bisect, OnFailure ------------------------------------------------------------------------------
def test_retries_exhausted_sends_one_aws_shaped_failure_record_and_moves_on(harness):
    stream_arn = harness.stream()
    harness.function()
    queue_url, queue_arn = harness.queue()
    harness.mapping(
        stream_arn,
        BatchSize=10,
        MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    put = records(3)
    put[1][1]["raise"] = -1
    sequences = harness.put(put)
    poller = harness.poller()
    [document] = harness.failure_records(queue_url, expected=1)
    later = harness.put(records(1, prefix="after"))
    harness.wait_checkpoint(poller, later[0])

    batches = harness.batches()
    assert [len(batch["records"]) for batch in batches] == [3, 3, 3, 1]  # first try + 2 retries, then on
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 3
    assert document["requestContext"]["requestId"] == batches[2]["request_id"]
    assert document["requestContext"]["functionArn"].endswith(f":function:{harness.name}")
    assert document["responseContext"] == {
        "statusCode": 200,
        "executedVersion": "$LATEST",
        "functionError": "Unhandled",
    }
    assert document["version"] == "1.0"
    assert document["timestamp"].endswith("Z")
    info = document["KinesisBatchInfo"]
    assert info["shardId"] == "shardId-000000000000"
    assert (info["startSequenceNumber"], info["endSequenceNumber"]) == (sequences[0], sequences[-1])
    assert info["batchSize"] == 3
    assert info["streamArn"] == stream_arn
    assert info["approximateArrivalOfFirstRecord"] <= info["approximateArrivalOfLastRecord"]
    assert not harness.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages")


def test_bisect_isolates_one_poison_record(harness):
    stream_arn = harness.stream()
    harness.function()
    queue_url, queue_arn = harness.queue()
    harness.mapping(
        stream_arn,
        BatchSize=16,
        BisectBatchOnFunctionError=True,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    put = records(16)
    put[11][1]["raise"] = -1
    sequences = harness.put(put)
    poller = harness.poller()
    [document] = harness.failure_records(queue_url, expected=1)
    harness.wait_checkpoint(poller, sequences[-1])

    batches = [[record["id"] for record in batch["records"]] for batch in harness.batches()]
    successful = [batch for batch in batches if "r11" not in batch]
    assert sorted(i for batch in successful for i in batch) == sorted(f"r{i}" for i in range(16) if i != 11)
    assert batches.count(["r11"]) == 2  # the isolated record: first try + 1 retry
    info = document["KinesisBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        sequences[11],
        sequences[11],
        1,
    )
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["requestContext"]["approximateInvokeCount"] == 2


def test_records_older_than_the_maximum_age_are_discarded(harness):
    """A 60 s MaximumRecordAgeInSeconds tested without waiting 60 s: the poller's clock is moved forward."""
    stream_arn = harness.stream()
    harness.function()
    queue_url, queue_arn = harness.queue()
    harness.mapping(
        stream_arn,
        BatchSize=10,
        MaximumRecordAgeInSeconds=60,
        DestinationConfig={"OnFailure": {"Destination": queue_arn}},
    )
    skew = [0.0]
    sequences = harness.put([("k", {"id": "stuck", "raise": -1})])
    poller = harness.poller(clock=lambda: time.time() + skew[0])
    wait_for(lambda: len(harness.batches()) >= 2, what="retries of the failing record")
    skew[0] = 120.0
    [document] = harness.failure_records(queue_url, expected=1)
    skew[0] = 0.0
    later = harness.put(records(1, prefix="fresh"))
    harness.wait_checkpoint(poller, later[0])

    assert document["requestContext"]["condition"] == "RecordAgeExceeded"
    assert document["KinesisBatchInfo"]["startSequenceNumber"] == sequences[0]
    assert document["requestContext"]["approximateInvokeCount"] >= 2
    assert harness.delivered_ids()[-1] == "fresh0"


# ---- restart and starting positions -------------------------------------------------------------------------
def test_restart_resumes_after_the_last_completed_batch(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=5)
    put = records(60, sleep=0.1)
    sequences = harness.put(put)
    first = harness.poller()
    wait_for(lambda: len(harness.batches()) >= 3, what="three batches")
    first.stop()
    before = harness.batches()

    second = harness.poller()
    harness.wait_checkpoint(second, sequences[-1])
    after = harness.batches()[len(before) :]

    ids_before = [record["id"] for batch in before for record in batch["records"]]
    ids_after = [record["id"] for batch in after for record in batch["records"]]
    assert set(ids_before) | set(ids_after) == {data["id"] for _, data in put}  # nothing lost
    redelivered = set(ids_before) & set(ids_after)
    in_flight_at_stop = {record["id"] for record in before[-1]["records"]}
    assert redelivered <= in_flight_at_stop  # at most the batch that was in flight
    assert len(before) < 12  # the first poller really stopped mid-stream


def test_latest_skips_records_already_in_the_stream(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, StartingPosition="LATEST", BatchSize=10)
    harness.put(records(5, prefix="old"))
    poller = harness.poller()
    wait_for(lambda: [row["state"] for row in harness.status(poller)] == ["polling"], what="the shard iterator")
    later = harness.put(records(3, prefix="new"))
    harness.wait_checkpoint(poller, later[-1])
    assert harness.delivered_ids() == ["new0", "new1", "new2"]


def test_at_timestamp_starts_at_the_given_time(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.put(records(4, prefix="old"))
    time.sleep(0.1)
    start = time.time()
    time.sleep(0.1)
    later = harness.put(records(3, prefix="new"))
    harness.mapping(stream_arn, StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=start)
    poller = harness.poller()
    harness.wait_checkpoint(poller, later[-1])
    assert harness.delivered_ids() == ["new0", "new1", "new2"]


def test_disabled_mapping_stops_and_resumes_from_its_checkpoint(harness):
    stream_arn = harness.stream()
    harness.function()
    mapping_uuid = harness.mapping(stream_arn, BatchSize=10)
    first = harness.put(records(2, prefix="a"))
    poller = harness.poller()
    harness.wait_checkpoint(poller, first[-1])
    harness.lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=False)
    wait_for(lambda: harness.status(poller) == [], what="the mapping to stop")
    second = harness.put(records(2, prefix="b"))
    time.sleep(0.5)  # a few refresh intervals: nothing may be delivered while disabled
    assert harness.delivered_ids() == ["a0", "a1"]
    harness.lam.update_event_source_mapping(UUID=mapping_uuid, Enabled=True)
    harness.wait_checkpoint(poller, second[-1])
    assert harness.delivered_ids() == ["a0", "a1", "b0", "b1"]


def test_batch_is_cut_before_the_6_mb_payload_limit(harness):
    stream_arn = harness.stream()
    harness.function()
    harness.mapping(stream_arn, BatchSize=100)
    # ~1 MB of data each, ~1.33 MB base64-encoded in the event: four fit under 6 MB, five do not.
    big = [("k", {"id": f"big{i}", "pad": "x" * 1_000_000}) for i in range(7)]
    harness.put(big[:4])
    sequences = harness.put(big[4:])
    poller = harness.poller()
    harness.wait_checkpoint(poller, sequences[-1])
    assert [len(batch["records"]) for batch in harness.batches()] == [4, 3]
