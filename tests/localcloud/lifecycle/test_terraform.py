"""localcloud.lifecycle.terraform: the workspace it writes, what it shows and passes to terraform, the outputs it
reads from a state; and `up --deploy terraform` without a terraform binary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from localcloud.config import REPO_ROOT, Settings
from localcloud.errors import LocalCloudError
from localcloud.lifecycle import terraform
from localcloud.stack.model import load_stack

PROBE_STACK = REPO_ROOT / "tests" / "stacks" / "probe-stack.yaml"
SECRET = {"host": "127.0.0.1", "port": 5432, "username": "iotkpi_functions", "password": "pw-1", "dbname": "iotkpi"}


def settings(tmp_path: Path, port: int = 45999) -> Settings:
    return Settings(state_dir=tmp_path / "state", moto_port=port, stack_file=PROBE_STACK, external_endpoint="")


def test_the_workspace_is_the_module_beside_the_stack_file_aimed_at_the_endpoint(tmp_path):
    module = terraform.prepare(settings(tmp_path))
    assert module == tmp_path / "state" / "terraform" / "infrastructure" / "terraform"
    assert {p.name for p in module.glob("*.tf")} == {p.name for p in terraform.MODULE_DIR.glob("*.tf")} | {
        terraform.OVERRIDE_FILE
    }
    assert (module.parent / "stack.yaml").read_text() == PROBE_STACK.read_text()  # path.module/../stack.yaml
    override = (module / terraform.OVERRIDE_FILE).read_text()
    assert "http://127.0.0.1:45999" in override and "http://127.0.0.1:4566" not in override
    assert (module / "local.auto.tfvars").read_text() == (terraform.LOCAL_DIR / "local.tfvars").read_text()
    assert json.loads((module / "checkout.auto.tfvars.json").read_text()) == {"lambda_hot_reload_root": str(REPO_ROOT)}


def test_preparing_again_keeps_the_state_and_drops_files_the_module_no_longer_has(tmp_path):
    module = terraform.prepare(settings(tmp_path))
    (module / "terraform.tfstate").write_text("{}")
    (module / "removed_from_the_module.tf").write_text("")
    terraform.prepare(settings(tmp_path, port=46000))
    assert (module / "terraform.tfstate").read_text() == "{}"
    assert not (module / "removed_from_the_module.tf").exists()
    assert "http://127.0.0.1:46000" in (module / terraform.OVERRIDE_FILE).read_text()


def test_terraform_gets_the_login_as_an_ephemeral_variable_and_nothing_of_the_callers_aws_settings(monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("TF_VAR_lambda_hot_reload_root", "/elsewhere")
    env = terraform.terraform_env(SECRET)
    assert not [key for key in env if key.startswith("AWS_")]
    assert json.loads(env["TF_VAR_db_credentials"]) == SECRET
    assert set(env) & {"TF_VAR_lambda_hot_reload_root"} == set()
    same = terraform.terraform_env(dict(SECRET))["TF_VAR_db_credentials_version"]
    rotated = terraform.terraform_env({**SECRET, "password": "pw-2"})["TF_VAR_db_credentials_version"]
    assert env["TF_VAR_db_credentials_version"] == same != rotated  # a new login is a new secret version
    assert "TF_VAR_db_credentials" not in terraform.terraform_env(None)


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ('aws_lambda_function.stack["ingest"]: Creation complete after 5s [id=iotkpi-ingest]', True),
        ("aws_kinesis_stream.telemetry: Still creating... [30s elapsed]", True),
        ("aws_sqs_queue.stack: Destruction complete after 1s", True),
        ("Apply complete! Resources: 53 added, 0 changed, 0 destroyed.", True),
        ("Destroy complete! Resources: 53 destroyed.", True),
        ('  # aws_lambda_function.stack["ingest"] will be created', False),
        ("      + memory_size = 512", False),
        ("Initializing provider plugins...", False),
    ],
)
def test_progress_shows_each_resource_done_and_the_summary(line, shown):
    assert (terraform.progress_line(line + "\n") == line) is shown


def probe_state(project: str) -> dict:
    def resource(address: str, **values) -> dict:
        return {"address": address, "mode": "managed", "values": values}

    arn = f"arn:aws:lambda:us-east-1:123456789012:function:{project}-probe"
    return {
        "values": {
            "root_module": {
                "resources": [
                    resource("aws_kinesis_stream.telemetry", name=f"{project}-telemetry", arn="arn:stream"),
                    resource("aws_s3_bucket.archive", bucket=f"{project}-archive-123456789012"),
                    resource("aws_sns_topic.alerts", arn="arn:topic"),
                    resource("aws_secretsmanager_secret.database", arn="arn:secret"),
                    resource('aws_sqs_queue.stack["ingest_dlq"]', url="http://q/dlq", arn="arn:dlq"),
                    resource('aws_sqs_queue.stack["rule_errors"]', url="http://q/errors", arn="arn:errors"),
                    resource('aws_lambda_function.stack["probe"]', function_name=f"{project}-probe", arn=arn),
                    resource('aws_lambda_event_source_mapping.stream["probe"]', uuid="uuid-1"),
                    resource('aws_scheduler_schedule.function["probe"]', name=f"{project}-probe"),
                    resource(
                        'aws_iot_topic_rule.stack["telemetry_to_kinesis"]', name=f"{project}_telemetry_to_kinesis"
                    ),
                    {"address": "data.aws_region.current", "mode": "data", "values": {"name": "us-east-1"}},
                ]
            }
        }
    }


def test_the_outputs_are_named_as_the_boto3_deployer_names_them():
    stack = load_stack(PROBE_STACK)
    outputs = terraform.outputs_from_state(probe_state(stack.project), stack)
    p = stack.project
    assert outputs == {
        "TELEMETRY_STREAM_NAME": f"{p}-telemetry", "TELEMETRY_STREAM_ARN": "arn:stream",
        "ARCHIVE_BUCKET": f"{p}-archive-123456789012", "ALERTS_TOPIC_ARN": "arn:topic", "DB_SECRET_ARN": "arn:secret",
        "INGEST_DLQ_URL": "http://q/dlq", "INGEST_DLQ_ARN": "arn:dlq",
        "RULE_ERRORS_QUEUE_URL": "http://q/errors", "RULE_ERRORS_QUEUE_ARN": "arn:errors",
        "PROBE_FUNCTION_NAME": f"{p}-probe", "PROBE_FUNCTION_ARN": f"arn:aws:lambda:us-east-1:123456789012:function:{p}-probe",
        "PROBE_EVENT_SOURCE_MAPPING_UUID": "uuid-1", "PROBE_SCHEDULE_NAME": f"{p}-probe",
        "TELEMETRY_TO_KINESIS_RULE_NAME": f"{p}_telemetry_to_kinesis",
    }  # fmt: skip


def test_a_state_lacking_a_resource_the_local_cloud_needs_is_an_error_naming_it():
    stack = load_stack(PROBE_STACK)
    state = probe_state(stack.project)
    resources = state["values"]["root_module"]["resources"]
    resources[:] = [r for r in resources if not r["address"].startswith("aws_scheduler_schedule")]
    with pytest.raises(LocalCloudError, match="PROBE_SCHEDULE_NAME"):
        terraform.outputs_from_state(state, stack)


def test_what_outlived_the_endpoint_is_imported_when_the_state_lacks_it(tmp_path):
    survivors = {"aws_kinesis_stream.telemetry": "p-telemetry", 'aws_iot_topic_rule.stack["r"]': "p_r"}
    adopted = tmp_path / "adopted.tf"
    terraform.adopt(tmp_path, survivors, managed={})
    text = adopted.read_text()
    assert 'to = aws_kinesis_stream.telemetry\n  id = "p-telemetry"' in text
    assert 'to = aws_iot_topic_rule.stack["r"]\n  id = "p_r"' in text
    terraform.adopt(tmp_path, survivors, managed={"aws_kinesis_stream.telemetry": {}})
    assert "aws_kinesis_stream" not in adopted.read_text() and "aws_iot_topic_rule" in adopted.read_text()
    terraform.adopt(tmp_path, survivors, managed={key: {} for key in survivors})
    assert not adopted.exists()


def test_up_without_a_terraform_binary_says_what_to_install_and_starts_nothing(tmp_path):
    state_dir = tmp_path / "state"
    env = {**os.environ, "PATH": str(Path(sys.executable).parent), "LOCALCLOUD_STATE_DIR": str(state_dir)}
    done = subprocess.run([sys.executable, "-m", "localcloud", "up", "--deploy", "terraform"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "terraform binary" in done.stderr and "https://developer.hashicorp.com/terraform/install" in done.stderr
    assert not (state_dir / "run").exists()  # no server was started


def test_an_unknown_deployer_is_refused_before_anything_starts(tmp_path):
    env = {**os.environ, "LOCALCLOUD_STATE_DIR": str(tmp_path / "state"), "LOCALCLOUD_DEPLOY": "terrafrom"}
    done = subprocess.run([sys.executable, "-m", "localcloud", "up"], env=env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2 and "unknown deployer 'terrafrom'" in done.stderr
    assert not (tmp_path / "state" / "run").exists()
