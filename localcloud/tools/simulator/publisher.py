"""Publishing a simulation over a real MQTT broker: QoS 1, a bounded window of unacknowledged messages,
paced in real time (simulated second = wall second) or as fast as the broker acknowledges."""

from __future__ import annotations

import contextlib
import select
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
SERVICE_EVERY = 32  # publishes written together, then the PUBACKs that have arrived read
RECONNECT_PAUSE_S = 0.5  # between two attempts to open a lost connection again
paho_patches.apply()  # every PUBACK makes a Properties: without paho's per-instance tables


class PublishError(RuntimeError):
    pass


class MqttPublisher:
    """One paho client, driven in the caller's thread: `publish` queues the message, and every SERVICE_EVERY
    messages writes the queue and reads the PUBACKs that have arrived; it blocks while `window` messages await
    theirs. `idle` (instead of time.sleep between publishes), `wait_all_acknowledged` and `close` write what is
    queued at once and keep the connection (PUBACKs, keep-alive pings). A lost connection is opened again, and
    paho then sends again every message not yet acknowledged.

    No network thread (paho's loop_start): with one, every publish woke it through a socket pair and the two
    threads handed the interpreter lock back and forth for each message, which cost more CPU than the publish
    (see the README's pipeline benchmark notes). paho's external-loop calls (loop_read/loop_write/loop_misc)
    are used, so that no socket pair is made at all."""

    def __init__(self, host: str, port: int, window: int = 100, client_id: str | None = None,
                 keepalive_s: int = 60) -> None:  # fmt: skip
        self.host, self.port = host, port
        self._window = window
        self._keepalive_s = keepalive_s
        self._connected = False
        self._refused: str | None = None
        self._next_reconnect = 0.0
        self.acknowledged = 0
        self.published = 0
        self.connections_lost = 0
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"iotkpi-simulator-{uuid.uuid4().hex[:8]}"
        )
        # The window bounds what is in flight, so paho's own limit is off: with one, paho walks every message in
        # flight at each PUBACK (its _update_inflight), most of the publisher's time with a window of 1,000.
        self.client.max_inflight_messages_set(0)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        # With this hook paho leaves every packet queued (instead of sending it at once) for _service to write:
        # the packets of many publishes then go out in one send() (paho_patches), and the broker wakes up once.
        self.client.on_socket_register_write = _written_by_service

    def _on_connect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            self._refused = str(reason_code)
        else:
            self._connected = True

    def _on_disconnect(self, _client, _userdata, _flags, _reason_code, _properties) -> None:
        if self._connected:
            self.connections_lost += 1
        self._connected = False

    def _on_publish(self, _client, _userdata, _mid, _reason_code, _properties) -> None:
        self.acknowledged += 1  # in the caller's thread, as every callback here

    def connect(self, timeout: float = 10) -> None:
        try:
            self.client.connect(self.host, self.port, keepalive=self._keepalive_s)
        except OSError as exc:
            raise PublishError(f"cannot connect to MQTT broker {self.host}:{self.port}: {exc}") from exc
        deadline = time.monotonic() + timeout
        while not self._connected and not self._refused and time.monotonic() < deadline:
            self._service(min(0.1, deadline - time.monotonic()))
        if not self._connected:
            self.close()
            raise PublishError(f"MQTT broker {self.host}:{self.port} refused or did not answer: {self._refused}")

    def publish(self, topic: str, payload: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.published - self.acknowledged >= self._window:
            if (remaining := deadline - time.monotonic()) <= 0:
                raise PublishError(f"no PUBACK for {timeout} s with a full window of unacknowledged messages")
            self._service(min(remaining, 1.0))
        info = self.client.publish(topic, payload, qos=QOS)
        # NO_CONN / CONN_LOST: the message is kept, and sent again once the connection is back.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_CONN_LOST):
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self.published += 1
        if self.published % SERVICE_EVERY == 0:
            self._service(0)

    def idle(self, seconds: float) -> None:
        """Wait `seconds`, keeping the connection meanwhile (instead of time.sleep between publishes)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._service(remaining)

    def wait_all_acknowledged(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.acknowledged < self.published:
            if (remaining := deadline - time.monotonic()) <= 0:
                return False
            self._service(min(remaining, 0.1))
        return True

    def close(self) -> None:
        self._connected = False  # a disconnect asked for is no connection lost
        self.client.disconnect()
        self.client.loop_write()  # what was still queued, then the DISCONNECT

    def _service(self, timeout: float) -> None:
        """Read what the broker sent, write what waits, send a keep-alive ping when due: up to `timeout` s for
        the socket to be ready. Without a connection, open it again (every RECONNECT_PAUSE_S at most)."""
        client = self.client
        sock = client.socket()
        if sock is None:
            self._reconnect(timeout)
            return
        if self._keepalive_s:  # a quarter of it at most: loop_misc must find the ping due well before the broker
            timeout = min(timeout, self._keepalive_s / 4)  # gives up on this client
        readable, writable, _ = select.select([sock], [sock] if client.want_write() else [], [], timeout)
        # Each closes the socket when it finds the connection lost (the others then do nothing), and the next
        # call opens it again.
        if readable:
            client.loop_read()
        if writable:
            client.loop_write()
        client.loop_misc()

    def _reconnect(self, timeout: float) -> None:
        wait = self._next_reconnect - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, timeout))
            return
        self._next_reconnect = time.monotonic() + RECONNECT_PAUSE_S
        with contextlib.suppress(OSError):  # the broker is still away: try again later
            self.client.reconnect()


def _written_by_service(_client: mqtt.Client, _userdata: object, _sock: object) -> None:
    """paho's on_socket_register_write: nothing to do, MqttPublisher._service writes what waits."""


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
        for message in _paced(simulation.messages(), started - behind_s, pace, publisher.idle, tick):
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


def _paced(messages: Iterable[Message], origin: float, pace: bool, idle: Callable[[float], None],
           tick: Callable[[], None]) -> Iterable[Message]:  # fmt: skip
    """The messages, each no earlier than its simulated send time after `origin` when pacing (waiting with
    `idle`, which keeps the connection)."""
    for message in messages:
        if pace:
            while (wait := origin + message.send_s - time.monotonic()) > 0:
                idle(min(wait, 0.5))
                tick()
        yield message
