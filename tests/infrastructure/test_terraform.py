"""infrastructure/terraform: parses, passes checkov, and takes every shared setting from stack.yaml.

The source-of-truth tests change values in a copy of stack.yaml and check that both sides follow: the
Terraform side by resolving the module's (parsed) references against the copy — and, where the terraform
binary and an offline provider mirror exist, by a real `terraform plan` — and the local cloud side by
deploying the copy to the moto server with each deployer (boto3, and `terraform apply` with the local
cloud's override) and reading every value back.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import hcl2
import pytest
import yaml

from localcloud.config import REPO_ROOT
from localcloud.stack.deploy import deploy_stack
from localcloud.stack.model import StackError, load_stack
from tests.fixtures.terraform import (
    STACK_FILE,
    TF_DIR,
    PlannedModule,
    local_override,
    module_copy,
    terraform,
    terraform_env,
)

CHECKOV = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"

# (resource type, HCL attribute, the exact expression it must be, AWS API field the local cloud reads back)
TRIGGER_SETTINGS = [
    ("batch_size", "each.value.kinesis_trigger.batch_size", "BatchSize"),
    ("maximum_batching_window_in_seconds", "each.value.kinesis_trigger.maximum_batching_window_s", "MaximumBatchingWindowInSeconds"),
    ("starting_position", "each.value.kinesis_trigger.starting_position", "StartingPosition"),
    ("parallelization_factor", "each.value.kinesis_trigger.parallelization_factor", "ParallelizationFactor"),
    ("bisect_batch_on_function_error", "each.value.kinesis_trigger.bisect_batch_on_function_error", "BisectBatchOnFunctionError"),
    ("maximum_retry_attempts", "each.value.kinesis_trigger.maximum_retry_attempts", "MaximumRetryAttempts"),
    ("maximum_record_age_in_seconds", "each.value.kinesis_trigger.maximum_record_age_s", "MaximumRecordAgeInSeconds"),
]  # fmt: skip
FUNCTION_SETTINGS = [
    ("handler", "each.value.handler", "Handler"),
    ("runtime", "each.value.runtime", "Runtime"),
    ("memory_size", "each.value.memory_mb", "MemorySize"),
    ("timeout", "each.value.timeout_s", "Timeout"),
]
QUEUE_ALARM_SETTINGS = [
    ("metric_name", "each.value.metric", "MetricName"),
    ("statistic", "each.value.statistic", "Statistic"),
    ("threshold", "each.value.threshold", "Threshold"),
    ("period", "each.value.period_s", "Period"),
]
ALL_SETTINGS = (
    [("aws_lambda_event_source_mapping", "stream", attr, expr) for attr, expr, _ in TRIGGER_SETTINGS]
    + [("aws_lambda_function", "stack", attr, expr) for attr, expr, _ in FUNCTION_SETTINGS]
    + [
        ("aws_lambda_event_source_mapping", "stream", "function_response_types",
         'each.value.kinesis_trigger.report_batch_item_failures ? ["ReportBatchItemFailures"] : []'),
        ("aws_lambda_function", "stack", "reserved_concurrent_executions",
         "lookup(var.reserved_concurrency, each.key, try(each.value.reserved_concurrency, null))"),
        ("aws_scheduler_schedule", "function", "schedule_expression", "each.value.schedule"),
        ("aws_iot_topic_rule", "stack", "sql", 'join(" ", compact(split(" ", replace(each.value.sql, "\\n", " "))))'),
        ("aws_iot_topic_rule", "stack", "sql_version", "each.value.sql_version"),
        ("aws_sqs_queue", "stack", "message_retention_seconds", "each.value.message_retention_seconds"),
        ("aws_sqs_queue", "stack", "visibility_timeout_seconds", "each.value.visibility_timeout_seconds"),
        ("aws_kinesis_stream", "telemetry", "retention_period", "local.stack.stream.retention_hours"),
    ]
    + [("aws_cloudwatch_metric_alarm", "queue", attr, expr) for attr, expr, _ in QUEUE_ALARM_SETTINGS]
)  # fmt: skip


def unquote(key: str) -> str:
    return key.strip('"')


def parse_module(directory: Path) -> dict[str, dict]:
    """The module's top-level .tf files merged: {"resource": {type: {name: body}}, "locals": {...}, ...}."""
    merged: dict[str, dict] = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}}
    for path in sorted(directory.glob("*.tf")):
        parsed = hcl2.loads(path.read_text())
        for block in parsed.get("locals", []):
            merged["locals"].update({k: v for k, v in block.items() if k != "__is_block__"})
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        merged[kind].setdefault(unquote(rtype), {})[unquote(name)] = body
        for kind in ("variable", "output"):
            for block in parsed.get(kind, []):
                merged[kind].update({unquote(name): body for name, body in block.items()})
    return merged


