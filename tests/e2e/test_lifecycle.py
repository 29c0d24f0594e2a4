"""`localcloud up/status/invoke/fire/down` as a user runs them: subprocesses, free ports, a temp state dir."""

from __future__ import annotations

import json
import os

import boto3
import paho.mqtt.publish as mqtt_publish
import pytest

from localcloud.config import REPO_ROOT, read_env_file
from localcloud.servers.procs import pid_alive, port_open
from tests.fixtures.local_cloud import LocalCloud, wait_until

pytestmark = pytest.mark.e2e

ENV_KEYS = {
    "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
    "LOCALSTACK_HOST", "EDGE_PORT", "DATABASE_URL", "MQTT_HOST", "MQTT_PORT", "LOCALCLOUD_CONTROL_URL",
    "TELEMETRY_STREAM_NAME", "TELEMETRY_STREAM_ARN", "INGEST_DLQ_URL", "INGEST_DLQ_ARN", "RULE_ERRORS_QUEUE_URL",
    "ARCHIVE_BUCKET", "ALERTS_TOPIC_ARN", "PROBE_FUNCTION_NAME",
}  # fmt: skip


@pytest.fixture
def cloud(tmp_path):
    # pytest's tmp_path has 0700 parents: as root, mosquitto and PostgreSQL (unprivileged users) cannot reach
    # it, so this also exercises their fallback folders under /var/tmp (as for a checkout under /root).
    cloud = LocalCloud(tmp_path / "state", stack_file=REPO_ROOT / "tests" / "stacks" / "probe-stack.yaml")
    try:
        yield cloud
    finally:
        cloud.teardown()


def test_up_status_invoke_down(cloud: LocalCloud):
    first = cloud.run("up")
    assert first.returncode == 0, first.stdout + first.stderr
    env = read_env_file(cloud.state_dir / "env")
    assert env.keys() >= ENV_KEYS
    assert env["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{cloud.ports['moto']}"
    assert env["LOCALCLOUD_CONTROL_URL"] == f"http://127.0.0.1:{cloud.ports['runtime']}"

    components = {c["name"]: c for c in cloud.status()["components"]}
    assert {name for name, c in components.items() if c["up"]} >= {"moto", "mosquitto", "runtime"}
    if not os.environ.get("DATABASE_URL"):
        assert components["postgres"]["up"]
    pids = cloud.recorded_pids()

    # invoke through the runtime (CLI), by stack key
    invoked = cloud.run("invoke", "probe", json.dumps({"hello": "world"}), timeout=60)
    assert invoked.returncode == 0, invoked.stdout + invoked.stderr
    assert invoked.stdout.startswith("result:")

    # invoke through the AWS API (moto forwards to the runtime), as `aws lambda invoke` would
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    lam = session.client("lambda", endpoint_url=env["AWS_ENDPOINT_URL"])
    response = lam.invoke(FunctionName=env["PROBE_FUNCTION_NAME"], Payload=json.dumps({"via": "moto"}).encode())
    assert response["StatusCode"] == 200 and "FunctionError" not in response
    seen = {i["request_id"] for i in cloud.status()["runtime"]["recent_invocations"]}

    # MQTT → rules engine → Kinesis → event source mapping → probe function
    kinesis = session.client("kinesis", endpoint_url=env["AWS_ENDPOINT_URL"])
    mqtt_publish.single(
        "devices/dev-1/telemetry",
        json.dumps({"seq": 1, "rss": -70}),
        hostname="127.0.0.1",
        port=cloud.ports["mosquitto"],
    )
    shard_id = kinesis.list_shards(StreamName=env["TELEMETRY_STREAM_NAME"])["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName=env["TELEMETRY_STREAM_NAME"], ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records = wait_until(lambda: kinesis.get_records(ShardIterator=iterator)["Records"], timeout=30)
    assert json.loads(records[0]["Data"])["device_id"] == "dev-1"
    wait_until(lambda: {i["request_id"] for i in cloud.status()["runtime"]["recent_invocations"]} - seen, timeout=60)

    # fire the stack's schedule now
    fired = cloud.run("fire", env["PROBE_SCHEDULE_NAME"], timeout=60)
    assert fired.returncode == 0, fired.stdout + fired.stderr

    # `up` again: a no-op success that reuses every running server
    second = cloud.run("up")
    assert second.returncode == 0, second.stdout + second.stderr
    assert cloud.recorded_pids() == pids

    down = cloud.run("down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert [name for name, port in cloud.ports.items() if port_open("127.0.0.1", port)] == []
    # SIGTERM stopped the runtime cleanly (every component) rather than `down` having to SIGKILL it
    assert (
        (cloud.state_dir / "logs" / "runtime.log").read_text().rstrip().endswith("localcloud.runtime.process: stopped")
    )
