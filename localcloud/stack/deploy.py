"""Deploy the stack definition to an AWS endpoint (our moto server, LocalStack, ...). Idempotent.

Every step reads what exists first and creates or updates in place, so a second run changes only what the
stack file changed and never duplicates a resource. Function code follows LocalStack's hot-reload convention,
as the Terraform module does on a local cloud: `S3Bucket="hot-reload"`, `S3Key=<absolute folder that plays the
zip root>`, so the invoker runs the working tree's code. The functions find the database as on AWS: the secret
`<project>-database` (JSON host, port, username, password, dbname) named by DB_SECRET_ARN, never a connection
string in their configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from localcloud.config import aws_session
from localcloud.servers.moto_patches.awslambda_deploy import hot_reload_code
from localcloud.stack.model import FunctionSpec, KinesisTrigger, Stack

DATABASE_SECRET_NAME_SUFFIX = "database"  # noqa: S105 (a name) -- as Terraform names it: <prefix>-database
ROLE_SUFFIX = "local-role"
_TRUSTED_SERVICES = ["lambda.amazonaws.com", "iot.amazonaws.com", "scheduler.amazonaws.com"]


def queue_output_name(key: str) -> str:
    """`ingest_dlq` → INGEST_DLQ, `rule_errors` → RULE_ERRORS_QUEUE: the prefix of its _URL/_ARN outputs."""
    name = key.upper()
    return name if name.endswith(("DLQ", "QUEUE")) else f"{name}_QUEUE"


class StackDeployer:
    def __init__(self, stack: Stack, endpoint_url: str, region: str, database_secret: Mapping[str, Any]) -> None:
        self.stack = stack
        self.region = region
        self.database_secret = database_secret
        session = aws_session(region)
        self._client: Callable[[str], Any] = lambda service: session.client(service, endpoint_url=endpoint_url)
        self.outputs: dict[str, str] = {}

    def deploy(self, progress: Callable[[str], None]) -> dict[str, str]:
        progress("IAM role")
        role_arn = self._role()
        progress("Kinesis stream")
        self._stream()
        progress("database secret, SQS queues, S3 bucket, SNS topic, queue alarms")
        self._secret()
        self._queues()
        self._bucket()
        self._topic()
        self._queue_alarms()
        for spec in self.stack.functions.values():
            progress(f"Lambda function {self.stack.resource_name(spec.key)}")
            self._function(spec, role_arn)
            if spec.kinesis_trigger:
                self._event_source_mapping(spec, spec.kinesis_trigger)
            if spec.schedule:
                self._schedule(spec, role_arn)
        if self.stack.topic_rules:
            progress("IoT topic rules")
        for key in self.stack.topic_rules:
            self._topic_rule(key, role_arn)
        return dict(self.outputs)

    # -- resources ------------------------------------------------------------------------------------
    def _role(self) -> str:
        iam = self._client("iam")
        name = self.stack.resource_name(ROLE_SUFFIX)
        trust = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": _TRUSTED_SERVICES}, "Action": "sts:AssumeRole"}],
        }
        try:
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        self.outputs["LOCAL_ROLE_ARN"] = arn
        return arn

    def _stream(self) -> None:
        kinesis = self._client("kinesis")
        name = self.stack.resource_name(self.stack.stream_name)
        provisioned = self.stack.stream_mode == "PROVISIONED"
        try:
            summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except kinesis.exceptions.ResourceNotFoundException:
            extra = {"ShardCount": self.stack.shard_count} if provisioned else {}
            kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": self.stack.stream_mode}, **extra)
            kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
            summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if provisioned and summary["OpenShardCount"] != self.stack.shard_count:
            kinesis.update_shard_count(
                StreamName=name, TargetShardCount=self.stack.shard_count, ScalingType="UNIFORM_SCALING"
            )
        retention = summary["RetentionPeriodHours"]
        if retention < self.stack.retention_hours:
            kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=self.stack.retention_hours)
        elif retention > self.stack.retention_hours:
            kinesis.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=self.stack.retention_hours)
        self.outputs["TELEMETRY_STREAM_NAME"] = name
        self.outputs["TELEMETRY_STREAM_ARN"] = summary["StreamARN"]

    def _secret(self) -> None:
        secrets = self._client("secretsmanager")
        name = self.stack.resource_name(DATABASE_SECRET_NAME_SUFFIX)
        value = json.dumps(dict(self.database_secret))
        try:
            arn = secrets.describe_secret(SecretId=name)["ARN"]
            if secrets.get_secret_value(SecretId=arn)["SecretString"] != value:  # a new version only on change
                secrets.put_secret_value(SecretId=arn, SecretString=value)
        except secrets.exceptions.ResourceNotFoundException:
            arn = secrets.create_secret(Name=name, SecretString=value)["ARN"]
        self.outputs["DB_SECRET_ARN"] = arn

    def _queues(self) -> None:
        sqs = self._client("sqs")
        for key, settings in self.stack.queues.items():
            name = self.stack.resource_name(key)
            attributes = {
                "MessageRetentionPeriod": str(settings.get("message_retention_seconds", 345_600)),
                "VisibilityTimeout": str(settings.get("visibility_timeout_seconds", 30)),
            }
            try:
                url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
                sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
            except sqs.exceptions.QueueDoesNotExist:
                url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            prefix = queue_output_name(key)
            self.outputs[f"{prefix}_URL"] = url
            self.outputs[f"{prefix}_ARN"] = arn

    def _queue(self, key: str) -> tuple[str, str]:
        prefix = queue_output_name(key)
        return self.outputs[f"{prefix}_URL"], self.outputs[f"{prefix}_ARN"]

    def _bucket(self) -> None:
        s3 = self._client("s3")
        # Bucket names are global: the account id is part of the name, as Terraform names it.
        account = self._client("sts").get_caller_identity()["Account"]
        name = f"{self.stack.resource_name(self.stack.bucket_name)}-{account}"
        try:
            s3.head_bucket(Bucket=name)
        except ClientError:
            location = (
                {} if self.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
            )
            s3.create_bucket(Bucket=name, **location)
        self.outputs["ARCHIVE_BUCKET"] = name

    def _topic(self) -> None:
        sns = self._client("sns")
        name = self.stack.resource_name(self.stack.alerts_topic_name)
        self.outputs["ALERTS_TOPIC_ARN"] = sns.create_topic(Name=name)["TopicArn"]  # idempotent by name

    def _queue_alarms(self) -> None:
        """The queues' CloudWatch alarms, to the alerts topic, exactly as Terraform creates them."""
        cloudwatch = self._client("cloudwatch")
        topic = self.outputs["ALERTS_TOPIC_ARN"]
        for key, alarm in self.stack.queue_alarms.items():
            cloudwatch.put_metric_alarm(  # creates or replaces the alarm of that name
                AlarmName=self.stack.queue_alarm_name(key),
                AlarmDescription=alarm.description,
                Namespace="AWS/SQS",
                MetricName=alarm.metric,
                Dimensions=[{"Name": "QueueName", "Value": self.stack.resource_name(key)}],
                Statistic=alarm.statistic,
                Period=alarm.period_s,
                EvaluationPeriods=1,
                Threshold=alarm.threshold,
                ComparisonOperator="GreaterThanOrEqualToThreshold",
                TreatMissingData="notBreaching",
                AlarmActions=[topic],
                OKActions=[topic],
            )

    def function_environment(self, spec: FunctionSpec) -> dict[str, str]:
        shared = {}
        for key in ("DB_SECRET_ARN", "TELEMETRY_STREAM_NAME", "ARCHIVE_BUCKET", "ALERTS_TOPIC_ARN"):
            shared[key] = self.outputs[key]
        for key in self.stack.queues:
            shared[f"{queue_output_name(key)}_URL"] = self._queue(key)[0]
        return {**shared, **spec.environment}

    def _function(self, spec: FunctionSpec, role_arn: str) -> None:
        lam = self._client("lambda")
        name = self.stack.resource_name(spec.key)
        code = hot_reload_code(spec.code_root)
        config = {
            "Runtime": spec.runtime,
            "Role": role_arn,
            "Handler": spec.handler,
            "MemorySize": spec.memory_mb,
            "Timeout": spec.timeout_s,
            "Environment": {"Variables": self.function_environment(spec)},
        }
        try:
            arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
            lam.update_function_code(FunctionName=name, **code)
            lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
            lam.update_function_configuration(FunctionName=name, **config)
        except lam.exceptions.ResourceNotFoundException:
            arn = lam.create_function(FunctionName=name, Code=code, **config)["FunctionArn"]
        if spec.reserved_concurrency is None:
            lam.delete_function_concurrency(FunctionName=name)
        else:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=spec.reserved_concurrency)
        self.outputs[f"{spec.key.upper()}_FUNCTION_NAME"] = name
        self.outputs[f"{spec.key.upper()}_FUNCTION_ARN"] = arn

    def _event_source_mapping(self, spec: FunctionSpec, trigger: KinesisTrigger) -> None:
        lam = self._client("lambda")
        name = self.stack.resource_name(spec.key)
        stream_arn = self.outputs["TELEMETRY_STREAM_ARN"]
        settings: dict[str, Any] = {
            "BatchSize": trigger.batch_size,
            "MaximumBatchingWindowInSeconds": trigger.maximum_batching_window_s,
            "ParallelizationFactor": trigger.parallelization_factor,
            "BisectBatchOnFunctionError": trigger.bisect_batch_on_function_error,
            "MaximumRetryAttempts": trigger.maximum_retry_attempts,
            "MaximumRecordAgeInSeconds": trigger.maximum_record_age_s,
            "FunctionResponseTypes": ["ReportBatchItemFailures"] if trigger.report_batch_item_failures else [],
            "DestinationConfig": {"OnFailure": {}},
        }
        if trigger.on_failure_queue:
            settings["DestinationConfig"] = {"OnFailure": {"Destination": self._queue(trigger.on_failure_queue)[1]}}
        existing = lam.list_event_source_mappings(FunctionName=name, EventSourceArn=stream_arn)["EventSourceMappings"]
        if existing:
            uuid = existing[0]["UUID"]
            lam.update_event_source_mapping(UUID=uuid, FunctionName=name, **settings)
        else:
            uuid = lam.create_event_source_mapping(
                FunctionName=name, EventSourceArn=stream_arn, StartingPosition=trigger.starting_position, **settings
            )["UUID"]
        self.outputs[f"{spec.key.upper()}_EVENT_SOURCE_MAPPING_UUID"] = uuid

    def _schedule(self, spec: FunctionSpec, role_arn: str) -> None:
        scheduler = self._client("scheduler")
        name = self.stack.resource_name(spec.key)
        definition = {
            "Name": name,
            "ScheduleExpression": spec.schedule,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Target": {"Arn": self.outputs[f"{spec.key.upper()}_FUNCTION_ARN"], "RoleArn": role_arn, "Input": "{}"},
        }
        try:
            scheduler.get_schedule(Name=name)
            scheduler.update_schedule(**definition)
        except scheduler.exceptions.ResourceNotFoundException:
            scheduler.create_schedule(**definition)
        self.outputs[f"{spec.key.upper()}_SCHEDULE_NAME"] = name

    def _topic_rule(self, key: str, role_arn: str) -> None:
        iot = self._client("iot")
        rule = self.stack.topic_rules[key]
        payload: dict[str, Any] = {
            "sql": rule.sql,
            "description": rule.description,
            "awsIotSqlVersion": rule.sql_version,
            "ruleDisabled": False,
            "actions": [
                {
                    "kinesis": {
                        "streamName": self.outputs["TELEMETRY_STREAM_NAME"],
                        "partitionKey": rule.kinesis_partition_key,
                        "roleArn": role_arn,
                    }
                }
            ],
        }
        if rule.error_queue:
            payload["errorAction"] = {"sqs": {"queueUrl": self._queue(rule.error_queue)[0], "roleArn": role_arn}}
        name = self.stack.rule_name(key)
        try:
            iot.get_topic_rule(ruleName=name)
            iot.replace_topic_rule(ruleName=name, topicRulePayload=payload)
        except ClientError as exc:
            # AWS answers UnauthorizedException for a rule that does not exist; moto ResourceNotFound.
            if exc.response["Error"]["Code"] not in {"ResourceNotFoundException", "UnauthorizedException"}:
                raise
            iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
        self.outputs[f"{key.upper()}_RULE_NAME"] = name


def deploy_stack(
    stack: Stack,
    endpoint_url: str,
    region: str,
    *,
    database_secret: Mapping[str, Any],
    progress: Callable[[str], None] = lambda _step: None,
) -> dict[str, str]:
    """Create or update every resource of `stack`; return the outputs (names, URLs, ARNs) by env-var name.
    `database_secret` is the functions' database login as the README tells AWS users to store it."""
    return StackDeployer(stack, endpoint_url, region, database_secret).deploy(progress)
