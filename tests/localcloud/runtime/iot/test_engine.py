"""The rules engine against a real mosquitto, a real moto server and a real paho publisher."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from localcloud.config import REPO_ROOT
from localcloud.runtime.iot.engine import RuleLoadError, RulesEngine
from localcloud.servers.procs import terminate_group

ROLE = "arn:aws:iam::123456789012:role/iot-rules"
FIXED_NOW_S = 1_700_000_000.25
PUBLISHER_ID = "sim-publisher-1"


def wait_until(
    condition: Callable[[], Any],
    timeout: float = 30.0,
    what: str = "condition",
    state: Callable[[], Any] = lambda: None,
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; state: {state()}")


class Cloud:
    """Streams, queues and topic rules of one test, in the session's moto server; rules deleted afterwards."""

    def __init__(self, aws_endpoint: Any) -> None:
        self.endpoint = aws_endpoint
        self.kinesis = aws_endpoint.client("kinesis")
        self.sqs = aws_endpoint.client("sqs")
        self.iot = aws_endpoint.client("iot")
        self.tag = uuid.uuid4().hex[:8]
        self.rules: list[str] = []

    def stream(self, shards: int = 1) -> str:
        name = f"s-{self.tag}-{len(self.rules)}-{uuid.uuid4().hex[:4]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        wait_until(
            lambda: (
                self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
                == "ACTIVE"
            )
        )
        return name

    def queue(self) -> str:
        return self.sqs.create_queue(QueueName=f"errors-{self.tag}-{uuid.uuid4().hex[:4]}")["QueueUrl"]

    def rule(
        self,
        sql: str,
        stream: str,
        partition_key: str = "${topic(2)}",
        error_queue: str | None = None,
        actions: list | None = None,
    ) -> str:
        name = f"r_{self.tag}_{len(self.rules)}"
        payload: dict[str, Any] = {
            "sql": sql,
            "awsIotSqlVersion": "2016-03-23",
            "ruleDisabled": False,
            "actions": actions or [{"kinesis": {"streamName": stream, "partitionKey": partition_key, "roleArn": ROLE}}],
        }
        if error_queue:
            payload["errorAction"] = {"sqs": {"queueUrl": error_queue, "roleArn": ROLE, "useBase64": False}}
        self.iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
        self.rules.append(name)
        return name

    def records(self, stream: str) -> list[tuple[str, dict[str, Any]]]:
        """(partition key, data) of every record, shard by shard in sequence order."""
        found = []
        for shard in self.kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = self.kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                found += [(record["PartitionKey"], json.loads(record["Data"])) for record in page["Records"]]
                if not page["Records"]:
                    break
                iterator = page.get("NextShardIterator")
        return found


@pytest.fixture
def cloud(aws_env: Any) -> Iterator[Cloud]:
    made = Cloud(aws_env)
    yield made
    for name in made.rules:
        made.iot.delete_topic_rule(ruleName=name)


@pytest.fixture
def publisher(mqtt_broker: Any) -> Iterator[mqtt.Client]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=PUBLISHER_ID, protocol=mqtt.MQTTv5)
    client.connect(mqtt_broker.host, mqtt_broker.port)
    client.loop_start()
    yield client
    client.disconnect()
    client.loop_stop()


def publish(client: mqtt.Client, topic: str, payload: dict[str, Any] | bytes) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload)
    client.publish(topic, body, qos=1).wait_for_publish(timeout=10)


def start_engine(cloud: Cloud, mqtt_broker: Any, **kwargs: Any) -> RulesEngine:
    engine = RulesEngine(
        cloud.endpoint.url, "us-east-1", mqtt_broker.host, mqtt_broker.port, client_id=f"engine-{cloud.tag}", **kwargs
    )
    engine.start()
    return engine


def counts(engine: RulesEngine, rule: str) -> dict[str, Any]:
    return engine.status()["rules"][rule]