@pytest.fixture(scope="module")
def module() -> dict[str, dict]:
    return parse_module(TF_DIR)


@pytest.mark.parametrize("path", sorted(TF_DIR.rglob("*.tf")), ids=lambda p: p.relative_to(TF_DIR).as_posix())
def test_every_tf_file_parses_with_python_hcl2(path):
    assert hcl2.loads(path.read_text()), f"{path} parsed to nothing"


def test_every_variable_has_a_description_and_a_type_and_every_output_a_description(module):
    assert module["variable"] and module["output"]
    for name, body in module["variable"].items():
        assert str(body.get("description", "")).strip(), f"variable {name} has no description"
        assert body.get("type"), f"variable {name} has no type"
    for name, body in module["output"].items():
        assert str(body.get("description", "")).strip(), f"output {name} has no description"


def test_the_module_reads_the_one_stack_file_and_iterates_over_its_maps(module):
    local, resource = module["locals"], module["resource"]
    assert local["stack"] == '${yamldecode(file("${path.module}/../stack.yaml"))}'
    assert (TF_DIR / ".." / "stack.yaml").resolve() == STACK_FILE.resolve()
    assert local["functions"] == "${local.stack.functions}"
    assert "local.functions" in local["triggered"] and "fn.kinesis_trigger" in local["triggered"]
    assert "local.functions" in local["scheduled"] and "fn.schedule" in local["scheduled"]
    assert resource["aws_lambda_function"]["stack"]["for_each"] == "${local.functions}"
    assert resource["aws_lambda_event_source_mapping"]["stream"]["for_each"] == "${local.triggered}"
    assert resource["aws_scheduler_schedule"]["function"]["for_each"] == "${local.scheduled}"
    assert resource["aws_iot_topic_rule"]["stack"]["for_each"] == "${local.stack.topic_rules}"
    assert resource["aws_sqs_queue"]["stack"]["for_each"] == "${local.stack.queues}"
    kinesis_action = resource["aws_iot_topic_rule"]["stack"]["kinesis"][0]
    assert kinesis_action["partition_key"] == "${each.value.kinesis.partition_key}"
    environment = resource["aws_lambda_function"]["stack"]["environment"][0]["variables"]
    assert environment == "${merge(local.common_environment, try(each.value.environment, {}))}"


@pytest.mark.parametrize(("rtype", "name", "attribute", "expression"), ALL_SETTINGS, ids=lambda v: str(v)[:40])
def test_each_shared_setting_is_a_reference_into_the_stack_file_not_a_literal(
    module, rtype, name, attribute, expression
):
    assert module["resource"][rtype][name][attribute] == "${" + expression + "}"


def test_the_device_policy_binds_the_topic_to_the_thing_name(module):
    policy = module["resource"]["aws_iot_policy"]["device"]["policy"]
    assert "$${iot:Connection.Thing.ThingName}" in policy and "iot:Connection.Thing.IsAttached" in policy
    assert "$${iot:Connection.Thing.ThingName}" in module["locals"]["device_topics"]
    assert "local.stack.topic_rules" in module["locals"]["device_topics"]


# -- both sides follow a change to the one file ------------------------------------------------------------


