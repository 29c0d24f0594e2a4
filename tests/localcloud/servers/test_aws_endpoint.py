"""The local AWS endpoint (moto server + localcloud.servers.moto_patches) over real HTTP.

Kinesis tests use the session endpoint; Lambda Invoke tests use a second endpoint whose
LOCALCLOUD_RUNTIME_URL points at a tiny real HTTP server playing the local Lambda runtime.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import subprocess
import sys
import threading
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from localcloud.servers.procs import free_port, terminate_group
from tests.fixtures.aws import REGION, AwsEndpoint, start_moto

ROLE_ARN = "arn:aws:iam::123456789012:role/x"
LOG_TAIL = base64.b64encode(b"START RequestId: 1\nEND RequestId: 1\n").decode()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class FakeRuntime:
    """Plays the local Lambda runtime: records every request; functions named *-fails raise; a payload
    that is not a JSON object is refused as the real runtime does."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        runtime = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                runtime.requests.append((self.path, dict(self.headers), body))
                function_name = self.path.rsplit("/", 1)[-1]
                if not body.startswith(b"{"):
                    error = {"errorType": "InvalidRequestContentException", "errorMessage": "not JSON"}
                    self._answer(400, json.dumps(error).encode(), {})
                elif self.headers["X-Invocation-Type"] == "Event":
                    self._answer(202, b"", {})
                elif function_name.endswith("-fails"):
                    error = {"errorType": "ValueError", "errorMessage": "boom", "stackTrace": ["handler.py:1"]}
                    self._answer(200, json.dumps(error).encode(), {"X-Amz-Function-Error": "Unhandled"})
                else:
                    result = {"function": function_name, "event": json.loads(body)}
                    self._answer(200, json.dumps(result).encode(), {"X-Amz-Log-Result": LOG_TAIL})

            def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def fake_runtime() -> Iterator[FakeRuntime]:
    runtime = FakeRuntime()
    yield runtime
    runtime.server.shutdown()
    runtime.server.server_close()


def moto_with_runtime(runtime_url: str) -> Iterator[AwsEndpoint]:
    port = free_port()
    proc = start_moto(port, env={"LOCALCLOUD_RUNTIME_URL": runtime_url})
    try:
        yield AwsEndpoint(f"http://127.0.0.1:{port}", proc)
    finally:
        terminate_group(proc.pid)
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def runtime_endpoint(fake_runtime: FakeRuntime) -> Iterator[AwsEndpoint]:
    yield from moto_with_runtime(fake_runtime.url)


def create_function(endpoint: AwsEndpoint, name: str) -> str:
    iam = endpoint.client("iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):  # moto checks that the role exists
        iam.create_role(RoleName=ROLE_ARN.rsplit("/", 1)[-1], AssumeRolePolicyDocument="{}")
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return event\n")
    created = endpoint.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=ROLE_ARN,
        Handler="handler.lambda_handler",
        Code={"ZipFile": code.getvalue()},
    )
    return created["FunctionArn"]


def create_stream(endpoint: AwsEndpoint, name: str) -> str:
    kinesis = endpoint.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=1)
    return kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]


def read_shard(kinesis, stream: str, iterator_type: str = "TRIM_HORIZON", **position) -> list[dict]:
    """Every record from the position to the tip of the stream's only shard."""
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType=iterator_type, **position
    )["ShardIterator"]
    records: list[dict] = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        records += page["Records"]
        iterator = page["NextShardIterator"]
        if not page["Records"]:
            return records


def test_concurrent_put_records_lose_nothing_and_keep_order(aws_endpoint):
    stream, writers, per_writer, batch = unique("concurrent"), 4, 5_000, 500
    create_stream(aws_endpoint, stream)
    clients = [aws_endpoint.client("kinesis") for _ in range(writers)]
    failures: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            for first in range(0, per_writer, batch):
                entries = [
                    {"Data": json.dumps({"w": writer, "i": i, "pad": "x" * 60}).encode(), "PartitionKey": f"d{writer}"}
                    for i in range(first, first + batch)
                ]
                answer = clients[writer].put_records(StreamName=stream, Records=entries)
                assert answer["FailedRecordCount"] == 0
        except BaseException as error:  # surfaced in the main thread below
            failures.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []

    records = read_shard(aws_endpoint.client("kinesis"), stream)
    readings = [json.loads(r["Data"]) for r in records]
    keys = [(r["w"], r["i"]) for r in readings]
    assert len(keys) == writers * per_writer
    assert set(keys) == {(w, i) for w in range(writers) for i in range(per_writer)}
    sequence_numbers = [int(r["SequenceNumber"]) for r in records]
    assert all(a < b for a, b in itertools.pairwise(sequence_numbers))
    for writer in range(writers):
        assert [i for w, i in keys if w == writer] == list(range(per_writer))


