"""Rules created, changed, disabled or deleted through the IoT API go live without a reload call: the real engine
and watcher against the real moto server and mosquitto, a real paho publisher."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import paho.mqtt.client as mqtt
import pytest
from botocore.config import Config
from paho.mqtt.enums import CallbackAPIVersion

from localcloud.runtime.iot.engine import RulesEngine
from localcloud.runtime.iot.rule_watcher import DEFAULT_INTERVAL_S, RuleWatcher
from localcloud.servers.procs import free_port
from tests.fixtures.local_cloud import wait_until

ROLE = "arn:aws:iam::123456789012:role/rule-watcher"
# What AWS promises for a changed rule ("within seconds"), with room for a busy 2-core machine.
LIVE_WITHIN_S = 30


def test_the_watcher_looks_often_enough_for_rules_to_go_live_within_10_seconds():
    assert DEFAULT_INTERVAL_S <= 5  # a pass, then the reload and subscription acknowledgement


class Rig:
    """A stream, a topic prefix and the rules of one test; the engine and the watcher under test."""

    def __init__(self, aws_endpoint: Any, mqtt_broker: Any) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.iot = aws_endpoint.client("iot")
        self.kinesis = aws_endpoint.client("kinesis")
        self.stream = f"watched-{self.tag}"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.rules: list[str] = []
        self.sent: dict[str, set[int]] = {}
        self.seq = 0
        self.engine = RulesEngine(
            aws_endpoint.url, "us-east-1", mqtt_broker.host, mqtt_broker.port, client_id=f"watched-{self.tag}"
        )
        self.watcher = RuleWatcher(self.iot, self.engine.reload)
        self.publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{self.tag}", protocol=mqtt.MQTTv5)
        self.publisher.connect(mqtt_broker.host, mqtt_broker.port)
        self.publisher.loop_start()

    def payload(self, part: str, extra_select: str = "") -> dict[str, Any]:
        sql = f"SELECT seq, topic(2) AS part{extra_select} FROM 'watched-{self.tag}/{part}/telemetry'"
        kinesis = {"streamName": self.stream, "partitionKey": "${topic(2)}", "roleArn": ROLE}
        return {"sql": sql, "awsIotSqlVersion": "2016-03-23", "ruleDisabled": False, "actions": [{"kinesis": kinesis}]}

    def create(self, part: str) -> str:
        name = f"watched_{self.tag}_{part}"
        self.iot.create_topic_rule(ruleName=name, topicRulePayload=self.payload(part))
        self.rules.append(name)
        return name

    def publish(self, part: str) -> int:
        self.seq += 1
        self.sent.setdefault(part, set()).add(self.seq)
        topic = f"watched-{self.tag}/{part}/telemetry"
        self.publisher.publish(topic, json.dumps({"seq": self.seq}), qos=1).wait_for_publish(timeout=10)
        return self.seq

    def records(self, part: str) -> list[dict[str, Any]]:
        (shard,) = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = [json.loads(record["Data"]) for record in self.kinesis.get_records(ShardIterator=iterator)["Records"]]
        return [record for record in records if record["part"] == part]

    def goes_live(self, part: str, **expected: Any) -> dict[str, Any]:
        """Publish on `part` (again and again: the subscription comes with the reload) until a record of one of
        these messages, with the `expected` fields, is in the stream."""
        first = self.seq + 1

        def landed() -> dict[str, Any] | None:
            self.publish(part)
            return next((r for r in self.records(part) if r["seq"] >= first and expected.items() <= r.items()), None)

        return wait_until(landed, timeout=LIVE_WITHIN_S, interval=0.5, what=f"rule for {part} live with {expected}")

    def not_run(self, part: str) -> None:
        """A message on `part` published now is never forwarded: the control rule's message, published after it,
        arrives first."""
        seq = self.publish(part)
        control = self.publish("control")
        wait_until(lambda: control in {r["seq"] for r in self.records("control")}, what="the control message")
        assert seq not in {record["seq"] for record in self.records(part)}

    def close(self) -> None:
        self.watcher.stop()
        self.engine.stop()
        self.publisher.disconnect()
        self.publisher.loop_stop()
        for name in self.rules:
            with contextlib.suppress(self.iot.exceptions.ResourceNotFoundException):
                self.iot.delete_topic_rule(ruleName=name)


@pytest.fixture
def rig(aws_endpoint, mqtt_broker) -> Iterator[Rig]:
    made = Rig(aws_endpoint, mqtt_broker)
    try:
        yield made
    finally:
        made.close()


def test_rules_created_changed_disabled_enabled_and_deleted_through_the_api_go_live_on_their_own(rig: Rig):
    rig.watcher.start()
    rig.engine.start()
    rule = rig.create("a")
    rig.create("control")
    rig.goes_live("a")
    rig.goes_live("control")

    rig.iot.replace_topic_rule(ruleName=rule, topicRulePayload=rig.payload("a", ", 'v2' AS version"))
    assert rig.goes_live("a", version="v2")

    rig.iot.disable_topic_rule(ruleName=rule)
    wait_until(lambda: rig.engine.status()["rules"][rule]["disabled"], timeout=LIVE_WITHIN_S, what="rule disabled")
    rig.not_run("a")

    rig.iot.enable_topic_rule(ruleName=rule)
    rig.goes_live("a")

    rig.iot.delete_topic_rule(ruleName=rule)
    wait_until(lambda: rule not in rig.engine.status()["rules"], timeout=LIVE_WITHIN_S, what="rule gone")
    rig.not_run("a")


def test_an_unchanged_endpoint_is_not_reloaded_and_an_unreadable_one_keeps_the_rules(rig: Rig, aws_endpoint):
    rig.engine.start()
    rig.watcher.start()
    assert rig.watcher.check() is False  # nothing changed since start
    rig.create("a")
    assert rig.watcher.check() is True
    assert rig.watcher.check() is False

    unreachable = RuleWatcher(
        boto3.client("iot", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test",
                     config=Config(connect_timeout=1, retries={"max_attempts": 1})),
        rig.engine.reload,
    )  # fmt: skip
    assert unreachable.check() is False  # logged, nothing reloaded, the engine keeps its rules
    assert f"watched_{rig.tag}_a" in rig.engine.status()["rules"]