def changed_stack_raw() -> dict:
    """stack.yaml with every shared setting changed, under a unique project (the moto server is shared)."""
    raw = yaml.safe_load(STACK_FILE.read_text())
    raw["project"] = f"sot-{uuid.uuid4().hex[:8]}"
    raw["stream"]["retention_hours"] = 48
    for queue in raw["queues"].values():
        queue["visibility_timeout_seconds"] += 7
        queue["message_retention_seconds"] -= 11
        queue["alarm"].update(threshold=queue["alarm"]["threshold"] + 2, period_s=queue["alarm"]["period_s"] + 60)
    for rule in raw["topic_rules"].values():
        rule["sql"] = rule["sql"] + " WHERE rss > -120"
    # A function Terraform has never seen: scheduled, no trigger, on the first function's packages.
    first = next(iter(raw["functions"].values()))
    added = {k: v for k, v in first.items() if k != "kinesis_trigger"}
    raw["functions"]["added_later"] = {**added, "schedule": "rate(11 minutes)", "access": ["bucket", "alerts_topic"]}
    for fn in raw["functions"].values():
        fn["memory_mb"] += 128
        fn["timeout_s"] += 5
        fn["environment"] = {**(fn.get("environment") or {}), "SOURCE_OF_TRUTH_PROBE": fn["handler"]}
        fn.setdefault("schedule", "rate(7 minutes)")
        trigger = fn.get("kinesis_trigger")
        if trigger:
            trigger.update(
                batch_size=trigger["batch_size"] + 137,
                maximum_batching_window_s=trigger["maximum_batching_window_s"] + 2,
                parallelization_factor=3,
                bisect_batch_on_function_error=not trigger["bisect_batch_on_function_error"],
                maximum_retry_attempts=2,
                maximum_record_age_s=3600,
            )
    return raw


def terraform_value(expression: str, stack: dict, item: dict):
    """What Terraform assigns for a plain reference `each.value.a.b` / `local.stack.a.b`."""
    head, _, path = expression.partition(".value.") if expression.startswith("each.") else ("", "", "")
    node = item if head else stack
    if not head:
        assert expression.startswith("local.stack.")
        path = expression.removeprefix("local.stack.")
    for key in path.split("."):
        node = node[key]
    return node


@pytest.fixture
def changed_stack(tmp_path) -> tuple[dict, Path]:
    raw = changed_stack_raw()
    path = tmp_path / "infrastructure" / "stack.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(raw))
    return raw, path


def deployed_with(deployer: str, path: Path, aws_endpoint, tmp_path: Path) -> dict[str, str]:
    """Deploy the stack file at `path` with the boto3 deployer or with `terraform apply` of the module beside it
    (the local cloud's override and tfvars); the outputs the checks below need."""
    if deployer == "boto3":
        return deploy_stack(load_stack(path), aws_endpoint.url, "us-east-1", database_secret={})
    env = terraform_env(tmp_path)
    copy = module_copy(path)
    local_override(copy, aws_endpoint.url)
    terraform(["init", "-input=false"], copy, env)
    variables = [f"-var-file={TF_DIR / 'local' / 'local.tfvars'}", f"-var=lambda_hot_reload_root={REPO_ROOT}"]
    terraform(["apply", "-auto-approve", "-input=false", *variables], copy, env, timeout=900)
    outputs = json.loads(terraform(["output", "-json"], copy, env))
    return {
        "ALERTS_TOPIC_ARN": outputs["alerts_topic_arn"]["value"],
        "TELEMETRY_STREAM_NAME": outputs["telemetry_stream"]["value"],
    }


