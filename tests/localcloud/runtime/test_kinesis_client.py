"""localcloud/runtime/kinesis_client.py: the runtime's Kinesis client answers exactly as botocore's own parsing
does with the same parser defaults, and sends the PutRecords body botocore's serializer would, against the real
moto server over HTTP."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.session
from botocore.config import Config
from botocore.parsers import ResponseParserFactory

from localcloud.runtime.kinesis_client import records_client
from tests.fixtures.aws import REGION, AwsEndpoint

ENTRIES = [
    {"Data": b'{"seq":1}', "PartitionKey": "dev-1"},
    {"Data": bytes(range(256)), "PartitionKey": "d\u00e9v-\u2603"},  # binary data, a non-ASCII key
    {"Data": b"", "PartitionKey": "dev-3"},
]


def botocore_client(url: str):
    """Kinesis with botocore's own parsing of every shape, under the runtime client's parser defaults."""
    parsers = ResponseParserFactory()
    parsers.set_parser_defaults(blob_parser=str, timestamp_parser=float)
    core = botocore.session.get_session()
    core.register_component("response_parser_factory", parsers)
    return core.create_client(
        "kinesis", region_name=REGION, endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test"
    )


def both_clients_and_a_stream(url: str, shards: int) -> tuple:
    """(the runtime's records client, botocore's, a new stream of `shards` shards)."""
    session = boto3.Session(region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    ours, theirs = records_client(session, url, Config()), botocore_client(url)
    stream = f"client-{uuid.uuid4().hex[:8]}"
    theirs.create_stream(StreamName=stream, ShardCount=shards)
    theirs.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2})
    return ours, theirs, stream


def test_record_lists_are_what_botocore_parses(aws_endpoint: AwsEndpoint):
    ours, theirs, stream = both_clients_and_a_stream(aws_endpoint.url, shards=1)

    put_ours = ours.put_records(StreamName=stream, Records=ENTRIES)
    put_theirs = theirs.put_records(StreamName=stream, Records=ENTRIES)
    for answer in (put_ours, put_theirs):
        answer.pop("ResponseMetadata")
    assert [set(entry) for entry in put_ours["Records"]] == [set(entry) for entry in put_theirs["Records"]]
    assert {key: value for key, value in put_ours.items() if key != "Records"} == {
        key: value for key, value in put_theirs.items() if key != "Records"
    }

    shard = theirs.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    read = []
    for client in (ours, theirs):
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
        answer = client.get_records(ShardIterator=iterator["ShardIterator"])
        answer.pop("ResponseMetadata")
        answer.pop("NextShardIterator")
        read.append(answer)
    assert read[0] == read[1]
    assert [record["SequenceNumber"] for record in read[0]["Records"]] == [
        entry["SequenceNumber"] for entry in put_ours["Records"] + put_theirs["Records"]
    ]
    assert type(read[0]["Records"][0]["Data"]) is str  # base64, as the wire and the invocation event hold it


def sent_bodies(client) -> list[bytes]:
    """The bodies of the client's requests, as they leave it (after signing)."""
    bodies: list[bytes] = []
    client.meta.events.register("before-send.kinesis.PutRecords", lambda request, **_: bodies.append(request.body))
    return bodies


def test_put_records_sends_the_body_botocore_serializes(aws_endpoint: AwsEndpoint):
    ours, theirs, stream = both_clients_and_a_stream(aws_endpoint.url, shards=2)
    entries = [*ENTRIES, {"Data": "caf\u00e9", "PartitionKey": "k", "ExplicitHashKey": str(2**127)}]  # str data

    bodies = [sent_bodies(client) for client in (ours, theirs)]
    answers = [client.put_records(StreamName=stream, Records=entries) for client in (ours, theirs)]

    assert json.loads(bodies[0][0]) == json.loads(bodies[1][0])
    assert json.loads(bodies[0][0])["Records"][3]["Data"] == "Y2Fmw6k="  # the str's UTF-8 bytes
    for answer in answers:
        assert answer["FailedRecordCount"] == 0
    assert [entry["ShardId"] for entry in answers[0]["Records"]] == [e["ShardId"] for e in answers[1]["Records"]]
    # A call after another does not reuse its records (they are held in each call's own context).
    ours.put_records(StreamName=stream, Records=entries[:1])
    assert len(json.loads(bodies[0][1])["Records"]) == 1
