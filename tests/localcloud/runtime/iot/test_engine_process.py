"""The rules engine in its own process, as the runtime drives it: the real child process against the real moto
server and mosquitto, a real paho publisher."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from localcloud.config import REPO_ROOT
from localcloud.runtime.iot import engine_process
from localcloud.runtime.iot.engine import RuleLoadError, RulesEngine
from localcloud.runtime.iot.engine_process import RulesEngineProcess
from tests.fixtures.local_cloud import wait_until

ROLE = "arn:aws:iam::123456789012:role/engine-process"


class Rig:
    """A stream and the rules of one test, a publisher, and the engine process under test."""

    def __init__(self, aws_endpoint: Any, mqtt_broker: Any) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.iot = aws_endpoint.client("iot")
        self.kinesis = aws_endpoint.client("kinesis")
        self.stream = f"engine-process-{self.tag}"
        self.kinesis.create_stream(StreamName=self.stream, ShardCount=1)
        self.rules: list[str] = []
        self.engine_args = (aws_endpoint.url, "us-east-1", mqtt_broker.host, mqtt_broker.port)
        self.engine = RulesEngineProcess(*self.engine_args, client_id=f"engine-process-{self.tag}")
        self.publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{self.tag}", protocol=mqtt.MQTTv5)
        self.publisher.connect(mqtt_broker.host, mqtt_broker.port)
        self.publisher.loop_start()

    def rule(self, part: str, sql: str | None = None) -> str:
        name = f"process_{self.tag}_{part}"
        kinesis = {"streamName": self.stream, "partitionKey": "${topic(2)}", "roleArn": ROLE}
        payload = {
            "sql": sql or f"SELECT seq, topic(2) AS part FROM 'process-{self.tag}/{part}/telemetry'",
            "awsIotSqlVersion": "2016-03-23",
            "actions": [{"kinesis": kinesis}],
        }
        self.iot.create_topic_rule(ruleName=name, topicRulePayload=payload)
        self.rules.append(name)
        return name

    def publish(self, part: str, seqs: range) -> None:
        for seq in seqs:
            topic = f"process-{self.tag}/{part}/telemetry"
            self.publisher.publish(topic, json.dumps({"seq": seq}), qos=1).wait_for_publish(timeout=10)

    def seqs(self, part: str) -> list[int]:
        """The seq of every record of `part` in the stream, in stream order."""
        (shard,) = self.kinesis.list_shards(StreamName=self.stream)["Shards"]
        iterator = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)["Records"]
        return [data["seq"] for data in map(json.loads, (record["Data"] for record in records)) if data["part"] == part]

    def close(self) -> None:
        self.engine.stop()
        self.publisher.disconnect()
        self.publisher.loop_stop()
        for name in self.rules:
            self.iot.delete_topic_rule(ruleName=name)


@pytest.fixture
def rig(aws_env: Any, mqtt_broker: Any) -> Iterator[Rig]:
    made = Rig(aws_env, mqtt_broker)
    yield made
    made.close()


def test_the_engine_runs_in_a_child_process_and_answers_status_and_reload(rig: Rig) -> None:
    first = rig.rule("first")
    rig.engine.start()
    status = rig.engine.status()
    assert status["connected"] and status["pid"] not in (None, os.getpid())
    assert set(status["rules"]) >= {first}
    rig.publish("first", range(3))
    wait_until(lambda: rig.seqs("first") == [0, 1, 2], what="the first rule's records")

    second = rig.rule("second")
    rig.engine.reload()
    assert rig.engine.status()["rules"][second]["topic_filter"] == f"process-{rig.tag}/second/telemetry"
    rig.publish("second", range(2))
    wait_until(lambda: rig.seqs("second") == [0, 1], what="the second rule's records")
    assert rig.engine.status()["rules"][first]["forwarded"] == 3

    pid = rig.engine.pid
    rig.engine.stop()
    assert rig.engine.status()["connected"] is False  # answered without a process, with the reason
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_rule_that_does_not_load_is_named_and_the_good_ones_run(rig: Rig) -> None:
    good = rig.rule("good")
    bad = rig.rule("bad", sql=f"SELECT seq FROM 'process-{rig.tag}/bad/telemetry' WHERE seq IN (1, 2)")
    with pytest.raises(RuleLoadError) as raised:
        rig.engine.start()
    assert set(raised.value.errors) == {bad}
    status = rig.engine.status()
    assert set(status["load_errors"]) == {bad} and good in status["rules"]
    rig.publish("good", range(2))
    wait_until(lambda: rig.seqs("good") == [0, 1], what="the good rule's records")


def test_an_engine_process_that_dies_is_started_again_and_no_message_is_lost(rig: Rig) -> None:
    rig.rule("fleet")
    rig.engine.start()
    rig.publish("fleet", range(0, 5))
    wait_until(lambda: len(rig.seqs("fleet")) == 5, what="the first records")
    killed = rig.engine.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    rig.publish("fleet", range(5, 10))  # queued by the broker in the engine's persistent session meanwhile
    wait_until(lambda: rig.engine.pid != killed and rig.engine.status()["connected"], what="a new engine process")
    wait_until(lambda: set(rig.seqs("fleet")) == set(range(10)), what="every record")


CHILD_OF_A_DYING_RUNTIME = """
import os, sys
from localcloud.runtime.iot.engine_process import RulesEngineProcess
engine = RulesEngineProcess(*sys.argv[1:4], int(sys.argv[4]), client_id=sys.argv[5])
engine.start()
print(engine.pid, flush=True)
os.kill(os.getpid(), 9)  # a runtime killed outright: no stop(), no atexit
"""


def test_the_engine_process_exits_when_the_runtime_that_started_it_is_killed(rig: Rig) -> None:
    rig.rule("orphan")
    runtime = subprocess.run(
        [sys.executable, "-c", CHILD_OF_A_DYING_RUNTIME, *map(str, rig.engine_args), f"orphan-{rig.tag}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert runtime.returncode == -signal.SIGKILL, runtime.stderr
    child = int(runtime.stdout.split()[0])

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        return open(f"/proc/{child}/stat").read().split(") ")[1].startswith("Z")  # exited, not yet reaped

    wait_until(gone, timeout=30, what=f"engine process {child} to exit")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's end, on purpose
def test_an_engine_whose_mqtt_thread_ended_says_so(rig: Rig) -> None:
    rig.rule("ended")
    engine = RulesEngine(*rig.engine_args, client_id=f"engine-ended-{rig.tag}")
    engine.start()
    try:
        assert engine.mqtt_running

        def defect(*_: Any) -> None:
            raise RuntimeError("a defect in the MQTT thread")

        thread = engine._client._thread
        engine._client._handle_on_message = defect  # what an exception escaping paho's network thread does
        rig.publish("ended", range(1))
        wait_until(lambda: not engine.mqtt_running, what="the MQTT thread to end")
        # paho forgets its thread before the exception reaches threading.excepthook: wait for that too, so that
        # pytest reports it (as this test's warning, ignored above) here and not in the next test.
        thread.join(timeout=10)
    finally:
        engine.stop(drain_timeout=1)


class _EngineWithoutMqtt:
    """A RulesEngine whose MQTT thread has ended (what test_an_engine_whose_mqtt_thread_ended_says_so sees)."""

    mqtt_running = False

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    def start(self) -> None:
        pass


def _took_too_long(*_: Any) -> None:
    raise TimeoutError("serve() went on without its engine's MQTT thread")


def test_a_child_whose_engine_lost_its_mqtt_thread_exits_to_be_started_again(monkeypatch) -> None:
    monkeypatch.setattr(engine_process, "RulesEngine", _EngineWithoutMqtt)
    runtime_end, child_end = multiprocessing.Pipe()
    # serve() is a child's main: it runs in the main thread (it sets SIGINT's handler, restored after)
    interrupt, alarm = signal.getsignal(signal.SIGINT), signal.signal(signal.SIGALRM, _took_too_long)
    signal.alarm(10)
    try:
        with pytest.raises(SystemExit) as exited:
            engine_process.serve(child_end, (), {})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGINT, interrupt)
    assert exited.value.code == 1
    assert runtime_end.recv() == ("ok", None)  # it had started