def test_shard_iterators_and_limits_after_the_read_patches(aws_endpoint):
    kinesis, stream = aws_endpoint.client("kinesis"), unique("iterators")
    create_stream(aws_endpoint, stream)
    first = kinesis.put_records(
        StreamName=stream, Records=[{"Data": b"%d" % i, "PartitionKey": "k"} for i in range(30)]
    )
    numbers = [r["SequenceNumber"] for r in first["Records"]]
    latest = kinesis.get_shard_iterator(StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="LATEST")
    later = kinesis.put_records(
        StreamName=stream, Records=[{"Data": b"late%d" % i, "PartitionKey": "k"} for i in range(5)]
    )

    page = kinesis.get_records(ShardIterator=latest["ShardIterator"], Limit=3)
    assert [r["Data"] for r in page["Records"]] == [b"late0", b"late1", b"late2"]
    rest = kinesis.get_records(ShardIterator=page["NextShardIterator"])
    assert [r["SequenceNumber"] for r in rest["Records"]] == [r["SequenceNumber"] for r in later["Records"][3:]]
    assert [r["Data"] for r in read_shard(kinesis, stream, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[10])][
        :2
    ] == [b"10", b"11"]
    after = read_shard(kinesis, stream, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=numbers[28])
    assert [r["Data"] for r in after] == [b"29"] + [b"late%d" % i for i in range(5)]
    at_future = read_shard(kinesis, stream, "AT_TIMESTAMP", Timestamp=datetime(2100, 1, 1, tzinfo=UTC))
    assert at_future == []
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]
    assert shard["SequenceNumberRange"]["StartingSequenceNumber"] == numbers[0]


def test_put_records_on_a_mapped_stream_do_not_invoke_but_invoke_does(runtime_endpoint, fake_runtime):
    function_name = unique("mapped")
    function_arn = create_function(runtime_endpoint, function_name)
    stream = unique("mapped")
    stream_arn = create_stream(runtime_endpoint, stream)
    runtime_endpoint.client("lambda").create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName=function_arn, StartingPosition="TRIM_HORIZON", BatchSize=10
    )
    kinesis = runtime_endpoint.client("kinesis")
    before = len(fake_runtime.requests)

    kinesis.put_record(StreamName=stream, Data=b"{}", PartitionKey="d1")
    answer = kinesis.put_records(StreamName=stream, Records=[{"Data": b"{}", "PartitionKey": "d1"}] * 20)

    assert answer["FailedRecordCount"] == 0
    assert len(read_shard(kinesis, stream)) == 21
    assert fake_runtime.requests[before:] == []
    # moto's own invocation path creates the function's log group before it tries Docker.
    logs = runtime_endpoint.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{function_name}")
    assert logs["logGroups"] == []
    runtime_endpoint.client("lambda").invoke(FunctionName=function_arn, Payload=b"{}")
    assert len(fake_runtime.requests[before:]) == 1


def test_invoke_returns_the_runtime_result(runtime_endpoint, fake_runtime):
    name = unique("ok")
    create_function(runtime_endpoint, name)

    answer = runtime_endpoint.client("lambda").invoke(FunctionName=name, Payload=b'{"a": 1}', LogType="Tail")

    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert answer["LogResult"] == LOG_TAIL
    assert json.loads(answer["Payload"].read()) == {"function": name, "event": {"a": 1}}
    path, headers, body = fake_runtime.requests[-1]
    assert (path, headers["X-Invocation-Type"], body) == (f"/invoke/{name}", "RequestResponse", b'{"a": 1}')