@pytest.mark.parametrize("deployer", ["boto3", "terraform"])
def test_both_deployers_deploy_the_values_terraform_reads(module, aws_endpoint, changed_stack, tmp_path, deployer):
    raw, path = changed_stack
    functions = {
        key: fn for key, fn in raw["functions"].items() if all((REPO_ROOT / p).is_dir() for p in fn["packages"])
    }
    assert functions, "no function of stack.yaml has its packages yet"
    raw = {**raw, "functions": functions}
    path.write_text(yaml.safe_dump(raw))
    outputs = deployed_with(deployer, path, aws_endpoint, tmp_path)
    lam = aws_endpoint.client("lambda")
    for key, fn in functions.items():
        name = f"{raw['project']}-{key}"
        function = lam.get_function(FunctionName=name)
        config = function["Configuration"]
        for attribute, expression, field in FUNCTION_SETTINGS:
            assert config[field] == terraform_value(expression, raw, fn), attribute
        assert fn["environment"].items() <= config["Environment"]["Variables"].items()
        # The same code location and database access: the packages' folder, hot-reloaded; the secret, no URL.
        assert function["Code"]["Location"] == (REPO_ROOT / fn["packages"][0]).parent.as_uri()
        assert "DB_SECRET_ARN" in config["Environment"]["Variables"]
        assert "DATABASE_URL" not in config["Environment"]["Variables"]
        schedule = aws_endpoint.client("scheduler").get_schedule(Name=name)
        assert schedule["ScheduleExpression"] == terraform_value("each.value.schedule", raw, fn)
        if fn.get("kinesis_trigger"):
            (mapping,) = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
            for attribute, expression, field in TRIGGER_SETTINGS:
                assert mapping[field] == terraform_value(expression, raw, fn), attribute
            reported = fn["kinesis_trigger"]["report_batch_item_failures"]
            assert mapping["FunctionResponseTypes"] == (["ReportBatchItemFailures"] if reported else [])
    iot = aws_endpoint.client("iot")
    for key, rule in raw["topic_rules"].items():
        deployed = iot.get_topic_rule(ruleName=f"{raw['project']}_{key}".replace("-", "_"))["rule"]
        assert deployed["sql"] == " ".join(terraform_value("each.value.sql", raw, rule).split())
        assert deployed["awsIotSqlVersion"] == terraform_value("each.value.sql_version", raw, rule)
        assert deployed["actions"][0]["kinesis"]["partitionKey"] == rule["kinesis"]["partition_key"]
    sqs = aws_endpoint.client("sqs")
    for key, queue in raw["queues"].items():
        url = sqs.get_queue_url(QueueName=f"{raw['project']}-{key}")["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert int(attributes["VisibilityTimeout"]) == terraform_value(
            "each.value.visibility_timeout_seconds", raw, queue
        )
        assert int(attributes["MessageRetentionPeriod"]) == terraform_value(
            "each.value.message_retention_seconds", raw, queue
        )
        (alarm,) = aws_endpoint.client("cloudwatch").describe_alarms(
            AlarmNames=[f"{raw['project']}-{key}-{queue['alarm']['metric']}"]
        )["MetricAlarms"]
        for attribute, expression, field in QUEUE_ALARM_SETTINGS:
            assert alarm[field] == terraform_value(expression, raw, queue["alarm"]), attribute
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": f"{raw['project']}-{key}"}]
        assert alarm["AlarmActions"] == [outputs["ALERTS_TOPIC_ARN"]]
    stream = aws_endpoint.client("kinesis").describe_stream_summary(StreamName=outputs["TELEMETRY_STREAM_NAME"])
    assert stream["StreamDescriptionSummary"]["RetentionPeriodHours"] == terraform_value(
        "local.stack.stream.retention_hours", raw, {}
    )


# -- the terraform binary (bonus: needs terraform and an offline provider mirror) ---------------------------


def test_terraform_fmt_and_validate(tmp_path):
    env = terraform_env(tmp_path)
    terraform(["fmt", "-check", "-recursive", str(TF_DIR)], tmp_path, env)
    stack_file = tmp_path / "infrastructure" / "stack.yaml"
    stack_file.parent.mkdir()
    shutil.copy(STACK_FILE, stack_file)
    copy = module_copy(stack_file)
    terraform(["init", "-backend=false", "-input=false"], copy, env)
    terraform(["validate"], copy, env)


