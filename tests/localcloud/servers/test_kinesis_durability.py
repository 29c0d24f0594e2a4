"""The endpoint's durable state over HTTP (Kinesis streams and records, mapping UUIDs, IoT topic rules): each test
runs our moto launcher on a store file of its own, kills it (SIGKILL) or stops it, and starts it again on the
same file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from localcloud.servers.procs import free_port, terminate_group
from tests.fixtures.aws import AwsEndpoint, start_moto
from tests.localcloud.servers.test_aws_endpoint import create_function

SHARD0 = "shardId-000000000000"
DAY_AND_AN_HOUR = str(25 * 3600)


class Endpoint:
    """Our launcher on one store file; `restart` kills it (SIGKILL by default) and starts it again."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.proc: subprocess.Popen | None = None
        self.aws: AwsEndpoint

    def start(self, **env: str) -> Endpoint:
        port = free_port()
        self.proc = start_moto(port, env={"LOCALCLOUD_KINESIS_DB": str(self.db), **env})
        self.aws = AwsEndpoint(f"http://127.0.0.1:{port}", self.proc)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def restart(self, **env: str) -> Endpoint:
        self.kill()
        return self.start(**env)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate_group(self.proc.pid)
            self.proc.wait(timeout=10)

    def kinesis(self):
        return self.aws.client("kinesis")


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[Endpoint]:
    server = Endpoint(tmp_path / "kinesis.db").start()
    try:
        yield server
    finally:
        server.stop()


def put(kinesis, stream: str, payloads: list[bytes], key: str = "k") -> list[str]:
    answer = kinesis.put_records(StreamName=stream, Records=[{"Data": p, "PartitionKey": key} for p in payloads])
    assert answer["FailedRecordCount"] == 0
    return [r["SequenceNumber"] for r in answer["Records"]]


