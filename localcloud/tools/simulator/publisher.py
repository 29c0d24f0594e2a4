"""Publishing a simulation over a real MQTT broker: QoS 1, a bounded window of unacknowledged messages,
paced in real time (simulated second = wall second) or as fast as the broker acknowledges."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt

from localcloud.runtime.iot import paho_patches
from localcloud.tools.simulator.generator import Simulation
from localcloud.tools.simulator.model import LOST_OFFLINE, Message
from localcloud.tools.simulator.report import Report

QOS = 1
paho_patches.apply()  # every PUBACK makes a Properties: without paho's per-instance tables


class PublishError(RuntimeError):
    pass


class MqttPublisher:
    """One paho client. `publish` blocks while `window` messages await their PUBACK."""

    def __init__(self, host: str, port: int, window: int = 100, client_id: str | None = None) -> None:
        self.host, self.port = host, port
        self._window = threading.BoundedSemaphore(window)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: str | None = None
        self.acknowledged = 0
        self.published = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"iotkpi-simulator-{uuid.uuid4().hex[:8]}"
        )
        # The window bounds what is in flight, so paho's own limit is off: with one, paho walks every message in
        # flight at each PUBACK (its _update_inflight), most of the publisher's time with a window of 1,000.
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        self._connected.set()

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties) -> None:
        self._connected.clear()  # paho reconnects by itself and re-sends what was not acknowledged

    def _on_publish(self, _client, _userdata, _mid, _reason_code, _properties) -> None:
        with self._lock:
            self.acknowledged += 1
        self._window.release()

    def connect(self, timeout: float = 10) -> None:
        try:
            self.client.connect(self.host, self.port)
        except OSError as exc:
            raise PublishError(f"cannot connect to MQTT broker {self.host}:{self.port}: {exc}") from exc
        self.client.loop_start()
        if not self._connected.wait(timeout) or self._refused:
            self.close()
            raise PublishError(f"MQTT broker {self.host}:{self.port} refused or did not answer: {self._refused}")

    def publish(self, topic: str, payload: bytes, timeout: float = 60) -> None:
        if not self._window.acquire(timeout=timeout):
            raise PublishError(f"no PUBACK for {timeout} s with a full window of unacknowledged messages")
        info = self.client.publish(topic, payload, qos=QOS)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):  # NO_CONN: queued until reconnected
            self._window.release()
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self.published += 1

    def wait_all_acknowledged(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_simulation(
    simulation: Simulation,
    host: str,
    port: int,
    pace: bool = True,
    window: int = 100,
    jsonl: Path | None = None,
    progress: Callable[[Report], None] | None = None,
    progress_every_s: float = 5.0,
    ack_timeout_s: float = 60.0,
) -> Report:
    """Send every message of the simulation (LOST_OFFLINE ones are only recorded); the report once all are
    acknowledged. Raises PublishError when the broker is unreachable or stops acknowledging."""
    report = Report(simulation.options, simulation.offline_spans)
    if jsonl is not None:
        report.open_jsonl(jsonl)
    publisher = MqttPublisher(host, port, window)
    publisher.connect()
    started = time.monotonic()
    next_progress = started + progress_every_s
    # Paced messages are due when the wall clock reaches their simulated time: with a start in the past the
    # backlog goes out at once (a backfill), then the run continues in real time.
    behind_s = max(0.0, (datetime.now(UTC) - simulation.options.start).total_seconds())

    def tick() -> None:
        nonlocal next_progress
        report.wall_s = time.monotonic() - started
        report.acknowledged = publisher.acknowledged
        if progress is not None and time.monotonic() >= next_progress:
            progress(report)
            next_progress = time.monotonic() + progress_every_s

    try:
        for message in _paced(simulation.messages(), started - behind_s, pace, tick):
            if message.kind != LOST_OFFLINE:
                publisher.publish(message.topic, message.payload, timeout=ack_timeout_s)
            report.record(message)
            tick()
        if not publisher.wait_all_acknowledged(ack_timeout_s):
            raise PublishError(f"{publisher.published - publisher.acknowledged} messages never acknowledged")
        tick()
    finally:
        publisher.close()
        report.close()
    return report


def _paced(messages: Iterable[Message], origin: float, pace: bool, tick: Callable[[], None]) -> Iterable[Message]:
    """The messages, each no earlier than its simulated send time after `origin` when pacing."""
    for message in messages:
        if pace:
            while (wait := origin + message.send_s - time.monotonic()) > 0:
                time.sleep(min(wait, 0.5))
                tick()
        yield message