def test_terraform_plan_carries_a_changed_stack_file(tmp_path, aws_endpoint, changed_stack):
    raw, stack_file = changed_stack
    module = PlannedModule(tmp_path / "plan", raw["functions"], aws_endpoint.url, terraform_env(tmp_path))
    module.stack_file.write_text(stack_file.read_text())
    after = module.plan()
    assert 'aws_iam_role.function["added_later"]' in after
    assert 'aws_cloudwatch_metric_alarm.function_errors["added_later"]' in after
    assert 'aws_lambda_event_source_mapping.stream["added_later"]' not in after

    for key, fn in raw["functions"].items():
        function = after[f'aws_lambda_function.stack["{key}"]']
        assert function["function_name"] == f"{raw['project']}-{key}"
        for attribute, expression, _ in FUNCTION_SETTINGS:
            assert function[attribute] == terraform_value(expression, raw, fn), attribute
        # The environment map holds ARNs, so the plan knows it only after apply; its wiring is checked above.
        schedule = after[f'aws_scheduler_schedule.function["{key}"]']
        assert schedule["schedule_expression"] == fn["schedule"]
        if fn.get("kinesis_trigger"):
            mapping = after[f'aws_lambda_event_source_mapping.stream["{key}"]']
            for attribute, expression, _ in TRIGGER_SETTINGS:
                assert mapping[attribute] == terraform_value(expression, raw, fn), attribute
    for key, rule in raw["topic_rules"].items():
        planned = after[f'aws_iot_topic_rule.stack["{key}"]']
        assert planned["sql"] == " ".join(rule["sql"].split())
        assert planned["kinesis"][0]["partition_key"] == rule["kinesis"]["partition_key"] == "${topic(2)}"
    for key, queue in raw["queues"].items():
        planned = after[f'aws_sqs_queue.stack["{key}"]']
        assert planned["visibility_timeout_seconds"] == queue["visibility_timeout_seconds"]
        assert planned["message_retention_seconds"] == queue["message_retention_seconds"]
        alarm = after[f'aws_cloudwatch_metric_alarm.queue["{key}"]']
        for attribute, expression, _ in QUEUE_ALARM_SETTINGS:
            assert alarm[attribute] == terraform_value(expression, raw, queue["alarm"]), attribute
    assert after["aws_kinesis_stream.telemetry"]["retention_period"] == raw["stream"]["retention_hours"]


# -- what a real account needs: first apply, redeploy, day 2 (issue 18) ------------------------------------


def test_resources_wait_for_the_permissions_they_use_from_their_first_second(module):
    """Edges a plan cannot show: without them a first apply or a destroy can run the calls out of order."""
    resource = module["resource"]
    function_depends_on = resource["aws_lambda_function"]["stack"]["depends_on"]
    # CreateFunction with a VPC config checks the role may create network interfaces: the VPC attachment.
    assert "${aws_iam_role_policy_attachment.function_vpc}" in function_depends_on
    assert "${aws_iam_role_policy.function}" in function_depends_on
    # A message or a schedule in the first seconds must find its role's permissions (error action included).
    assert resource["aws_iot_topic_rule"]["stack"]["depends_on"] == ["${aws_iam_role_policy.iot_rules}"]
    assert resource["aws_scheduler_schedule"]["function"]["depends_on"] == ["${aws_iam_role_policy.scheduler}"]
    # ... and those are the policies of the roles they use.
    assert resource["aws_iam_role_policy"]["iot_rules"]["role"] == "${aws_iam_role.iot_rules.id}"
    assert resource["aws_iot_topic_rule"]["stack"]["kinesis"][0]["role_arn"] == "${aws_iam_role.iot_rules.arn}"
    assert resource["aws_iam_role_policy"]["scheduler"]["role"] == "${aws_iam_role.scheduler.id}"
    assert resource["aws_scheduler_schedule"]["function"]["target"][0]["role_arn"] == "${aws_iam_role.scheduler.arn}"
    attachment = resource["aws_iam_role_policy_attachment"]["function_vpc"]
    assert attachment["role"] == "${aws_iam_role.function[each.key].name}"
    assert attachment["policy_arn"].endswith('policy/service-role/AWSLambdaVPCAccessExecutionRole"')


@pytest.fixture(scope="module")
def planned(tmp_path_factory, aws_endpoint) -> PlannedModule:
    """The module with the repository's stack.yaml, initialised once for the plans below (a plan takes ~15 s
    on two cores, so each plan serves every test that reads it)."""
    root = tmp_path_factory.mktemp("planned")
    functions = [*yaml.safe_load(STACK_FILE.read_text())["functions"], "replayed_too"]
    return PlannedModule(root, functions, aws_endpoint.url, terraform_env(root))