def test_telemetry_rule_puts_records_with_device_partition_keys_in_order(
    cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client
) -> None:
    stream = cloud.stream(shards=2)
    rule = cloud.rule(
        "SELECT *, topic(2) AS device_id, timestamp() AS received_at FROM 'devices/+/telemetry'",
        stream,
        error_queue=cloud.queue(),
    )
    engine = start_engine(cloud, mqtt_broker, clock=lambda: FIXED_NOW_S)
    devices = [f"dev-{cloud.tag}-{n}" for n in range(5)]
    try:
        for seq in range(20):
            for device in devices:
                publish(publisher, f"devices/{device}/telemetry", {"seq": seq, "rss": -60 - seq, "meta": {"fw": "1.2"}})
        wait_until(lambda: counts(engine, rule)["forwarded"] >= 100, what="100 records forwarded", state=engine.status)
    finally:
        engine.stop()
    records = [(key, data) for key, data in cloud.records(stream) if key in devices]
    assert len(records) == 100
    for key, data in records:
        assert data == {
            "seq": data["seq"],
            "rss": -60 - data["seq"],
            "meta": {"fw": "1.2"},
            "device_id": key,
            "received_at": 1_700_000_000_250,
        }
    for device in devices:
        assert [data["seq"] for key, data in records if key == device] == list(range(20))
    assert counts(engine, rule) | {"matched": 0} == counts(engine, rule) | {
        "matched": 0,
        "forwarded": 100,
        "sql_errors": 0,
        "error_action": 0,
        "dropped": 0,
    }


def test_where_clause_and_topic_wildcards_select_the_right_messages(
    cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client
) -> None:
    prefix = f"site-{cloud.tag}"
    strong, everything = cloud.stream(), cloud.stream()
    strong_rule = cloud.rule(
        f"SELECT seq, clientid() AS client FROM '{prefix}/+/telemetry' WHERE rss > -80 AND test IS UNDEFINED", strong
    )
    cloud.rule(f"SELECT *, topic() AS topic FROM '{prefix}/#'", everything, partition_key="${topic(1)}")
    engine = start_engine(cloud, mqtt_broker)
    try:
        publish(publisher, f"{prefix}/d1/telemetry", {"seq": 1, "rss": -70})
        publish(publisher, f"{prefix}/d1/telemetry", {"seq": 2, "rss": -90})
        publish(publisher, f"{prefix}/d1/telemetry", {"seq": 3, "rss": -50, "test": True})
        publish(publisher, f"{prefix}/d1/telemetry", {"seq": 4, "rss": "strong"})
        publish(publisher, f"{prefix}/d1/status", {"seq": 5, "rss": -10})
        publish(publisher, prefix, {"seq": 6})
        publish(publisher, f"other-{cloud.tag}/d1/telemetry", {"seq": 7, "rss": -10})
        wait_until(
            lambda: len(cloud.records(everything)) >= 6,
            what="six records on the # rule stream",
            state=lambda: (engine.status(), cloud.records(everything)),
        )
        wait_until(lambda: engine.status()["pending_records"] == 0)
    finally:
        engine.stop()
    assert [data["seq"] for _, data in cloud.records(everything)] == [1, 2, 3, 4, 5, 6]
    assert {data["topic"] for _, data in cloud.records(everything)} == {
        f"{prefix}/d1/telemetry",
        f"{prefix}/d1/status",
        prefix,
    }
    client = PUBLISHER_ID if mqtt_broker.has_clientid_plugin else None
    assert [data for _, data in cloud.records(strong)] == [{"seq": 1} | ({"client": client} if client else {})]
    assert counts(engine, strong_rule)["filtered"] == 3


def test_failed_kinesis_action_sends_the_aws_error_message_to_sqs(
    cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client
) -> None:
    queue = cloud.queue()
    missing = f"missing-{cloud.tag}"
    rule = cloud.rule(f"SELECT * FROM 'broken-{cloud.tag}/+'", missing, error_queue=queue)
    engine = start_engine(cloud, mqtt_broker)
    original = {"seq": 9, "note": "ü"}
    try:
        publish(publisher, f"broken-{cloud.tag}/dev-1", original)
        messages = wait_until(
            lambda: cloud.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"),
            what="error action message",
        )
    finally:
        engine.stop()
    body = json.loads(messages[0]["Body"])
    assert set(body) == {"ruleName", "topic", "cloudwatchTraceId", "clientId", "base64OriginalPayload", "failures"}
    assert body["ruleName"] == rule
    assert body["topic"] == f"broken-{cloud.tag}/dev-1"
    assert json.loads(base64.b64decode(body["base64OriginalPayload"])) == original
    assert str(uuid.UUID(body["cloudwatchTraceId"])) == body["cloudwatchTraceId"]
    if mqtt_broker.has_clientid_plugin:
        assert body["clientId"] == PUBLISHER_ID
    [failure] = body["failures"]
    assert failure["failedAction"] == "KinesisAction"
    assert failure["failedResource"] == missing
    assert "ResourceNotFound" in failure["errorMessage"]
    assert counts(engine, rule)["error_action"] == 1


