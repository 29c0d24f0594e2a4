"""`localcloud up --deploy terraform`: the stack deployed by `terraform apply` of infrastructure/terraform against the
local endpoint, as a `tflocal` user deploys to LocalStack.

The module is copied to a workspace under the state folder (`.local/terraform/infrastructure/terraform/`, beside a
copy of the stack file, as in the repository) with
- `local_providers_override.tf`: infrastructure/terraform/local/'s override, pointed at the endpoint's address;
- `local.auto.tfvars`: infrastructure/terraform/local/local.tfvars;
- `checkout.auto.tfvars.json`: `lambda_hot_reload_root`, this checkout (the functions run its folders);
- `adopted.tf`, only when the endpoint holds the stack's Kinesis stream or topic rules but the state does not
  (they outlive a restart of the endpoint): `import` blocks, so that apply adopts them instead of failing.
The state (`terraform.tfstate`) and the providers (`.terraform/`) stay there between runs. The functions' database
login reaches Terraform only through the environment (TF_VAR_db_credentials, an ephemeral variable: it is in no
file, plan or state). The user's own Terraform CLI configuration (provider mirrors, plugin cache) applies.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from localcloud.config import REPO_ROOT, Settings, aws_session
from localcloud.errors import LocalCloudError
from localcloud.stack.deploy import queue_output_name
from localcloud.stack.model import Stack

MODULE_DIR = REPO_ROOT / "infrastructure" / "terraform"
LOCAL_DIR = MODULE_DIR / "local"
OVERRIDE_FILE = "local_providers_override.tf"
TEMPLATE_ENDPOINT = "http://127.0.0.1:4566"
# Lines of terraform's output shown as progress: each resource done (or still in progress), and the summary.
_PROGRESS_MARKS = (
    ": Creation complete", ": Modifications complete", ": Destruction complete", ": Still creating",
    ": Still modifying", ": Still destroying", ": Import complete",
)  # fmt: skip
_SUMMARIES = ("Apply complete!", "Destroy complete!")
_ERROR_LINES = 25  # of terraform's output, from its first error on, in the message of a failed run


def workspace(settings: Settings) -> Path:
    """The module's copy: the folder terraform runs in, with the state."""
    return settings.state_dir / "terraform" / "infrastructure" / "terraform"


def terraform_binary() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        raise LocalCloudError(
            "--deploy terraform needs the terraform binary (>= 1.11) on PATH: install it from "
            "https://developer.hashicorp.com/terraform/install (or deploy without DEPLOY=terraform)"
        )
    return binary


def prepare(settings: Settings) -> Path:
    """(Re)write the workspace from the repository's module and stack file; state and providers are kept."""
    module = workspace(settings)
    module.mkdir(parents=True, exist_ok=True)
    for stale in module.glob("*.tf"):
        stale.unlink()
    for source in MODULE_DIR.glob("*.tf"):
        shutil.copy2(source, module / source.name)
    shutil.copy2(settings.stack_file, module.parent / "stack.yaml")
    override = (LOCAL_DIR / OVERRIDE_FILE).read_text().replace(TEMPLATE_ENDPOINT, settings.endpoint_url.rstrip("/"))
    (module / OVERRIDE_FILE).write_text(override)
    shutil.copy2(LOCAL_DIR / "local.tfvars", module / "local.auto.tfvars")
    (module / "checkout.auto.tfvars.json").write_text(json.dumps({"lambda_hot_reload_root": str(REPO_ROOT)}) + "\n")
    return module


def terraform_env(database_secret: Mapping[str, Any] | None) -> dict[str, str]:
    """terraform's environment: no AWS_* or TF_VAR_* of the caller's (they would aim the provider elsewhere or set
    variables behind the workspace's back); the database login as the ephemeral db_credentials."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "TF_VAR_"))}
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0", CHECKPOINT_DISABLE="1")
    if database_secret:
        document = json.dumps(dict(database_secret), sort_keys=True)
        env["TF_VAR_db_credentials"] = document
        # A write-only value is sent again only when its version changes: a new login is a new version.
        env["TF_VAR_db_credentials_version"] = str(zlib.crc32(document.encode()))
    return env


def progress_line(line: str) -> str | None:
    """The progress step for one line of terraform's output, if it is one."""
    text = line.strip()
    if text.startswith(_SUMMARIES) or any(mark in text for mark in _PROGRESS_MARKS):
        return text
    return None


