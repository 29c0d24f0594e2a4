"""The simulator over a real mosquitto broker: a subscriber on devices/+/telemetry receives exactly what the
simulator's report says it sent, bytes included, paced or not, through the API and through the CLI."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import pytest

from localcloud.servers.procs import free_port
from localcloud.tools.simulator import OfflineSchedule, Options, Simulation, publish_simulation
from localcloud.tools.simulator.cli import main
from localcloud.tools.simulator.model import KINDS, LOST_OFFLINE
from localcloud.tools.simulator.publisher import PublishError

START = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)


class Subscriber:
    """Collects (topic, payload) of every message under devices/<prefix>*/telemetry."""

    def __init__(self, host: str, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda client, *_: client.subscribe("devices/+/telemetry", qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _client, _userdata, message) -> None:
        if message.topic.split("/")[1].startswith(self.prefix):
            with self._lock:
                self.received.append((message.topic, bytes(message.payload)))

    def wait_for(self, count: int, timeout: float = 60) -> Counter:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything beyond the expected count would arrive by now
        with self._lock:
            return Counter(self.received)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscriber(mqtt_broker):
    prefix = f"it-{uuid.uuid4().hex[:6]}-"
    sub = Subscriber(mqtt_broker.host, mqtt_broker.port, prefix)
    yield sub
    sub.close()


def options(prefix: str, **overrides) -> Options:
    base = dict(start=START, devices=6, rate_per_minute=30, duration_s=120, seed=3, prefix=prefix,
                duplicates=0.1, late=0.05, late_delay_s=(5.0, 20.0), out_of_order=0.05, malformed=0.05,
                oversize=0.03, clock_skew_s=10, offline=(OfflineSchedule(2, 0.5),))  # fmt: skip
    return Options(**{**base, **overrides})


def test_the_subscriber_receives_exactly_what_the_report_says(mqtt_broker, subscriber, tmp_path):
    simulation = Simulation(options(subscriber.prefix))
    expected = Counter((m.topic, m.payload) for m in simulation.messages() if m.kind != LOST_OFFLINE)
    progress_lines = []
    report = publish_simulation(
        simulation, mqtt_broker.host, mqtt_broker.port, pace=False, window=8, jsonl=tmp_path / "sent.jsonl",
        progress=lambda current: progress_lines.append(current.progress_line()), progress_every_s=0,
    )  # fmt: skip

    assert subscriber.wait_for(sum(expected.values())) == expected
    assert report.sent == report.acknowledged == sum(expected.values())
    assert all(report.counts[kind] for kind in KINDS)  # every behaviour happened in this run
    lines = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
    assert Counter(line["kind"] for line in lines) == report.counts
    assert Counter((line["topic"], line["sha256"]) for line in lines if line["kind"] != LOST_OFFLINE) == Counter(
        {(topic, hashlib.sha256(payload).hexdigest()): n for (topic, payload), n in expected.items()}
    )
    assert progress_lines and progress_lines[-1] == report.progress_line()


def test_paced_run_sends_everything_too(mqtt_broker, subscriber):
    now = datetime.now(UTC)
    simulation = Simulation(
        options(subscriber.prefix, start=now, devices=3, duration_s=2, rate_per_minute=120, offline=())
    )
    expected = Counter((m.topic, m.payload) for m in simulation.messages() if m.kind != LOST_OFFLINE)
    report = publish_simulation(simulation, mqtt_broker.host, mqtt_broker.port, pace=True)
    assert subscriber.wait_for(sum(expected.values())) == expected
    assert report.sent == sum(expected.values())


def test_paced_run_from_a_past_start_sends_the_backlog_at_once(mqtt_broker, subscriber):
    # Simulated time runs from 10 minutes ago to 1 second from now: only the last second waits for the clock.
    start = datetime.now(UTC) - timedelta(minutes=10)
    simulation = Simulation(options(subscriber.prefix, start=start, devices=2, duration_s=601, offline=()))
    expected = Counter((m.topic, m.payload) for m in simulation.messages() if m.kind != LOST_OFFLINE)
    report = publish_simulation(simulation, mqtt_broker.host, mqtt_broker.port, pace=True)
    assert subscriber.wait_for(sum(expected.values())) == expected
    assert report.wall_s < 300, "the 10-minute backlog was paced instead of sent at once"


def test_cli_reports_and_sends(mqtt_broker, subscriber, tmp_path, capsys):
    argv = ["--devices", "4", "--rate", "60", "--duration", "30", "--seed", "11", "--prefix", subscriber.prefix,
            "--duplicates", "0.1", "--malformed", "0.1", "--offline", "1:0.2", "--no-pace",
            "--host", mqtt_broker.host, "--port", str(mqtt_broker.port),
            "--report", str(tmp_path / "sent.jsonl"), "--summary-json", str(tmp_path / "summary.json")]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "sent.jsonl").read_text().splitlines()]
    received = subscriber.wait_for(summary["sent"])
    assert sum(received.values()) == summary["sent"] == len([line for line in lines if line["kind"] != LOST_OFFLINE])
    assert Counter((topic, hashlib.sha256(payload).hexdigest()) for (topic, payload), n in received.items()
                   for _ in range(n)) == Counter((line["topic"], line["sha256"]) for line in lines
                                                 if line["kind"] != LOST_OFFLINE)  # fmt: skip
    assert summary["counts"]["lost_offline"] > 0 and len(summary["offline_gaps"]) == 1
    out = capsys.readouterr().out
    assert f"sent {summary['sent']:,} messages ({summary['sent']:,} acknowledged)" in out


def test_unreachable_broker_is_an_error(capsys):
    simulation = Simulation(options("nobody-", duration_s=5))
    with pytest.raises(PublishError):
        publish_simulation(simulation, "127.0.0.1", free_port(), pace=False)
    assert main(["--duration", "5", "--no-pace", "--host", "127.0.0.1", "--port", str(free_port())]) == 1
    assert "cannot connect" in capsys.readouterr().err