def test_a_deleted_stream_mid_stream_routes_the_rest_to_the_error_queue(
    cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client
) -> None:
    stream, queue = cloud.stream(), cloud.queue()
    rule = cloud.rule(f"SELECT * FROM 'del-{cloud.tag}/+'", stream, error_queue=queue)
    engine = start_engine(cloud, mqtt_broker)
    try:
        publish(publisher, f"del-{cloud.tag}/a", {"seq": 1})
        wait_until(lambda: counts(engine, rule)["forwarded"] == 1)
        cloud.kinesis.delete_stream(StreamName=stream)
        publish(publisher, f"del-{cloud.tag}/a", {"seq": 2})
        wait_until(lambda: counts(engine, rule)["error_action"] == 1, what="error action after the stream was deleted")
    finally:
        engine.stop()
    body = json.loads(cloud.sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]["Body"])
    assert json.loads(base64.b64decode(body["base64OriginalPayload"])) == {"seq": 2}


def test_engine_killed_mid_stream_loses_nothing(cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client) -> None:
    """SIGKILL the engine process while it works and while messages keep coming; QoS 1 + the session redeliver."""
    stream = cloud.stream(shards=2)
    cloud.rule(f"SELECT *, topic(2) AS device_id FROM 'crash-{cloud.tag}/+/telemetry'", stream)
    argv = [sys.executable, "-m", "localcloud.runtime.iot.engine", "--endpoint-url", cloud.endpoint.url,
            "--mqtt-host", mqtt_broker.host, "--mqtt-port", str(mqtt_broker.port), "--client-id", f"engine-{cloud.tag}"]  # fmt: skip

    def run_engine() -> subprocess.Popen:
        return subprocess.Popen(
            argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )

    def seqs() -> set[int]:
        return {data["seq"] for _, data in cloud.records(stream)}

    def send(first: int, count: int) -> None:
        for seq in range(first, first + count):
            publish(publisher, f"crash-{cloud.tag}/dev-{seq % 7}/telemetry", {"seq": seq})

    def engine_forwards() -> bool:
        # The session only exists once the engine subscribed: probe until a record shows up.
        publish(publisher, f"crash-{cloud.tag}/probe/telemetry", {"seq": -1})
        return -1 in seqs()

    engine = run_engine()
    try:
        wait_until(engine_forwards, what="the engine process to forward")
        send(0, 200)
        wait_until(lambda: len(seqs()) > 1, what="first records")
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait(timeout=10)
        send(200, 200)  # published while no engine runs: queued in the persistent session
        engine = run_engine()
        send(400, 200)
        wait_until(lambda: seqs() - {-1} == set(range(600)), timeout=60, what="all 600 readings in the stream")
    finally:
        terminate_group(engine.pid)
        engine.wait(timeout=10)


def test_unsupported_sql_is_reported_not_skipped(cloud: Cloud, mqtt_broker: Any, publisher: mqtt.Client) -> None:
    stream = cloud.stream()
    good = cloud.rule(f"SELECT seq FROM 'mixed-{cloud.tag}/+'", stream)
    bad_sql = cloud.rule(f"SELECT machinelearning_predict('m', 'r', *) AS p FROM 'mixed-{cloud.tag}/+'", stream)
    bad_action = cloud.rule(
        f"SELECT * FROM 'mixed-{cloud.tag}/+'",
        stream,
        actions=[{"lambda": {"functionArn": "arn:aws:lambda:us-east-1:123456789012:function:f"}}],
    )
    engine = RulesEngine(
        cloud.endpoint.url, "us-east-1", mqtt_broker.host, mqtt_broker.port, client_id=f"engine-{cloud.tag}"
    )
    with pytest.raises(RuleLoadError) as raised:
        engine.start()
    try:
        assert set(raised.value.errors) == {bad_sql, bad_action}
        assert "machinelearning_predict() needs Amazon Machine Learning" in raised.value.errors[bad_sql]
        assert "lambda" in raised.value.errors[bad_action]
        assert engine.status()["load_errors"] == raised.value.errors
        assert set(engine.status()["rules"]) >= {good}
        publish(publisher, f"mixed-{cloud.tag}/d", {"seq": 1, "name": "x"})
        wait_until(lambda: counts(engine, good)["forwarded"] == 1, what="the good rule to run")
        for name in (bad_sql, bad_action):
            cloud.iot.delete_topic_rule(ruleName=name)
            cloud.rules.remove(name)
        engine.reload()
        assert engine.status()["load_errors"] == {}
    finally:
        engine.stop()


