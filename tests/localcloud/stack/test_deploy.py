"""deploy_stack against the real moto server: everything read back equals the stack file, twice."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import yaml

from localcloud.config import REPO_ROOT
from localcloud.stack.deploy import deploy_stack
from localcloud.stack.model import load_stack

PROBE_STACK = REPO_ROOT / "tests" / "stacks" / "probe-stack.yaml"
DATABASE_SECRET = {"host": "127.0.0.1", "port": 1, "username": "probe", "password": "s3cret-pw", "dbname": "probe"}


def stack_copy(tmp_path: Path, **changes) -> Path:
    """The probe stack under a unique project name (the moto server is shared), with `changes` applied."""
    raw = yaml.safe_load(PROBE_STACK.read_text())
    raw["project"] = f"deploy-{uuid.uuid4().hex[:8]}"
    for dotted, value in changes.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        node[leaf] = value
    path = tmp_path / "stack.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def stack_file(tmp_path):
    return stack_copy(tmp_path)


def deploy(aws_endpoint, path: Path) -> dict[str, str]:
    return deploy_stack(load_stack(path), aws_endpoint.url, "us-east-1", database_secret=DATABASE_SECRET)


def test_every_resource_reads_back_as_the_stack_file_says_after_two_deploys(aws_endpoint, stack_file):
    stack = load_stack(stack_file)
    first = deploy(aws_endpoint, stack_file)
    outputs = deploy(aws_endpoint, stack_file)
    assert outputs == first
    spec = stack.functions["probe"]
    trigger = spec.kinesis_trigger
    function_name = stack.resource_name("probe")

    kinesis = aws_endpoint.client("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=outputs["TELEMETRY_STREAM_NAME"])["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE"
    assert summary["OpenShardCount"] == stack.shard_count
    assert summary["RetentionPeriodHours"] == stack.retention_hours
    assert summary["StreamARN"] == outputs["TELEMETRY_STREAM_ARN"]

    sqs = aws_endpoint.client("sqs")
    queue_urls = [url for url in sqs.list_queues(QueueNamePrefix=stack.project).get("QueueUrls", [])]
    assert sorted(queue_urls) == sorted([outputs["INGEST_DLQ_URL"], outputs["RULE_ERRORS_QUEUE_URL"]])
    dlq = sqs.get_queue_attributes(QueueUrl=outputs["INGEST_DLQ_URL"], AttributeNames=["All"])["Attributes"]
    assert dlq["QueueArn"] == outputs["INGEST_DLQ_ARN"]
    assert int(dlq["MessageRetentionPeriod"]) == stack.queues["ingest_dlq"]["message_retention_seconds"]
    assert int(dlq["VisibilityTimeout"]) == stack.queues["ingest_dlq"]["visibility_timeout_seconds"]

    buckets = [b["Name"] for b in aws_endpoint.client("s3").list_buckets()["Buckets"]]
    assert outputs["ARCHIVE_BUCKET"] == f"{stack.project}-archive-123456789012" and outputs["ARCHIVE_BUCKET"] in buckets
    topics = [t["TopicArn"] for t in aws_endpoint.client("sns").list_topics()["Topics"]]
    assert [t for t in topics if t.endswith(f":{stack.project}-alerts")] == [outputs["ALERTS_TOPIC_ARN"]]

    lam = aws_endpoint.client("lambda")
    function = lam.get_function(FunctionName=function_name)
    config = function["Configuration"]
    assert (config["Runtime"], config["Handler"]) == (spec.runtime, spec.handler)
    assert (config["MemorySize"], config["Timeout"]) == (spec.memory_mb, spec.timeout_s)
    assert config["Environment"]["Variables"] == {
        **spec.environment,
        "DB_SECRET_ARN": outputs["DB_SECRET_ARN"],
        "TELEMETRY_STREAM_NAME": outputs["TELEMETRY_STREAM_NAME"],
        "INGEST_DLQ_URL": outputs["INGEST_DLQ_URL"],
        "RULE_ERRORS_QUEUE_URL": outputs["RULE_ERRORS_QUEUE_URL"],
        "ARCHIVE_BUCKET": outputs["ARCHIVE_BUCKET"],
        "ALERTS_TOPIC_ARN": outputs["ALERTS_TOPIC_ARN"],
    }
    assert function["Code"]["Location"] == (REPO_ROOT / "tests" / "probe_lambdas").as_uri()
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == spec.reserved_concurrency
    assert len([f for f in lam.list_functions()["Functions"] if f["FunctionName"] == function_name]) == 1

    mappings = lam.list_event_source_mappings(FunctionName=function_name)["EventSourceMappings"]
    assert len(mappings) == 1
    mapping = mappings[0]
    assert mapping["EventSourceArn"] == outputs["TELEMETRY_STREAM_ARN"]
    assert mapping["BatchSize"] == trigger.batch_size
    assert mapping["MaximumBatchingWindowInSeconds"] == trigger.maximum_batching_window_s
    assert mapping["StartingPosition"] == trigger.starting_position
    assert mapping["ParallelizationFactor"] == trigger.parallelization_factor
    assert mapping["BisectBatchOnFunctionError"] is trigger.bisect_batch_on_function_error
    assert mapping["MaximumRetryAttempts"] == trigger.maximum_retry_attempts
    assert mapping["MaximumRecordAgeInSeconds"] == trigger.maximum_record_age_s
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == outputs["INGEST_DLQ_ARN"]

    rule = aws_endpoint.client("iot").get_topic_rule(ruleName=stack.rule_name("telemetry_to_kinesis"))["rule"]
    spec_rule = stack.topic_rules["telemetry_to_kinesis"]
    assert rule["sql"] == spec_rule.sql
    assert rule["awsIotSqlVersion"] == spec_rule.sql_version
    kinesis_action = rule["actions"][0]["kinesis"]
    assert kinesis_action["streamName"] == outputs["TELEMETRY_STREAM_NAME"]
    assert kinesis_action["partitionKey"] == "${topic(2)}"
    assert rule["errorAction"]["sqs"]["queueUrl"] == outputs["RULE_ERRORS_QUEUE_URL"]

    schedule = aws_endpoint.client("scheduler").get_schedule(Name=function_name)
    assert schedule["ScheduleExpression"] == spec.schedule
    assert schedule["State"] == "ENABLED"
    assert schedule["Target"]["Arn"] == config["FunctionArn"]
    assert json.loads(schedule["Target"]["Input"]) == {}


def test_functions_get_the_database_secret_and_no_password(aws_endpoint, stack_file):
    """As on AWS: DB_SECRET_ARN names a secret holding the README's JSON shape; nothing else carries the login."""
    outputs = deploy(aws_endpoint, stack_file)
    secret = aws_endpoint.client("secretsmanager").get_secret_value(SecretId=outputs["DB_SECRET_ARN"])
    assert json.loads(secret["SecretString"]) == DATABASE_SECRET
    assert secret["Name"] == f"{load_stack(stack_file).project}-database"
    config = aws_endpoint.client("lambda").get_function_configuration(FunctionName=outputs["PROBE_FUNCTION_NAME"])
    variables = config["Environment"]["Variables"]
    assert "DATABASE_URL" not in variables
    assert not [name for name, value in variables.items() if DATABASE_SECRET["password"] in value], variables