@pytest.fixture(scope="module")
def default_plan(planned) -> dict[str, dict]:
    return planned.plan()


@dataclass
class ChosenPlan:
    """A plan with every issue-18 variable set: reservations, no recovery window, write-only credentials."""

    variables: list[str]
    password: str
    after: dict[str, dict]
    plan_file: Path


@pytest.fixture(scope="module")
def chosen(planned) -> ChosenPlan:
    password = f"pw-{uuid.uuid4().hex}"
    credentials = f'{{host = "db.example", port = 5432, username = "u", password = "{password}", dbname = "d"}}'
    variables = [
        f"-var=name_prefix=wo-{uuid.uuid4().hex[:8]}",
        "-var=reserved_concurrency={aggregate = 1, archive = 2}",
        "-var=db_secret_recovery_window_days=0",
        f"-var=db_credentials={credentials}",
        "-var=db_credentials_version=1",
    ]
    return ChosenPlan(variables, password, planned.plan(*variables, out="chosen.bin"), planned.dir / "chosen.bin")


@pytest.fixture(scope="module")
def invalid_variables(planned) -> str:
    """The errors of one plan with a value out of range in each new variable."""
    return planned.plan_fails("-var=reserved_concurrency={agregate = 0}", "-var=db_secret_recovery_window_days=3")


def refused_stack(raw: dict) -> dict:
    """The defects found in review, in one stack: the stream keeps records only as long as the ingest retries
    them, and a second trigger without a record age limit."""
    ingest = raw["functions"]["ingest"]
    raw["stream"]["retention_hours"] = ingest["kinesis_trigger"]["maximum_record_age_s"] // 3600
    raw["functions"]["replayed_too"] = {
        **ingest,
        "kinesis_trigger": {**ingest["kinesis_trigger"], "maximum_record_age_s": -1},
    }
    return raw


@pytest.fixture(scope="module")
def refused(planned) -> str:
    """The errors of one plan of the refused stack, with credentials but no version."""
    planned.stack_file.write_text(yaml.safe_dump(refused_stack(yaml.safe_load(STACK_FILE.read_text()))))
    try:
        return planned.plan_fails(
            '-var=db_credentials={host = "h", port = 5432, username = "u", password = "p", dbname = "d"}'
        )
    finally:
        planned.stack_file.write_text(STACK_FILE.read_text())


def reserved_concurrency(after: dict[str, dict]) -> dict[str, int]:
    prefix = "aws_lambda_function.stack["
    return {
        a[len(prefix) + 1 : -2]: v["reserved_concurrent_executions"] for a, v in after.items() if a.startswith(prefix)
    }


def test_no_function_reserves_concurrency_unless_the_deployment_asks(default_plan, chosen, invalid_variables):
    # Lambda keeps 100 executions unreserved: on an account with a quota of 10 or 50 any reservation fails.
    unreserved = {key: -1 for key in yaml.safe_load(STACK_FILE.read_text())["functions"]}  # -1: the provider's "none"
    assert reserved_concurrency(default_plan) == unreserved
    assert reserved_concurrency(chosen.after) == {**unreserved, "aggregate": 1, "archive": 2}
    assert "reserved_concurrency names functions that stack.yaml does not have: agregate" in invalid_variables
    assert "at least 1 (0 would stop the function from running)" in invalid_variables


def test_the_secret_recovery_window_is_a_variable_and_zero_frees_the_name_at_once(
    default_plan, chosen, invalid_variables
):
    assert default_plan["aws_secretsmanager_secret.database"]["recovery_window_in_days"] == 7
    assert chosen.after["aws_secretsmanager_secret.database"]["recovery_window_in_days"] == 0
    assert "must be 0 (delete at once) or between 7 and 30" in invalid_variables