def test_functions_see_the_publishers_mqtt5_properties_and_the_endpoints_services(
    cloud: Cloud, mqtt_broker: Any
) -> None:
    """A rule reading what the broker knows about the publisher and what moto stores, from a real MQTT 5 publish."""
    secret = f"iot-key-{cloud.tag}"
    cloud.endpoint.client("secretsmanager").create_secret(Name=secret, SecretString='{"api": "k-1"}')
    table = f"devices-{cloud.tag}"
    dynamodb = cloud.endpoint.client("dynamodb")
    dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")  # fmt: skip
    dynamodb.put_item(TableName=table, Item={"id": {"S": "dev-1"}, "site": {"S": "north"}, "limit": {"N": "-80.0"}})
    thing = f"thing-{cloud.tag}"
    cloud.iot.create_thing(thingName=thing)
    cloud.endpoint.client("iot-data").update_thing_shadow(
        thingName=thing, payload=json.dumps({"state": {"reported": {"mode": "eco"}}})
    )
    stream = cloud.stream()
    rule = cloud.rule(
        "SELECT get_mqtt_property('content_type') AS ct, get_mqtt_property('format_indicator') AS fi,"
        " get_mqtt_property('response_topic') AS rt, get_mqtt_property('correlation_data') AS cd,"
        " get_user_properties('site') AS sites, get_user_properties() AS all_props, clientid() AS client,"
        " sourceip() AS ip, principal() AS who, traceid() AS trace, accountid() AS account, sql_version() AS v,"
        " get_secret(" + f"'{secret}'" + ", 'SecretString', 'api', 'arn:aws:iam::123456789012:role/r') AS key,"
        " get_dynamodb(" + f"'{table}'" + ", 'id', topic(2), 'arn:aws:iam::123456789012:role/r') AS device,"
        " get_thing_shadow(" + f"'{thing}'" + ", 'arn:aws:iam::123456789012:role/r').state.reported.mode AS mode"
        f" FROM 'props-{cloud.tag}/+' WHERE rss > -80.0",
        stream,
    )
    failing = cloud.rule(
        f"SELECT get_secret('missing-{cloud.tag}', 'SecretString', 'r') AS s FROM 'props-{cloud.tag}/+'", stream
    )
    engine = start_engine(cloud, mqtt_broker)
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=PUBLISHER_ID, protocol=mqtt.MQTTv5)
    publisher.username_pw_set("device-user")
    publisher.connect(mqtt_broker.host, mqtt_broker.port)
    publisher.loop_start()
    properties = Properties(PacketTypes.PUBLISH)
    properties.ContentType = "application/json"
    properties.PayloadFormatIndicator = 1
    properties.ResponseTopic = "replies/dev-1"
    properties.CorrelationData = b"\x01req-9"
    properties.UserProperty = [("site", "north"), ("x-iotkpi-clientid", "spoofed"), ("site", "south")]
    try:
        publisher.publish(
            f"props-{cloud.tag}/dev-1", json.dumps({"rss": -70}), qos=1, properties=properties
        ).wait_for_publish(10)
        wait_until(lambda: counts(engine, rule)["forwarded"] == 1, what="the record", state=engine.status)
        wait_until(lambda: counts(engine, failing)["sql_errors"] == 1, what="the failing rule's error")
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        engine.stop()
    [(_, data)] = cloud.records(stream)
    plugin = mqtt_broker.has_clientid_plugin
    trace = data.pop("trace")
    assert str(uuid.UUID(trace)) == trace
    assert data == {
        "ct": "application/json",
        "fi": "UTF8_DATA",
        "rt": "replies/dev-1",
        "cd": "AXJlcS05",
        "sites": ["north", "south"],
        # The broker's own properties are not the publisher's: hidden from get_user_properties().
        "all_props": [{"site": "north"}, {"site": "south"}],
        **({"client": PUBLISHER_ID, "ip": "127.0.0.1", "who": "device-user"} if plugin else {}),
        "account": "123456789012",
        "v": "2016-03-23",
        "key": "k-1",
        "device": {"id": "dev-1", "site": "north", "limit": -80},
        "mode": "eco",
    }
