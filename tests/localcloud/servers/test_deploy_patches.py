"""The moto patches Terraform's AWS provider needs, against the real (patched) server over HTTP: IoT tags and a
stable data endpoint, LocalStack's hot-reload code location, DeadLetterConfig, Kinesis tags at creation."""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.fixtures.aws import REGION

ROLE = "arn:aws:iam::123456789012:role/deploy-patches"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def rule_payload(sql: str = "SELECT * FROM 'a/+/b'") -> dict:
    return {"sql": sql, "actions": [{"kinesis": {"streamName": "s", "partitionKey": "k", "roleArn": ROLE}}]}


def tag_map(response: dict) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in response["tags"]}


def test_iot_resources_keep_the_tags_given_at_creation_and_by_tag_resource(aws_endpoint):
    iot = aws_endpoint.client("iot")
    rule = unique("rule")
    iot.create_topic_rule(ruleName=rule, topicRulePayload=rule_payload(), tags="Project=iotkpi&Owner=a%20b")
    rule_arn = iot.get_topic_rule(ruleName=rule)["ruleArn"]
    assert tag_map(iot.list_tags_for_resource(resourceArn=rule_arn)) == {"Project": "iotkpi", "Owner": "a b"}

    thing_type = iot.create_thing_type(thingTypeName=unique("type"), tags=[{"Key": "Project", "Value": "x"}])
    assert tag_map(iot.list_tags_for_resource(resourceArn=thing_type["thingTypeArn"])) == {"Project": "x"}
    policy = iot.create_policy(policyName=unique("policy"), policyDocument="{}", tags=[{"Key": "K", "Value": "v"}])
    assert tag_map(iot.list_tags_for_resource(resourceArn=policy["policyArn"])) == {"K": "v"}

    iot.tag_resource(resourceArn=rule_arn, tags=[{"Key": "ManagedBy", "Value": "terraform"}])
    iot.untag_resource(resourceArn=rule_arn, tagKeys=["Owner"])
    assert tag_map(iot.list_tags_for_resource(resourceArn=rule_arn)) == {"Project": "iotkpi", "ManagedBy": "terraform"}
    untagged = iot.create_policy(policyName=unique("policy"), policyDocument="{}")
    assert iot.list_tags_for_resource(resourceArn=untagged["policyArn"])["tags"] == []


def test_a_replaced_rule_keeps_its_tags_and_a_deleted_one_takes_them_along(aws_endpoint):
    iot = aws_endpoint.client("iot")
    rule = unique("rule")
    iot.create_topic_rule(ruleName=rule, topicRulePayload=rule_payload(), tags="Project=iotkpi")
    arn = iot.get_topic_rule(ruleName=rule)["ruleArn"]
    iot.replace_topic_rule(ruleName=rule, topicRulePayload=rule_payload("SELECT a FROM 'a/+/b'"))
    assert tag_map(iot.list_tags_for_resource(resourceArn=arn)) == {"Project": "iotkpi"}

    iot.delete_topic_rule(ruleName=rule)
    with pytest.raises(ClientError) as gone:
        iot.list_tags_for_resource(resourceArn=arn)
    assert gone.value.response["Error"]["Code"] == "ResourceNotFoundException"
    iot.create_topic_rule(ruleName=rule, topicRulePayload=rule_payload())  # the same name, a new rule: no tags
    assert iot.list_tags_for_resource(resourceArn=arn)["tags"] == []


@pytest.mark.parametrize("operation", ["list", "tag", "untag"])
def test_tagging_an_arn_of_nothing_is_resource_not_found(aws_endpoint, operation):
    iot = aws_endpoint.client("iot")
    arn = f"arn:aws:iot:{REGION}:123456789012:rule/{unique('missing')}"
    calls = {
        "list": lambda: iot.list_tags_for_resource(resourceArn=arn),
        "tag": lambda: iot.tag_resource(resourceArn=arn, tags=[{"Key": "a", "Value": "b"}]),
        "untag": lambda: iot.untag_resource(resourceArn=arn, tagKeys=["a"]),
    }
    with pytest.raises(ClientError) as error:
        calls[operation]()
    assert error.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_the_iot_data_endpoint_is_the_same_on_every_call(aws_endpoint):
    iot = aws_endpoint.client("iot")
    first = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert first.endswith(f"-ats.iot.{REGION}.amazonaws.com")
    assert {iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] for _ in range(3)} == {first}
    assert iot.describe_endpoint(endpointType="iot:Data")["endpointAddress"] != first