def test_the_database_password_reaches_the_secret_but_neither_the_plan_nor_the_state(
    planned, chosen, refused, aws_endpoint
):
    version = chosen.after["aws_secretsmanager_secret_version.database[0]"]
    assert version["secret_string_wo_version"] == 1 and not version.get("secret_string")
    with zipfile.ZipFile(chosen.plan_file) as saved_plan:
        assert saved_plan.namelist()
        assert not [name for name in saved_plan.namelist() if chosen.password.encode() in saved_plan.read(name)]

    # Apply the secret (and the key it is encrypted with) to the moto server: the value arrives, the state
    # holds no trace of it.
    state = planned.dir / "secret.tfstate"
    target = "-target=aws_secretsmanager_secret_version.database"
    applied = planned.run("apply", "-auto-approve", f"-state={state}", target, *chosen.variables)
    assert applied.returncode == 0, applied.stderr
    prefix = chosen.variables[0].removeprefix("-var=name_prefix=")
    stored = aws_endpoint.client("secretsmanager").get_secret_value(SecretId=f"{prefix}-database")
    assert json.loads(stored["SecretString"])["password"] == chosen.password
    assert chosen.password not in state.read_text()
    (written,) = [
        r for r in json.loads(state.read_text())["resources"] if r["type"] == "aws_secretsmanager_secret_version"
    ]
    assert written["instances"][0]["attributes"]["has_secret_string_wo"] is True

    assert "Set db_credentials and db_credentials_version together" in refused


def test_a_failed_batch_stays_in_the_stream_long_enough_to_be_replayed(default_plan, refused, tmp_path):
    retention_s = default_plan["aws_kinesis_stream.telemetry"]["retention_period"] * 3600
    mappings = [v for a, v in default_plan.items() if a.startswith("aws_lambda_event_source_mapping.stream[")]
    assert mappings
    for mapping in mappings:
        assert mapping["maximum_record_age_in_seconds"] > 0
        assert retention_s - mapping["maximum_record_age_in_seconds"] >= 86_400  # a day to replay, at least
    assert "must exceed every kinesis_trigger.maximum_record_age_s" in refused
    assert "(not so: ingest, replayed_too)" in refused

    stack_file = tmp_path / "stack.yaml"
    for function in ("ingest", "replayed_too"):  # the local cloud refuses each defect on its own
        raw = refused_stack(yaml.safe_load(STACK_FILE.read_text()))
        raw["functions"] = {function: raw["functions"][function]}
        stack_file.write_text(yaml.safe_dump(raw))
        expected = "less than a day to replay" if function == "ingest" else "-1 (no limit)"
        with pytest.raises(StackError, match=re.escape(f"functions.{function}.kinesis_trigger.maximum_record_age_s")):
            load_stack(stack_file)
        with pytest.raises(StackError, match=re.escape(expected)):
            load_stack(stack_file)


def test_rejects_and_failed_batches_go_to_separate_queues_with_alarms_of_their_own(default_plan):
    stack = yaml.safe_load(STACK_FILE.read_text())
    ingest = stack["functions"]["ingest"]
    on_failure = ingest["kinesis_trigger"]["on_failure_queue"]
    assert [key for key in ingest["access"] if key in stack["queues"]] == ["ingest_rejects"] != [on_failure]
    depth = default_plan[f'aws_cloudwatch_metric_alarm.queue["{on_failure}"]']
    assert (depth["metric_name"], depth["statistic"], depth["threshold"]) == (
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
        1,
    )
    rate = default_plan['aws_cloudwatch_metric_alarm.queue["ingest_rejects"]']
    assert (rate["metric_name"], rate["statistic"]) == ("NumberOfMessagesSent", "Sum") and rate["threshold"] > 1
    for alarm in (depth, rate):
        assert alarm["comparison_operator"] == "GreaterThanOrEqualToThreshold"
    assert depth["dimensions"] == {"QueueName": f"iotkpi-{on_failure}"}
    assert rate["dimensions"] == {"QueueName": "iotkpi-ingest_rejects"}
    # Nothing consumes the copies of rejects (the table keeps them): they expire; on-failure records wait.
    rejects_kept = default_plan['aws_sqs_queue.stack["ingest_rejects"]']["message_retention_seconds"]
    assert rejects_kept <= 86_400 < default_plan[f'aws_sqs_queue.stack["{on_failure}"]']["message_retention_seconds"]


