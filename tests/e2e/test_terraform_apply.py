"""`localcloud up --deploy terraform` on a fresh local cloud, as a user runs it: the module applied to the local
endpoint, readings from a real MQTT client land in `telemetry` through what Terraform created, the aggregate
schedule fires and writes KPI rows, a plan right after the apply has nothing to change (every function is
configured exactly as Terraform asks), no function configuration holds a password, and `terraform destroy` in the
workspace leaves no function, rule, mapping, schedule, stream, queue or bucket behind.

Needs the terraform binary and a provider mirror (the CI machine has both); skipped with the reason elsewhere."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest

from localcloud.config import REPO_ROOT
from tests.fixtures.local_cloud import LocalCloud, wait_until
from tests.fixtures.terraform import terraform_env

BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
APPLY_TIMEOUT_S = 900  # a first apply on a busy 2-core machine: providers' own waits (SQS, Kinesis, S3) add up
# The module's fixture runs in its first test's time: the suite's 300 s would cut a slow first apply short.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(APPLY_TIMEOUT_S + 120)]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory) -> Iterator[LocalCloud]:
    """A fresh local cloud, deployed by `localcloud up --deploy terraform`; down and removed afterwards."""
    rc_dir = tmp_path_factory.mktemp("terraformrc")
    tf_cli_config = terraform_env(rc_dir)["TF_CLI_CONFIG_FILE"]  # skips without terraform or the mirror
    state_dir = Path(tempfile.mkdtemp(prefix="iotkpi-e2e-tf-"))
    made = LocalCloud(state_dir / "state")
    made.env["TF_CLI_CONFIG_FILE"] = tf_cli_config  # the user's own CLI configuration: here, the offline mirror
    try:
        output = made.check("up", "--deploy", "terraform", timeout=APPLY_TIMEOUT_S)
        assert "==>   Apply complete! Resources:" in output and "Creation complete after" in output
        yield made
    finally:
        made.teardown()
        shutil.rmtree(state_dir, ignore_errors=True)


def workspace(cloud: LocalCloud) -> Path:
    return cloud.state_dir / "terraform" / "infrastructure" / "terraform"


def terraform_in_workspace(
    cloud: LocalCloud, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    command = ["terraform", *args, "-no-color", "-input=false"]
    return subprocess.run(command, cwd=workspace(cloud), env={**cloud.env, **(env or {})}, capture_output=True,
                          text=True, timeout=APPLY_TIMEOUT_S)  # fmt: skip


def test_up_applied_the_module_and_recorded_its_outputs(cloud: LocalCloud):
    settings = cloud.settings
    assert settings["LOCALCLOUD_DEPLOY"] == "terraform"
    state = json.loads((workspace(cloud) / "terraform.tfstate").read_text())
    managed = {f"{r['type']}.{r['name']}" for r in state["resources"] if r["mode"] == "managed"}
    assert managed >= {"aws_lambda_function.stack", "aws_iot_topic_rule.stack", "aws_lambda_event_source_mapping.stream",
                       "aws_scheduler_schedule.function", "aws_kinesis_stream.telemetry"}  # fmt: skip
    assert not [address for address in managed if address.startswith("aws_vpc_endpoint")]  # no subnets locally
    lam = cloud.client("lambda")
    function = lam.get_function(FunctionName=settings["INGEST_FUNCTION_NAME"])
    assert function["Code"]["Location"] == (REPO_ROOT / "functions").as_uri()  # hot reload of the working tree
    mapping = lam.get_event_source_mapping(UUID=settings["INGEST_EVENT_SOURCE_MAPPING_UUID"])
    assert mapping["FunctionArn"] == function["Configuration"]["FunctionArn"]


def test_no_function_configuration_holds_a_password_and_the_functions_log_in_as_a_plain_login(cloud: LocalCloud):
    settings = cloud.settings
    secret = json.loads(
        cloud.client("secretsmanager").get_secret_value(SecretId=settings["DB_SECRET_ARN"])["SecretString"]
    )
    assert set(secret) == {"host", "port", "username", "password", "dbname"}
    passwords = {secret["password"], urllib.parse.urlsplit(settings["DATABASE_URL"]).password or secret["password"]}
    lam = cloud.client("lambda")
    for page in lam.get_paginator("list_functions").paginate():
        for function in page["Functions"]:
            variables = function.get("Environment", {}).get("Variables", {})
            assert variables["DB_SECRET_ARN"] == settings["DB_SECRET_ARN"] and "DATABASE_URL" not in variables
            assert not [name for name, value in variables.items() if any(p in value for p in passwords)]
    with psycopg.connect(settings["DATABASE_URL"]) as conn:
        flags = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
                             (secret["username"],)).fetchone()  # fmt: skip
    assert flags == (False, False, False)


def test_a_plan_after_the_apply_has_nothing_to_change(cloud: LocalCloud):
    from localcloud.lifecycle.terraform import terraform_env as workspace_env

    secret = json.loads(
        cloud.client("secretsmanager").get_secret_value(SecretId=cloud.settings["DB_SECRET_ARN"])["SecretString"]
    )
    env = {key: value for key, value in workspace_env(secret).items() if key.startswith("TF_VAR_")}
    plan = terraform_in_workspace(cloud, "plan", "-detailed-exitcode", env=env)
    assert plan.returncode == 0, plan.stdout[-4000:] + plan.stderr  # 2 would mean a difference


def test_readings_land_in_telemetry_and_the_aggregate_schedule_writes_kpis(cloud: LocalCloud):
    settings = cloud.settings
    devices = [f"tf-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"tf-e2e-{uuid.uuid4().hex[:8]}")
    client.connect(settings["MQTT_HOST"], int(settings["MQTT_PORT"]))
    client.loop_start()
    try:
        for minute in range(10):
            for device in devices:
                reading = {"ts": (BASE + timedelta(minutes=minute)).isoformat(), "seq": minute + 1, "rss": -70}
                client.publish(f"devices/{device}/telemetry", json.dumps(reading), qos=1).wait_for_publish(timeout=10)
    finally:
        client.loop_stop()
        client.disconnect()

    def count(table: str) -> int:
        with psycopg.connect(settings["DATABASE_URL"]) as conn:
            query = f"SELECT count(*) FROM {table} WHERE device_id = ANY(%s)"
            return conn.execute(query, (devices,)).fetchone()[0]

    wait_until(lambda: count("telemetry") == 30, timeout=120, what="30 readings in telemetry")
    cloud.check("fire", settings["AGGREGATE_SCHEDULE_NAME"], timeout=120)
    assert count("device_kpi") >= len(devices)


def test_terraform_destroy_leaves_nothing_behind(cloud: LocalCloud):
    destroyed = terraform_in_workspace(cloud, "destroy", "-auto-approve")
    assert destroyed.returncode == 0, destroyed.stdout[-4000:] + destroyed.stderr
    assert "Destroy complete!" in destroyed.stdout
    project = "iotkpi"
    lam = cloud.client("lambda")
    left = {
        "functions": [f["FunctionName"] for f in lam.list_functions()["Functions"]],
        "mappings": lam.list_event_source_mappings()["EventSourceMappings"],
        "rules": [r["ruleName"] for r in cloud.client("iot").list_topic_rules()["rules"]],
        "schedules": [s["Name"] for s in cloud.client("scheduler").list_schedules()["Schedules"]],
        "streams": cloud.client("kinesis").list_streams()["StreamNames"],
        "queues": cloud.client("sqs").list_queues().get("QueueUrls", []),
        "buckets": [b["Name"] for b in cloud.client("s3").list_buckets()["Buckets"]],
        "secrets": [s["Name"] for s in cloud.client("secretsmanager").list_secrets()["SecretList"]],
    }
    assert left == {key: [] for key in left}, f"left behind by destroy of {project}: {left}"
