"""What real plans of the module hold, against the moto server (the terraform binary and the offline provider mirror;
skipped with the reason where they are missing):

- production VPC: with lambda_subnet_ids, the endpoints the functions need to reach the AWS APIs they call, and
  none without subnets or with lambda_subnets_have_nat;
- least privilege: every statement of every function's policy names only resources of that function's `access`
  list in stack.yaml (plus what every function gets: its log group, the database secret, the stack key, the async
  failure queue; and its trigger), and `*` only for the documented X-Ray upload.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import yaml

from localcloud.config import FUNCTIONS_DIR
from tests.fixtures.terraform import STACK_FILE, PlannedModule, terraform, terraform_env

STACK = yaml.safe_load(STACK_FILE.read_text())
REGION = "us-east-1"
INTERFACE_SERVICES = {"secretsmanager", "sqs", "sns", "kms"}


@pytest.fixture(scope="module")
def planned(tmp_path_factory, aws_endpoint) -> PlannedModule:
    root = tmp_path_factory.mktemp("policies")
    return PlannedModule(root, STACK["functions"], aws_endpoint.url, terraform_env(root))


# -- production VPC ------------------------------------------------------------------------------------------


class Network:
    """A VPC in the moto server: three private subnets (two in one zone), explicitly on one route table."""

    def __init__(self, ec2) -> None:
        self.vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        self.zone_of = {}
        for n, zone in enumerate([f"{REGION}a", f"{REGION}a", f"{REGION}b"]):
            subnet = ec2.create_subnet(VpcId=self.vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=zone)
            self.zone_of[subnet["Subnet"]["SubnetId"]] = zone
        self.route_table = ec2.create_route_table(VpcId=self.vpc)["RouteTable"]["RouteTableId"]
        for subnet in self.zone_of:
            ec2.associate_route_table(RouteTableId=self.route_table, SubnetId=subnet)
        group = ec2.create_security_group(GroupName=f"fn-{uuid.uuid4().hex[:8]}", Description="f", VpcId=self.vpc)
        self.function_group = group["GroupId"]

    def variables(self) -> list[str]:
        return [
            f"-var=lambda_subnet_ids={json.dumps(list(self.zone_of))}",
            f"-var=lambda_security_group_ids={json.dumps([self.function_group])}",
        ]


@pytest.fixture(scope="module")
def network(aws_endpoint) -> Network:
    return Network(aws_endpoint.client("ec2"))


@pytest.fixture(scope="module")
def in_vpc(planned, network) -> dict[str, dict]:
    return planned.plan(*network.variables(), out="vpc.bin")


def services_the_functions_call() -> set[str]:
    """The AWS services the functions' code makes clients for, and Secrets Manager (the database secret)."""
    code = " ".join(path.read_text() for path in FUNCTIONS_DIR.rglob("*.py"))
    return set(re.findall(r"""boto3\.client\(\s*["'](\w+)["']""", code)) | {"secretsmanager"}


def test_functions_in_private_subnets_get_an_endpoint_for_every_aws_api_they_call(in_vpc, network):
    assert services_the_functions_call() - {"s3"} <= INTERFACE_SERVICES
    gateway = in_vpc["aws_vpc_endpoint.s3[0]"]
    assert (gateway["vpc_endpoint_type"], gateway["service_name"]) == ("Gateway", f"com.amazonaws.{REGION}.s3")
    assert (gateway["vpc_id"], gateway["route_table_ids"]) == (network.vpc, [network.route_table])
    for service in INTERFACE_SERVICES:
        endpoint = in_vpc[f'aws_vpc_endpoint.interface["{service}"]']
        assert endpoint["service_name"] == f"com.amazonaws.{REGION}.{service}"
        assert endpoint["vpc_endpoint_type"] == "Interface" and endpoint["private_dns_enabled"] is True
        zones = [network.zone_of[subnet] for subnet in endpoint["subnet_ids"]]
        assert sorted(zones) == [f"{REGION}a", f"{REGION}b"], "one subnet per availability zone"
    assert {address for address in in_vpc if address.startswith("aws_vpc_endpoint.interface")} == {
        f'aws_vpc_endpoint.interface["{service}"]' for service in INTERFACE_SERVICES
    }
    group = in_vpc["aws_security_group.vpc_endpoints[0]"]
    assert group["vpc_id"] == network.vpc
    (rule,) = group["ingress"]
    assert (rule["protocol"], rule["from_port"], rule["to_port"]) == ("tcp", 443, 443)
    assert rule["security_groups"] == [network.function_group] and not rule["cidr_blocks"]
    for key in STACK["functions"]:
        assert in_vpc[f'aws_lambda_function.stack["{key}"]']["vpc_config"][0]["subnet_ids"] == sorted(network.zone_of)
        assert f'aws_iam_role_policy_attachment.function_vpc["{key}"]' in in_vpc