# -- checkov -------------------------------------------------------------------------------------------


def test_checkov_finds_no_failed_check_and_every_skip_gives_a_reason(tmp_path):
    if not CHECKOV.exists():
        message = f"checkov is not installed at {CHECKOV} (python -m venv .venv-checkov; pip install checkov)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [str(CHECKOV), "--directory", str(TF_DIR), "--framework", "terraform", "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [c for r in reports for c in r["results"].get("failed_checks", [])]
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}: {c['check_name']}" for c in failed)
    assert result.returncode == 0, result.stderr[-2000:]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["passed"] for r in reports) > 50, "checkov scanned almost nothing"
    for check in (c for r in reports for c in r["results"].get("skipped_checks", [])):
        assert len(check["check_result"].get("suppress_comment", "").strip()) > 20, check["check_id"]


# -- LocalStack: the override, the tfvars and the compose file agree ---------------------------------------

SERVICE_OF_PREFIX = {
    "aws_cloudwatch_log_": "logs", "aws_cloudwatch_metric_": "cloudwatch", "aws_iam_": "iam", "aws_iot_": "iot",
    "aws_kinesis_": "kinesis", "aws_kms_": "kms", "aws_lambda_": "lambda", "aws_s3_": "s3", "aws_scheduler_": "scheduler",
    "aws_secretsmanager_": "secretsmanager", "aws_sns_": "sns", "aws_sqs_": "sqs", "aws_caller_identity": "sts",
    "aws_vpc_": "ec2", "aws_security_group": "ec2", "aws_subnet": "ec2", "aws_route_table": "ec2",
}  # fmt: skip


def test_the_localstack_override_has_an_endpoint_for_every_service_the_module_uses(module):
    override = hcl2.loads((TF_DIR / "localstack" / "localstack_providers_override.tf").read_text())
    endpoints = override["provider"][0]['"aws"']["endpoints"][0]
    computed_locally = {"aws_iam_policy_document", "aws_partition", "aws_region"}  # no API call behind these
    used_types = [*module["resource"], *(t for t in module["data"] if t not in computed_locally)]
    unknown = [t for t in used_types if not any(t.startswith(prefix) for prefix in SERVICE_OF_PREFIX)]
    assert not unknown, f"map these resource types to a service: {unknown}"
    services = {service for t in used_types for prefix, service in SERVICE_OF_PREFIX.items() if t.startswith(prefix)}
    assert services - set(endpoints) == set()
    assert {unquote(url) for key, url in endpoints.items() if key != "__is_block__"} == {"http://localhost:4566"}


def test_compose_token_network_and_database_match_the_localstack_tfvars(module):
    compose = yaml.safe_load((REPO_ROOT / "localstack" / "docker-compose.yml").read_text())
    parsed = hcl2.loads((TF_DIR / "localstack" / "localstack.tfvars").read_text())
    tfvars = {key: value for key, value in parsed.items() if not key.startswith("__")}
    assert set(tfvars) <= set(module["variable"]), "localstack.tfvars sets variables the module lacks"
    localstack = compose["services"]["localstack"]["environment"]
    assert localstack["LOCALSTACK_AUTH_TOKEN"].startswith("${LOCALSTACK_AUTH_TOKEN:?"), "the token comes from the env"
    assert localstack["LAMBDA_DOCKER_NETWORK"] == compose["networks"]["default"]["name"]
    database = compose["services"]["timescaledb"]["environment"]
    credentials = tfvars["db_credentials"]
    assert unquote(credentials["host"]) == "timescaledb" and credentials["port"] == 5432
    assert tuple(unquote(credentials[key]) for key in ("username", "password", "dbname")) == (
        database["POSTGRES_USER"], database["POSTGRES_PASSWORD"], database["POSTGRES_DB"],
    )  # fmt: skip
    hook = REPO_ROOT / "localstack" / "init" / "ready.d" / "10-check-services.sh"
    assert os.access(hook, os.X_OK)
    assert subprocess.run(["bash", "-n", str(hook)]).returncode == 0