@pytest.fixture
def create_function(aws_endpoint):
    lam = aws_endpoint.client("lambda")
    iam = aws_endpoint.client("iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument="{}")

    def create(code: dict, **extra) -> str:
        name = unique("fn").replace("_", "-")
        lam.create_function(
            FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="probe.handler.handler", Code=code, **extra
        )
        return name

    return create


def test_hot_reload_code_is_reported_as_its_folder_and_switches_back_to_a_zip(aws_endpoint, create_function, tmp_path):
    lam = aws_endpoint.client("lambda")
    name = create_function({"S3Bucket": "hot-reload", "S3Key": str(tmp_path)})
    function = lam.get_function(FunctionName=name)
    assert function["Code"] == {"RepositoryType": "S3", "Location": tmp_path.as_uri()}
    first_hash = function["Configuration"]["CodeSha256"]

    moved = tmp_path / "elsewhere"
    lam.update_function_code(FunctionName=name, S3Bucket="hot-reload", S3Key=str(moved))
    function = lam.get_function(FunctionName=name)
    assert function["Code"]["Location"] == moved.as_uri()
    assert function["Configuration"]["CodeSha256"] != first_hash

    lam.update_function_code(FunctionName=name, ZipFile=b"PK\x05\x06" + b"\x00" * 18)
    assert not lam.get_function(FunctionName=name)["Code"]["Location"].startswith("file:")


def test_hot_reload_refuses_a_relative_folder(create_function):
    with pytest.raises(ClientError) as error:
        create_function({"S3Bucket": "hot-reload", "S3Key": "functions"})
    assert error.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "absolute path" in error.value.response["Error"]["Message"]


def test_a_bucket_that_does_not_exist_is_still_refused(create_function):
    with pytest.raises(ClientError) as error:
        create_function({"S3Bucket": unique("no-such-bucket").replace("_", "-"), "S3Key": "code.zip"})
    assert error.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_dead_letter_config_reads_back_after_create_and_update(aws_endpoint, create_function):
    lam = aws_endpoint.client("lambda")
    first = f"arn:aws:sqs:{REGION}:123456789012:first"
    name = create_function({"S3Bucket": "hot-reload", "S3Key": str(Path.cwd())}, DeadLetterConfig={"TargetArn": first})
    assert lam.get_function_configuration(FunctionName=name)["DeadLetterConfig"] == {"TargetArn": first}
    second = f"arn:aws:sqs:{REGION}:123456789012:second"
    lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": second})
    assert lam.get_function(FunctionName=name)["Configuration"]["DeadLetterConfig"] == {"TargetArn": second}
    lam.update_function_configuration(FunctionName=name, DeadLetterConfig={})
    assert "DeadLetterConfig" not in lam.get_function_configuration(FunctionName=name)


def test_kinesis_keeps_the_tags_given_at_creation(aws_endpoint):
    kinesis = aws_endpoint.client("kinesis")
    name = unique("tagged")
    kinesis.create_stream(StreamName=name, ShardCount=1, Tags={"Project": "iotkpi", "ManagedBy": "terraform"})
    tags = {tag["Key"]: tag["Value"] for tag in kinesis.list_tags_for_stream(StreamName=name)["Tags"]}
    assert tags == {"Project": "iotkpi", "ManagedBy": "terraform"}


def test_mappings_are_listed_by_function_name_or_arn_whichever_created_them(aws_endpoint, create_function, tmp_path):
    lam, kinesis = aws_endpoint.client("lambda"), aws_endpoint.client("kinesis")
    stream = unique("mapped")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    by_name = create_function({"S3Bucket": "hot-reload", "S3Key": str(tmp_path)})
    by_arn = create_function({"S3Bucket": "hot-reload", "S3Key": str(tmp_path)})
    arn = lam.get_function(FunctionName=by_arn)["Configuration"]["FunctionArn"]
    for function in (by_name, arn):
        lam.create_event_source_mapping(FunctionName=function, EventSourceArn=stream_arn, StartingPosition="LATEST")
    for name in (by_name, by_arn):
        full = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
        for asked in (name, full):
            (mapping,) = lam.list_event_source_mappings(FunctionName=asked, EventSourceArn=stream_arn)[
                "EventSourceMappings"
            ]
            assert mapping["FunctionArn"] == full


def test_a_stream_mapping_created_without_settings_reads_back_with_lambdas_defaults(
    aws_endpoint, create_function, tmp_path
):
    lam, kinesis = aws_endpoint.client("lambda"), aws_endpoint.client("kinesis")
    stream = unique("defaults")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    function = create_function({"S3Bucket": "hot-reload", "S3Key": str(tmp_path)})
    uuid_ = lam.create_event_source_mapping(
        FunctionName=function, EventSourceArn=stream_arn, StartingPosition="TRIM_HORIZON", BatchSize=7
    )["UUID"]
    mapping = lam.get_event_source_mapping(UUID=uuid_)
    assert mapping["BatchSize"] == 7  # what was sent wins
    assert (mapping["BisectBatchOnFunctionError"], mapping["MaximumRetryAttempts"]) == (False, -1)
    assert (mapping["MaximumRecordAgeInSeconds"], mapping["ParallelizationFactor"]) == (-1, 1)
    assert (mapping["MaximumBatchingWindowInSeconds"], mapping["FunctionResponseTypes"]) == (0, [])