def test_no_endpoint_without_subnets_or_with_a_nat_of_ones_own(planned, network):
    without_subnets = planned.plan(out="no-vpc.bin")
    with_nat = planned.plan(*network.variables(), "-var=lambda_subnets_have_nat=true", out="nat.bin")
    for plan in (without_subnets, with_nat):
        assert not [a for a in plan if a.startswith(("aws_vpc_endpoint.", "aws_security_group.vpc_endpoints"))]
    assert not [a for a in without_subnets if a.startswith("aws_iam_role_policy_attachment.function_vpc")]
    assert with_nat['aws_lambda_function.stack["ingest"]']["vpc_config"][0]["subnet_ids"] == sorted(network.zone_of)


# -- least privilege -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def applied_policies(planned) -> tuple[dict[str, dict], dict[str, dict]]:
    """A plan whose policies are known: the policies (and what they name) applied first under a prefix of their
    own, since a first plan cannot know ARNs. Returns (planned values by address, policy documents by function)."""
    prefix = [f"-var=name_prefix=lp-{uuid.uuid4().hex[:8]}"]
    targets = [f'-target=aws_iam_role_policy.function["{key}"]' for key in STACK["functions"]]
    result = planned.run("apply", "-auto-approve", *prefix, *targets)
    assert result.returncode == 0, f"terraform apply failed:\n{result.stderr}\n{result.stdout[-3000:]}"
    result = planned.run("plan", "-out=policies.bin", *prefix, *targets)
    assert result.returncode == 0, result.stderr
    plan = json.loads(terraform(["show", "-json", "policies.bin"], planned.dir, planned.env))
    values = {r["address"]: r["values"] for r in plan["planned_values"]["root_module"]["resources"]}
    policies = {
        key: json.loads(values[f'aws_iam_role_policy.function["{key}"]']["policy"]) for key in STACK["functions"]
    }
    return values, policies


def allowed_resources(key: str, values: dict[str, dict]) -> set[str]:
    """What function `key` may name: what every function gets, its trigger, its `access` list."""
    fn = STACK["functions"][key]
    queue = lambda name: values[f'aws_sqs_queue.stack["{name}"]']["arn"]  # noqa: E731
    allowed = {
        values[f'aws_cloudwatch_log_group.function["{key}"]']["arn"] + ":*",
        values["aws_secretsmanager_secret.database"]["arn"],
        values["aws_kms_key.stack"]["arn"],
        values["aws_sqs_queue.async_failures"]["arn"],
    }
    trigger = fn.get("kinesis_trigger")
    if trigger:
        allowed.add(values["aws_kinesis_stream.telemetry"]["arn"])
        if trigger.get("on_failure_queue"):
            allowed.add(queue(trigger["on_failure_queue"]))
    bucket = values["aws_s3_bucket.archive"]["arn"]
    by_access = {"bucket": {bucket, f"{bucket}/*"}, "alerts_topic": {values["aws_sns_topic.alerts"]["arn"]},
                 "stream": {values["aws_kinesis_stream.telemetry"]["arn"]}}  # fmt: skip
    for name in fn.get("access") or []:
        allowed |= by_access[name] if name in by_access else {queue(name)}
    return allowed


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def violations(key: str, policy: dict, values: dict[str, dict]) -> list[str]:
    """Every way `policy` oversteps function `key`'s access list, or misses part of it."""
    allowed, named, found = allowed_resources(key, values), set(), []
    for statement in policy["Statement"]:
        if statement["Effect"] != "Allow" or {"NotResource", "NotAction"} & set(statement):
            found.append(f"{statement.get('Sid')}: only plain Allow statements")
        resources, actions = as_list(statement["Resource"]), as_list(statement["Action"])
        if "*" in resources:  # documented in iam.tf: X-Ray takes no resource ARN
            if (
                statement.get("Sid") != "UploadTraces"
                or resources != ["*"]
                or not all(action.startswith("xray:") for action in actions)
            ):
                found.append(f"{statement.get('Sid')}: '*' outside the X-Ray statement")
            continue
        found += [f"{statement.get('Sid')} names {arn}" for arn in sorted(set(resources) - allowed)]
        found += [f"{statement.get('Sid')} grants {action}" for action in actions if "*" in action]
        named |= set(resources)
    found += [f"nothing granted on {arn}" for arn in sorted(allowed - named)]
    return found


@pytest.mark.parametrize("key", list(STACK["functions"]))
def test_every_statement_names_only_resources_of_the_functions_access_list(applied_policies, key):
    values, policies = applied_policies
    assert violations(key, policies[key], values) == []


def test_the_check_catches_a_resource_outside_the_access_list_and_a_wildcard(applied_policies):
    values, policies = applied_policies
    bucket = values["aws_s3_bucket.archive"]["arn"]
    widened = json.loads(json.dumps(policies["alerts"]))
    publish = next(s for s in widened["Statement"] if s["Sid"] == "PublishAlerts")
    publish["Resource"] = [*as_list(publish["Resource"]), bucket]
    widened["Statement"].append({"Sid": "Everything", "Effect": "Allow", "Action": "sqs:*", "Resource": "*"})
    assert violations("alerts", widened, values) == [
        f"PublishAlerts names {bucket}",
        "Everything: '*' outside the X-Ray statement",
    ]
