"""The three client flavours users reach for work unchanged against the local endpoint.

`awslocal` (awscli-local 0.23) and `localstack_client` (2.12) both resolve the endpoint the same way:
AWS_ENDPOINT_URL when set, else http://$LOCALSTACK_HOST (host:port). Each flavour is exercised with the
variables of `aws_client_env`, and the LocalStack-style ones also with LOCALSTACK_HOST alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from localstack_client.session import Session

VENV_BIN = Path(sys.executable).parent
WITHOUT_ENDPOINT_URL = "LOCALSTACK_HOST only"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def client_env(aws_endpoint, home: Path, variant: str) -> dict[str, str]:
    """A clean environment: no user AWS config, just the endpoint's variables (and PATH for the CLIs)."""
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(home), "DISABLE_DEPRECATION_NOTICE": "1"}
    env.update(aws_endpoint.env)
    if variant == WITHOUT_ENDPOINT_URL:
        del env["AWS_ENDPOINT_URL"]
    return env


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("variant", ["aws_client_env", WITHOUT_ENDPOINT_URL])
def test_awslocal_round_trip(aws_endpoint, tmp_path, variant):
    stream, env = unique("awslocal"), client_env(aws_endpoint, tmp_path, variant)

    run_cli(
        [str(VENV_BIN / "awslocal"), "kinesis", "create-stream", "--stream-name", stream, "--shard-count", "1"], env
    )
    # describe, not list: the session's shared endpoint holds more streams than one ListStreams page
    described = json.loads(
        run_cli([str(VENV_BIN / "awslocal"), "kinesis", "describe-stream-summary", "--stream-name", stream], env)
    )

    assert described["StreamDescriptionSummary"]["StreamName"] == stream
    assert stream in aws_endpoint.client("kinesis").list_streams(Limit=10_000)["StreamNames"]


@pytest.mark.parametrize("variant", ["aws_client_env", WITHOUT_ENDPOINT_URL])
def test_localstack_client_round_trip(aws_endpoint, monkeypatch, variant):
    for key in ("AWS_ENDPOINT_URL", "LOCALSTACK_HOST"):
        monkeypatch.delenv(key, raising=False)
    for key, value in client_env(aws_endpoint, Path("/nonexistent"), variant).items():
        if key != "PATH":
            monkeypatch.setenv(key, value)
    queue = unique("lsclient")

    sqs = Session(region_name=aws_endpoint.env["AWS_REGION"]).client("sqs")
    queue_url = sqs.create_queue(QueueName=queue)["QueueUrl"]

    assert queue_url in sqs.list_queues(QueueNamePrefix=queue)["QueueUrls"]
    assert aws_endpoint.client("sqs").get_queue_url(QueueName=queue)["QueueUrl"] == queue_url


@pytest.mark.parametrize("endpoint_from", ["--endpoint-url", "AWS_ENDPOINT_URL"])
def test_aws_cli_round_trip(aws_endpoint, tmp_path, endpoint_from):
    bucket, env = unique("awscli"), client_env(aws_endpoint, tmp_path, "aws_client_env")
    aws = [str(VENV_BIN / "aws")]
    if endpoint_from == "--endpoint-url":
        aws += ["--endpoint-url", env.pop("AWS_ENDPOINT_URL")]

    run_cli([*aws, "s3api", "create-bucket", "--bucket", bucket], env)
    listed = json.loads(run_cli([*aws, "s3api", "list-buckets", "--output", "json"], env))

    assert bucket in [b["Name"] for b in listed["Buckets"]]
    assert bucket in [b["Name"] for b in aws_endpoint.client("s3").list_buckets()["Buckets"]]