def test_invoke_surfaces_a_function_error(runtime_endpoint):
    name = unique("handler") + "-fails"
    create_function(runtime_endpoint, name)

    answer = runtime_endpoint.client("lambda").invoke(FunctionName=name, Payload=b"{}")

    assert answer["StatusCode"] == 200
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read())["errorType"] == "ValueError"


def test_event_invocation_is_accepted_with_202(runtime_endpoint, fake_runtime):
    name = unique("async")
    create_function(runtime_endpoint, name)

    answer = runtime_endpoint.client("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")

    assert answer["StatusCode"] == 202
    path, headers, _ = fake_runtime.requests[-1]
    assert (path, headers["X-Invocation-Type"]) == (f"/invoke/{name}", "Event")


def test_a_runtime_client_error_reaches_the_caller_as_is(runtime_endpoint):
    name = unique("strict")
    create_function(runtime_endpoint, name)

    with pytest.raises(ClientError) as raised:
        runtime_endpoint.client("lambda").invoke(FunctionName=name, Payload=b"not json")

    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidRequestContentException",
        400,
    )


def test_invoke_with_the_runtime_down_is_a_service_error():
    for endpoint in moto_with_runtime(f"http://127.0.0.1:{free_port()}"):
        name = unique("orphan")
        create_function(endpoint, name)
        lambda_client = boto3.client(
            "lambda",
            endpoint_url=endpoint.url,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1}),
        )
        with pytest.raises(ClientError) as raised:
            lambda_client.invoke(FunctionName=name, Payload=b"{}")
        error = raised.value.response
        assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ServiceException", 500)
        assert "unreachable" in error["Error"]["Message"]


def test_event_source_mapping_round_trips_every_field_the_poller_uses(aws_endpoint):
    function_arn = create_function(aws_endpoint, unique("esm"))
    stream_arn = create_stream(aws_endpoint, unique("esm"))
    dlq_arn = aws_endpoint.client("sqs").get_queue_attributes(
        QueueUrl=aws_endpoint.client("sqs").create_queue(QueueName=unique("esm-dlq"))["QueueUrl"],
        AttributeNames=["QueueArn"],
    )["Attributes"]["QueueArn"]
    starting_at = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    requested = {
        "BatchSize": 250,
        "MaximumBatchingWindowInSeconds": 7,
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": starting_at,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 3,
        "MaximumRecordAgeInSeconds": 3600,
        "ParallelizationFactor": 4,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {"OnFailure": {"Destination": dlq_arn}},
    }
    lambda_client = aws_endpoint.client("lambda")
    uuid_ = lambda_client.create_event_source_mapping(
        EventSourceArn=stream_arn, FunctionName=function_arn, Enabled=False, **requested
    )["UUID"]

    mapping = lambda_client.get_event_source_mapping(UUID=uuid_)

    assert {key: mapping.get(key) for key in requested} == requested
    assert (mapping["EventSourceArn"], mapping["FunctionArn"], mapping["State"]) == (
        stream_arn,
        function_arn,
        "Disabled",
    )
    lambda_client.update_event_source_mapping(UUID=uuid_, Enabled=True, BatchSize=500)
    listed = lambda_client.list_event_source_mappings(EventSourceArn=stream_arn)["EventSourceMappings"]
    assert [(m["UUID"], m["State"], m["BatchSize"]) for m in listed] == [(uuid_, "Enabled", 500)]
    lambda_client.delete_event_source_mapping(UUID=uuid_)  # the endpoint is shared: leave no enabled mapping


def test_applying_the_patches_twice_changes_nothing():
    # In a child process: patching moto's classes here would leak into other tests' in-process moto.
    script = """
from localcloud.servers import moto_patches
from moto.awslambda.models import EventSourceMapping, LambdaBackend
from moto.kinesis.models import Shard, Stream
from moto.kinesis.responses import KinesisResponse
def installed():
    return [KinesisResponse.call_action, Shard.get_records, Shard.get_max_sequence_number, Stream.put_record,
            LambdaBackend.invoke, EventSourceMapping.get_configuration]
moto_patches.apply()
first = installed()
moto_patches.apply()
assert installed() == first, "apply() wrapped something twice"
assert all(getattr(f, "_iotkpi_patch", False) for f in first), "a patch is missing"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