def run(
    args: list[str],
    module: Path,
    env: Mapping[str, str],
    log_file: Path,
    progress: Callable[[str], None],
    *,
    logged: bool = True,
) -> str:
    """Run terraform in the workspace; its output goes to `log_file` (unless not `logged`: state dumps), progress
    lines to `progress`. Its stdout."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    with log_file.open("a") as log:
        log.write(f"$ terraform {' '.join(args)}\n")
        process = subprocess.Popen(
            [terraform_binary(), *args, "-no-color"], cwd=module, env=dict(env), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert process.stdout is not None
        for line in process.stdout:
            if logged:
                log.write(line)
            lines.append(line.rstrip("\n"))
            step = progress_line(line)
            if step:
                progress(step)
        code = process.wait()
    if code != 0:
        first_error = next((i for i, line in enumerate(lines) if line.lstrip().startswith("Error")), len(lines) - 5)
        detail = "\n".join(lines[max(first_error, 0) :][:_ERROR_LINES])
        raise LocalCloudError(f"terraform {args[0]} failed (log: {log_file}):\n{detail}")
    return "\n".join(lines)


def state(module: Path, env: Mapping[str, str], log_file: Path) -> dict[str, Any]:
    """`terraform show -json` of the workspace's state ({} before the first apply)."""
    if not (module / "terraform.tfstate").exists():
        return {}
    return json.loads(run(["show", "-json"], module, env, log_file, lambda _: None, logged=False) or "{}")


