"""moto_patches/kinesis_responses.py: GetRecords and PutRecords answered with orjson say what moto's own
serializer says (compared document by document, no I/O), and work over HTTP on our launcher."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from moto.core.responses import ActionContext, ActionResult
from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model

from localcloud.servers.moto_patches.kinesis_responses import _answer, _record
from localcloud.servers.procs import free_port, terminate_group
from tests.fixtures.aws import AwsEndpoint, start_moto

SHARD0 = "shardId-000000000000"


def moto_serialized(operation: str, document: dict) -> tuple[dict, dict]:
    """What moto 5.2.5's model-driven serializer answers for `document`."""
    service = get_service_model("kinesis")
    context = ActionContext(service, service.operation_model(operation), get_serializer_class("kinesis", "json"), None)
    _, headers, body = ActionResult(document).execute_result(context)
    return json.loads(body), headers


@pytest.mark.parametrize(
    "arrival",
    [datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=UTC), datetime(2026, 1, 1, 1, 2, 3, tzinfo=UTC),
     datetime(2026, 1, 1, 1, 2, 3, 999, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)],
)  # fmt: skip
def test_get_records_says_what_motos_serializer_says(arrival):
    records = [
        {"Data": bytes(range(256)), "PartitionKey": "dev-é/1", "SequenceNumber": "49590338271490256608559692538361571095921575989136588898", "ApproximateArrivalTimestamp": arrival},
        {"Data": b"", "PartitionKey": "k", "SequenceNumber": "2", "ApproximateArrivalTimestamp": arrival},
    ]  # fmt: skip
    document = {"NextShardIterator": "czpzaGFyZA==", "MillisBehindLatest": 1500}
    expected, headers = moto_serialized("GetRecords", {**document, "Records": records})

    body, our_headers = _answer({**document, "Records": [_record(record) for record in records]})

    assert json.loads(body) == expected
    assert our_headers == headers


def test_put_records_says_what_motos_serializer_says():
    document = {"FailedRecordCount": 1, "Records": [
        {"SequenceNumber": "7", "ShardId": SHARD0},
        {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"},
    ]}  # fmt: skip
    expected, headers = moto_serialized("PutRecords", document)

    body, our_headers = _answer(document)

    assert json.loads(body) == expected
    assert our_headers == headers


@pytest.fixture
def kinesis(tmp_path: Path) -> Iterator:
    port = free_port()
    proc = start_moto(port, env={"LOCALCLOUD_KINESIS_DB": str(tmp_path / "kinesis.db")})
    try:
        client = AwsEndpoint(f"http://127.0.0.1:{port}", proc).client("kinesis")
        client.create_stream(StreamName="s", ShardCount=1)
        client.get_waiter("stream_exists").wait(StreamName="s", WaiterConfig={"Delay": 0.2})
        yield client
    finally:
        terminate_group(proc.pid)
        proc.wait(timeout=10)


def test_records_put_are_read_back_in_order_over_http(kinesis):
    before = time.time()
    data = [os.urandom(i) for i in range(7)]
    put = kinesis.put_records(
        StreamName="s", Records=[{"Data": d, "PartitionKey": f"p{i}"} for i, d in enumerate(data)]
    )
    assert put["FailedRecordCount"] == 0
    assert [r["ShardId"] for r in put["Records"]] == [SHARD0] * 7
    iterator = kinesis.get_shard_iterator(StreamName="s", ShardId=SHARD0, ShardIteratorType="TRIM_HORIZON")

    first = kinesis.get_records(ShardIterator=iterator["ShardIterator"], Limit=4)
    rest = kinesis.get_records(ShardIterator=first["NextShardIterator"])
    empty = kinesis.get_records(ShardIterator=rest["NextShardIterator"])

    records = first["Records"] + rest["Records"]
    assert [r["Data"] for r in records] == data
    assert [r["PartitionKey"] for r in records] == [f"p{i}" for i in range(7)]
    assert [r["SequenceNumber"] for r in records] == [r["SequenceNumber"] for r in put["Records"]]
    assert (len(first["Records"]), empty["Records"]) == (4, [])
    arrivals = [r["ApproximateArrivalTimestamp"].timestamp() for r in records]
    assert all(before - 1 <= a <= time.time() + 1 and round(a, 3) == a for a in arrivals)


def test_errors_are_still_moto_s(kinesis):
    with pytest.raises(ClientError) as missing:
        kinesis.put_records(StreamName="missing", Records=[{"Data": b"x", "PartitionKey": "p"}])
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"