def read_shard(kinesis, stream: str, iterator_type: str = "TRIM_HORIZON", shard_id: str = SHARD0, **position):
    """Every record from the position to the tip of the shard."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType=iterator_type, **position
    )["ShardIterator"]
    records: list[dict] = []
    while True:
        response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        records += response["Records"]
        iterator = response["NextShardIterator"]
        if not response["Records"]:
            return records


def records_in_file(db: Path) -> int:
    with sqlite3.connect(db) as conn:  # WAL: a second reader next to the running endpoint
        return conn.execute("SELECT count(*) FROM record").fetchone()[0]


def test_a_sigkill_loses_no_acknowledged_record_and_sequence_numbers_keep_increasing(endpoint):
    kinesis = endpoint.kinesis()
    kinesis.create_stream(StreamName="s", ShardCount=2)
    kinesis.add_tags_to_stream(StreamName="s", Tags={"team": "iot"})
    kinesis.increase_stream_retention_period(StreamName="s", RetentionPeriodHours=48)
    before = kinesis.describe_stream(StreamName="s")["StreamDescription"]
    numbers = put(kinesis, "s", [b"%d" % i for i in range(500)]) + put(
        kinesis, "s", [b"%d" % i for i in range(500, 999)]
    )
    shard = kinesis.put_record(StreamName="s", Data=b"999", PartitionKey="k")["ShardId"]
    numbers.append(str(len(numbers) + 1))
    iterator = kinesis.get_shard_iterator(
        StreamName="s", ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[499]
    )["ShardIterator"]

    kinesis = endpoint.restart().kinesis()

    after = kinesis.describe_stream(StreamName="s")["StreamDescription"]
    kept = ("StreamARN", "RetentionPeriodHours", "StreamCreationTimestamp")
    assert {key: after[key] for key in kept} == {key: before[key] for key in kept}
    ranges = [[(s["ShardId"], s["HashKeyRange"]) for s in d["Shards"]] for d in (before, after)]
    assert ranges[0] == ranges[1] and len(ranges[0]) == 2
    assert kinesis.list_tags_for_stream(StreamName="s")["Tags"] == [{"Key": "team", "Value": "iot"}]
    stored = read_shard(kinesis, "s", shard_id=shard)
    assert [(r["SequenceNumber"], r["Data"]) for r in stored] == [(n, b"%d" % i) for i, n in enumerate(numbers)]
    assert numbers == [str(n) for n in range(1, 1001)]
    # An iterator handed out before the kill still reads from where it was.
    page = kinesis.get_records(ShardIterator=iterator, Limit=3)
    assert [r["Data"] for r in page["Records"]] == [b"500", b"501", b"502"]
    later = kinesis.put_record(StreamName="s", Data=b"later", PartitionKey="k")
    assert (later["ShardId"], later["SequenceNumber"]) == (shard, "1001")


def test_every_acknowledged_put_of_concurrent_writers_survives_a_sigkill_mid_stream(endpoint):
    endpoint.kinesis().create_stream(StreamName="busy", ShardCount=1)
    acknowledged: list[bytes] = []
    stop = threading.Event()

    def writer(name: str) -> None:
        kinesis, batch = endpoint.kinesis(), 0
        while not stop.is_set():
            payloads = [b"%s-%d-%d" % (name.encode(), batch, i) for i in range(100)]
            try:
                put(kinesis, "busy", payloads)
            except Exception:  # the endpoint died under this request: not acknowledged
                return
            acknowledged.extend(payloads)
            batch += 1

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    endpoint.kill()
    stop.set()
    for thread in threads:
        thread.join(30)
    assert len(acknowledged) >= 400

    kinesis = endpoint.start().kinesis()
    stored = read_shard(kinesis, "busy")
    data = [r["Data"] for r in stored]
    assert set(acknowledged) <= set(data)
    assert len(data) == len(set(data))  # nothing stored twice
    assert [int(r["SequenceNumber"]) for r in stored] == list(range(1, len(stored) + 1))


def test_records_expire_after_the_retention_and_a_trim_horizon_starts_at_the_oldest_kept(endpoint):
    kinesis = endpoint.kinesis()
    for name in ("day", "two-days"):
        kinesis.create_stream(StreamName=name, ShardCount=1)
        put(kinesis, name, [b"old-%d" % i for i in range(50)])
    kinesis.increase_stream_retention_period(StreamName="two-days", RetentionPeriodHours=48)
    endpoint.stop()

    # 25 hours later (the store's clock moved on): past the 24 h retention of one stream, inside the 48 h of the other.
    kinesis = endpoint.start(LOCALCLOUD_KINESIS_CLOCK_OFFSET=DAY_AND_AN_HOUR).kinesis()
    new = put(kinesis, "day", [b"new"])
    assert [r["Data"] for r in read_shard(kinesis, "day")] == [b"new"]
    assert new == ["51"]
    assert kinesis.list_shards(StreamName="day")["Shards"][0]["SequenceNumberRange"]["StartingSequenceNumber"] == "51"
    assert len(read_shard(kinesis, "two-days")) == 50

    kinesis.decrease_stream_retention_period(StreamName="two-days", RetentionPeriodHours=24)
    assert read_shard(kinesis, "two-days") == []
    at_old = read_shard(kinesis, "two-days", "AT_SEQUENCE_NUMBER", StartingSequenceNumber="1")
    assert at_old == []
    assert (
        kinesis.describe_stream_summary(StreamName="two-days")["StreamDescriptionSummary"]["RetentionPeriodHours"] == 24
    )
    assert records_in_file(endpoint.db) == 1  # the expired ones are deleted from the file, not only hidden


def test_latest_at_timestamp_and_millis_behind_latest_after_a_restart(endpoint):
    kinesis = endpoint.kinesis()
    kinesis.create_stream(StreamName="t", ShardCount=1)
    put(kinesis, "t", [b"before"])
    time.sleep(1.2)
    between = datetime.now(UTC)
    time.sleep(0.2)
    put(kinesis, "t", [b"a", b"b"])

    kinesis = endpoint.restart().kinesis()
    at = read_shard(kinesis, "t", "AT_TIMESTAMP", Timestamp=between)
    assert [r["Data"] for r in at] == [b"a", b"b"]
    assert at[0]["ApproximateArrivalTimestamp"] > between
    latest = kinesis.get_shard_iterator(StreamName="t", ShardId=SHARD0, ShardIteratorType="LATEST")["ShardIterator"]
    put(kinesis, "t", [b"c"])
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=latest)["Records"]] == [b"c"]
    oldest = kinesis.get_shard_iterator(StreamName="t", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")
    page = kinesis.get_records(ShardIterator=oldest["ShardIterator"], Limit=1)
    assert page["MillisBehindLatest"] >= 1200  # "before" is older than the newest record by the pause


def test_a_failed_put_records_request_stores_nothing(endpoint):
    kinesis = endpoint.kinesis()
    kinesis.create_stream(StreamName="f", ShardCount=1)
    put(kinesis, "f", [b"ok"])
    with pytest.raises(kinesis.exceptions.InvalidArgumentException):
        kinesis.put_records(StreamName="f", Records=[{"Data": b"fine", "PartitionKey": "k"},
                                                    {"Data": b"bad", "PartitionKey": "k" * 257}])  # fmt: skip
    assert [r["Data"] for r in read_shard(kinesis, "f")] == [b"ok"]
    assert put(kinesis, "f", [b"next"]) == ["2"]


def test_a_deleted_stream_stays_deleted_and_a_new_one_of_that_name_starts_empty(endpoint):
    kinesis = endpoint.kinesis()
    kinesis.create_stream(StreamName="d", ShardCount=1)
    put(kinesis, "d", [b"first life"] * 20)
    kinesis.delete_stream(StreamName="d")
    kinesis.create_stream(StreamName="d", ShardCount=1)
    put(kinesis, "d", [b"second life"])

    kinesis = endpoint.restart().kinesis()
    assert kinesis.list_streams()["StreamNames"] == ["d"]
    assert [(r["SequenceNumber"], r["Data"]) for r in read_shard(kinesis, "d")] == [("1", b"second life")]
    assert records_in_file(endpoint.db) == 1


def test_a_kinesis_mapping_created_again_after_a_restart_keeps_its_uuid(endpoint):
    kinesis = endpoint.kinesis()
    kinesis.create_stream(StreamName="m", ShardCount=1)
    stream_arn = kinesis.describe_stream(StreamName="m")["StreamDescription"]["StreamARN"]

    def mapping() -> str:
        function_arn = create_function(endpoint.aws, "consumer")
        return endpoint.aws.client("lambda").create_event_source_mapping(
            FunctionName=function_arn, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON"
        )["UUID"]

    first = mapping()
    endpoint.restart()  # moto forgets its functions and mappings; the deploy creates them again
    again = mapping()
    assert again == first
    lam = endpoint.aws.client("lambda")
    assert lam.get_event_source_mapping(UUID=first)["EventSourceArn"] == stream_arn
    lam.delete_event_source_mapping(UUID=first)
    endpoint.restart()
    assert mapping() != first  # deleted: a new mapping is a new one, as on AWS


def test_topic_rules_survive_a_restart_as_they_were(endpoint):
    iot = endpoint.aws.client("iot")
    payload = {
        "sql": "SELECT *, topic(2) AS device_id FROM 'devices/+/telemetry'",
        "awsIotSqlVersion": "2016-03-23",
        "ruleDisabled": False,
        "actions": [
            {"kinesis": {"streamName": "s", "partitionKey": "${topic(2)}", "roleArn": "arn:aws:iam::1:role/r"}}
        ],
        "errorAction": {"sqs": {"queueUrl": "http://q", "roleArn": "arn:aws:iam::1:role/r"}},
    }
    iot.create_topic_rule(ruleName="telemetry", topicRulePayload=payload)
    iot.create_topic_rule(ruleName="paused", topicRulePayload={**payload, "sql": "SELECT * FROM 'other/#'"})
    iot.disable_topic_rule(ruleName="paused")
    iot.create_topic_rule(ruleName="gone", topicRulePayload=payload)
    iot.delete_topic_rule(ruleName="gone")
    before = {name: iot.get_topic_rule(ruleName=name)["rule"] for name in ("telemetry", "paused")}

    iot = endpoint.restart().aws.client("iot")

    assert sorted(r["ruleName"] for r in iot.list_topic_rules()["rules"]) == ["paused", "telemetry"]
    assert {name: iot.get_topic_rule(ruleName=name)["rule"] for name in ("telemetry", "paused")} == before
    assert before["paused"]["ruleDisabled"] is True
    iot.replace_topic_rule(ruleName="telemetry", topicRulePayload={**payload, "sql": "SELECT 1 FROM 'x'"})
    iot = endpoint.restart().aws.client("iot")
    assert iot.get_topic_rule(ruleName="telemetry")["rule"]["sql"] == "SELECT 1 FROM 'x'"