def resources(state_document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The managed resources of a state, by address (`aws_lambda_function.stack["ingest"]`): their attributes."""
    root = state_document.get("values", {}).get("root_module", {})
    return {r["address"]: r["values"] for r in root.get("resources", []) if r.get("mode") == "managed"}


def outputs_from_state(state_document: Mapping[str, Any], stack: Stack) -> dict[str, str]:
    """The env-file variables of what Terraform created, named as the boto3 deployer names its outputs."""
    found = resources(state_document)

    def attribute(address: str, name: str) -> str | None:
        return (found.get(address) or {}).get(name)

    pairs: dict[str, str | None] = {
        "TELEMETRY_STREAM_NAME": attribute("aws_kinesis_stream.telemetry", "name"),
        "TELEMETRY_STREAM_ARN": attribute("aws_kinesis_stream.telemetry", "arn"),
        "ARCHIVE_BUCKET": attribute("aws_s3_bucket.archive", "bucket"),
        "ALERTS_TOPIC_ARN": attribute("aws_sns_topic.alerts", "arn"),
        "DB_SECRET_ARN": attribute("aws_secretsmanager_secret.database", "arn"),
    }
    for key in stack.queues:
        address = f'aws_sqs_queue.stack["{key}"]'
        pairs[f"{queue_output_name(key)}_URL"] = attribute(address, "url")
        pairs[f"{queue_output_name(key)}_ARN"] = attribute(address, "arn")
    for key, spec in stack.functions.items():
        prefix = key.upper()
        pairs[f"{prefix}_FUNCTION_NAME"] = attribute(f'aws_lambda_function.stack["{key}"]', "function_name")
        pairs[f"{prefix}_FUNCTION_ARN"] = attribute(f'aws_lambda_function.stack["{key}"]', "arn")
        if spec.kinesis_trigger:
            pairs[f"{prefix}_EVENT_SOURCE_MAPPING_UUID"] = attribute(
                f'aws_lambda_event_source_mapping.stream["{key}"]', "uuid"
            )
        if spec.schedule:
            pairs[f"{prefix}_SCHEDULE_NAME"] = attribute(f'aws_scheduler_schedule.function["{key}"]', "name")
    for key in stack.topic_rules:
        pairs[f"{key.upper()}_RULE_NAME"] = attribute(f'aws_iot_topic_rule.stack["{key}"]', "name")
    missing = sorted(name for name, value in pairs.items() if value is None)
    if missing:
        raise LocalCloudError(f"terraform apply finished but its state lacks what the local cloud needs: {missing}")
    return {name: str(value) for name, value in pairs.items()}


def adopt(module: Path, survivors: Mapping[str, str], managed: Mapping[str, Any]) -> None:
    """The Kinesis stream and the topic rules outlive a restart of the endpoint, nothing else does: those the
    state does not know (state reset, or deployed by `localcloud deploy` before) are imported rather than created
    again. `survivors` maps a resource address to its import id."""
    adopted = module / "adopted.tf"
    adopted.unlink(missing_ok=True)
    blocks = [
        f'import {{\n  to = {address}\n  id = "{import_id}"\n}}\n'
        for address, import_id in sorted(survivors.items())
        if address not in managed
    ]
    if blocks:
        adopted.write_text("\n".join(blocks))


def survivors(session: Any, settings: Settings, stack: Stack) -> dict[str, str]:
    """What of the stack the endpoint already holds among what outlives its restarts: address → import id."""
    found: dict[str, str] = {}
    kinesis = session.client("kinesis", endpoint_url=settings.endpoint_url)
    stream = stack.resource_name(stack.stream_name)
    try:
        kinesis.describe_stream_summary(StreamName=stream)
        found["aws_kinesis_stream.telemetry"] = stream
    except kinesis.exceptions.ResourceNotFoundException:
        pass
    iot = session.client("iot", endpoint_url=settings.endpoint_url)
    existing = {rule["ruleName"] for rule in iot.list_topic_rules().get("rules", [])}
    for key in stack.topic_rules:
        if stack.rule_name(key) in existing:
            found[f'aws_iot_topic_rule.stack["{key}"]'] = stack.rule_name(key)
    return found


def foreign_functions(lambda_client: Any, stack: Stack, managed: Mapping[str, Any]) -> list[str]:
    """The stack's functions that exist on the endpoint but not in the state (deployed by the boto3 deployer into
    the endpoint still running): apply would fail on them one by one."""
    names = []
    for key in stack.functions:
        if f'aws_lambda_function.stack["{key}"]' in managed:
            continue
        try:
            lambda_client.get_function(FunctionName=stack.resource_name(key))
        except lambda_client.exceptions.ResourceNotFoundException:
            continue
        names.append(stack.resource_name(key))
    return names


def apply(
    settings: Settings, stack: Stack, database_secret: Mapping[str, Any], progress: Callable[[str], None]
) -> dict[str, str]:
    """init + apply in the workspace; the outputs (env-file variables) of what the state holds afterwards."""
    module, env, log_file = prepare(settings), terraform_env(database_secret), settings.logs_dir / "terraform.log"
    progress(f"terraform init in {module}")
    run(["init", "-input=false"], module, env, log_file, progress)
    managed = resources(state(module, env, log_file))
    session = aws_session(settings.region)
    foreign = foreign_functions(session.client("lambda", endpoint_url=settings.endpoint_url), stack, managed)
    if foreign:
        raise LocalCloudError(
            f"{', '.join(foreign)} exist on {settings.endpoint_url} but not in the Terraform state {module} (deployed "
            "by `localcloud deploy` with boto3?): `localcloud down`, then `localcloud up --deploy terraform`"
        )
    adopt(module, survivors(session, settings, stack), managed)
    progress("terraform apply")
    run(["apply", "-auto-approve", "-input=false"], module, env, log_file, progress)
    return outputs_from_state(state(module, env, log_file), stack)


def destroy(settings: Settings, progress: Callable[[str], None]) -> None:
    """`terraform destroy` of what the workspace's state holds."""
    module = workspace(settings)
    if not (module / "terraform.tfstate").exists():
        raise LocalCloudError(f"no Terraform state in {module}: nothing was deployed with --deploy terraform")
    prepare(settings)
    run(["destroy", "-auto-approve", "-input=false"], module, terraform_env(None), settings.logs_dir / "terraform.log",
        progress)  # fmt: skip
