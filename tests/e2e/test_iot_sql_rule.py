"""A topic rule a user creates through the IoT API (not the stack), using several functions: real MQTT 5 publishes
reach Kinesis with IoT Core's results, through the whole local cloud (`localcloud up`): mosquitto and its plugin,
the rules engine in the runtime, moto, Secrets Manager, DynamoDB and a Lambda function run by the invoker.

The rule goes live on the runtime's /reload, as after `localcloud deploy`."""

from __future__ import annotations

import json
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from localcloud.config import REPO_ROOT
from localcloud.servers.moto_patches.awslambda_deploy import hot_reload_code
from tests.fixtures.local_cloud import LocalCloud, wait_until

pytestmark = pytest.mark.e2e

ROLE = "arn:aws:iam::123456789012:role/iot-sql-e2e"
ASSUME_ROLE = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def probe_function(cloud: LocalCloud, name: str) -> str:
    """The probe Lambda (tests/probe_lambdas/probe), warm; its ARN."""
    role = cloud.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(ASSUME_ROLE))["Role"]
    created = cloud.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role["Arn"], Handler="probe.handler.lambda_handler",
        Code=hot_reload_code(REPO_ROOT / "tests" / "probe_lambdas"), Timeout=10,
    )  # fmt: skip
    # A first call starts its worker: the rule's call must finish within IoT Core's 2 seconds.
    cloud.client("lambda").invoke(FunctionName=name, Payload=b'{"action": "echo"}')
    return created["FunctionArn"]


def reload_rules(cloud: LocalCloud) -> None:
    settings = cloud.settings
    answer = requests.post(
        f"{settings['LOCALCLOUD_CONTROL_URL']}/reload",
        headers={"Authorization": f"Bearer {settings['LOCALCLOUD_CONTROL_TOKEN']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def rule_counts(cloud: LocalCloud, rule: str) -> dict[str, int]:
    return cloud.status()["runtime"]["rules_engine"]["rules"][rule]


def records(kinesis: Any, stream: str) -> list[tuple[str, dict[str, Any]]]:
    iterator = kinesis.get_shard_iterator(
        StreamName=stream, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    return [(r["PartitionKey"], json.loads(r["Data"])) for r in kinesis.get_records(ShardIterator=iterator)["Records"]]


def test_an_api_created_rule_with_functions_routes_real_publishes_into_kinesis(local_cloud: LocalCloud) -> None:
    tag = uuid.uuid4().hex[:8]
    kinesis, iot = local_cloud.client("kinesis"), local_cloud.client("iot")
    stream, secret, table, rule = f"iot-sql-{tag}", f"iot-sql-key-{tag}", f"iot-sql-devices-{tag}", f"iot_sql_{tag}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    local_cloud.client("secretsmanager").create_secret(Name=secret, SecretString='{"api": "k-42"}')
    dynamodb = local_cloud.client("dynamodb")
    dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")  # fmt: skip
    dynamodb.put_item(TableName=table, Item={"id": {"S": "dev-7"}, "site": {"S": "north"}})
    function_arn = probe_function(local_cloud, f"iot-sql-probe-{tag}")
    sql = (
        "SELECT upper(topic(2)) AS device, round(temperature * 1.8 + 32) AS temp_f, temperature, 0.1 + 0.2 AS exact,"
        " CASE mode WHEN 'eco' THEN 'saving' ELSE 'normal' END AS mode_name, cast(rss AS String) AS rss_text,"
        " md5(topic(2)) AS hashed, substring(firmware, 0, indexof(firmware, '.')) AS major,"
        f" get_secret('{secret}', 'SecretString', 'api', '{ROLE}') AS key,"
        f" get_dynamodb('{table}', 'id', topic(2), '{ROLE}').site AS site,"
        f" aws_lambda('{function_arn}', {{'action': 'echo', 'seq': seq}}).event.seq AS echoed,"
        " get_mqtt_property('content_type') AS content_type, get_user_properties('fw') AS fw,"
        " clientid() AS client, sourceip() AS ip, accountid() AS account, sql_version() AS version"
        f" FROM 'iotsql-{tag}/+/telemetry' WHERE startswith(topic(2), 'dev-') AND rss > -90"
    )
    iot.create_topic_rule(ruleName=rule, topicRulePayload={
        "sql": sql, "awsIotSqlVersion": "2016-03-23", "ruleDisabled": False,
        "actions": [{"kinesis": {"streamName": stream, "partitionKey": "${lower(topic(2))}-${seq % 2}", "roleArn": ROLE}}],
    })  # fmt: skip
    # IoT Core stops waiting for a rule's Lambda call after 2 seconds: the rule then performs no action.
    slow_sql = f"SELECT aws_lambda('{function_arn}', {{'action': 'sleep', 'seconds': 3}}) AS r FROM 'iotsql-{tag}/slow'"
    iot.create_topic_rule(ruleName=f"{rule}_slow", topicRulePayload={
        "sql": slow_sql, "awsIotSqlVersion": "2016-03-23",
        "actions": [{"kinesis": {"streamName": stream, "partitionKey": "slow", "roleArn": ROLE}}],
    })  # fmt: skip
    reload_rules(local_cloud)
    engine = local_cloud.status()["runtime"]["rules_engine"]
    assert {rule, f"{rule}_slow"} <= set(engine["rules"]) and not {rule, f"{rule}_slow"} & set(engine["load_errors"])
    settings = local_cloud.settings
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sensor-{tag}", protocol=mqtt.MQTTv5)
    publisher.connect(settings["MQTT_HOST"], int(settings["MQTT_PORT"]))
    publisher.loop_start()
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.UserProperty = [("fw", "2.1.0")]
    reading = {"seq": 3, "temperature": 21.0, "rss": -71.5, "mode": "eco", "firmware": "2.1.0"}
    try:
        for topic, payload in (
            (f"iotsql-{tag}/dev-7/telemetry", reading),
            (f"iotsql-{tag}/dev-7/telemetry", {**reading, "seq": 4, "rss": -95}),  # WHERE drops it
            (f"iotsql-{tag}/gw-1/telemetry", {**reading, "seq": 5}),  # WHERE drops it
        ):
            publisher.publish(topic, json.dumps(payload), qos=1, properties=properties).wait_for_publish(10)
        found = wait_until(lambda: records(kinesis, stream), timeout=30, what="the rule's record in the stream")
        publisher.publish(f"iotsql-{tag}/slow", b"{}", qos=1).wait_for_publish(10)
        wait_until(lambda: rule_counts(local_cloud, f"{rule}_slow")["sql_errors"] == 1, timeout=30,
                   what="the slow Lambda call to fail the rule")  # fmt: skip
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        for name in (rule, f"{rule}_slow"):
            iot.delete_topic_rule(ruleName=name)
        reload_rules(local_cloud)
    assert len(records(kinesis, stream)) == 1
    assert found == [
        (
            "dev-7-1",
            {
                "device": "DEV-7",
                "temp_f": 70,  # round(69.8)
                "temperature": 21,  # 21.0 is an Int in SQL 2016-03-23
                "exact": 0.3,
                "mode_name": "saving",
                "rss_text": "-71.5",
                "hashed": "60673f968b13c34efba278eb7eda30ae",
                "major": "2",
                "key": "k-42",
                "site": "north",
                "echoed": 3,
                "content_type": "application/json",
                "fw": ["2.1.0"],
                "client": f"sensor-{tag}",
                "ip": "127.0.0.1",
                "account": "123456789012",
                "version": "2016-03-23",
            },
        )
    ]
    assert rule not in local_cloud.status()["runtime"]["rules_engine"]["rules"]  # deleted: gone after the reload