def test_a_changed_login_is_a_new_secret_version_and_an_unchanged_one_is_not(aws_endpoint, stack_file):
    outputs = deploy(aws_endpoint, stack_file)
    secrets = aws_endpoint.client("secretsmanager")
    first = secrets.get_secret_value(SecretId=outputs["DB_SECRET_ARN"])["VersionId"]
    deploy(aws_endpoint, stack_file)
    assert secrets.get_secret_value(SecretId=outputs["DB_SECRET_ARN"])["VersionId"] == first
    rotated = {**DATABASE_SECRET, "password": "rotated-pw"}
    deploy_stack(load_stack(stack_file), aws_endpoint.url, "us-east-1", database_secret=rotated)
    current = secrets.get_secret_value(SecretId=outputs["DB_SECRET_ARN"])
    assert current["VersionId"] != first and json.loads(current["SecretString"]) == rotated


def test_redeploying_a_changed_stack_updates_in_place(aws_endpoint, tmp_path, stack_file):
    deploy(aws_endpoint, stack_file)
    raw = yaml.safe_load(stack_file.read_text())
    trigger = raw["functions"]["probe"]["kinesis_trigger"]
    trigger.update(batch_size=42, report_batch_item_failures=False, maximum_retry_attempts=1)
    raw["functions"]["probe"].update(memory_mb=1024, schedule="cron(0 3 * * ? *)", reserved_concurrency=None)
    raw["functions"]["probe"]["environment"]["PROBE_SETTING"] = "changed"
    stack_file.write_text(yaml.safe_dump(raw))
    deploy(aws_endpoint, stack_file)

    lam = aws_endpoint.client("lambda")
    name = f"{raw['project']}-probe"
    mappings = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [(m["BatchSize"], m["MaximumRetryAttempts"], m["FunctionResponseTypes"]) for m in mappings] == [(42, 1, [])]
    function = lam.get_function(FunctionName=name)
    assert function["Configuration"]["MemorySize"] == 1024
    assert function["Configuration"]["Environment"]["Variables"]["PROBE_SETTING"] == "changed"
    assert "Concurrency" not in function or not function["Concurrency"].get("ReservedConcurrentExecutions")
    schedule = aws_endpoint.client("scheduler").get_schedule(Name=name)
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)"
