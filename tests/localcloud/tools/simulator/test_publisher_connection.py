"""The publisher's connection, driven in the caller's thread, against a real mosquitto: a broker restarted in the
middle of a run gets every message (paho sends the unacknowledged ones again after the publisher reconnects),
and `idle` keeps a connection alive past the keep-alive interval."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
import pytest

from localcloud.servers.mqtt_broker import MosquittoBroker
from localcloud.tools.simulator.publisher import MqttPublisher
from tests.fixtures.mqtt import running_broker

TOPIC = "devices/restart-0001/telemetry"


@pytest.fixture
def broker():
    """A broker of this test's own, which it may stop and start again (same port, same persistence file)."""
    with running_broker("iotkpi-mqtt-restart-") as own:
        yield own


class PersistentSubscriber:
    """A QoS 1 subscriber with a persistent session: the broker keeps its messages across the restart."""

    def __init__(self, broker: MosquittoBroker) -> None:
        self.received: set[bytes] = set()
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                                  clean_session=False)  # fmt: skip
        self.client.on_connect = lambda client, *_: client.subscribe(TOPIC, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert subscribed.wait(10), "no SUBACK"

    def _on_message(self, _client, _userdata, message) -> None:
        with self._lock:
            self.received.add(bytes(message.payload))

    def wait_for(self, expected: set[bytes], timeout: float = 30) -> set[bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if expected <= self.received:
                    break
            time.sleep(0.05)
        with self._lock:
            return set(self.received)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_broker_restarted_mid_run_gets_every_message(broker):
    subscriber = PersistentSubscriber(broker)
    publisher = MqttPublisher(broker.host, broker.port, window=20)
    publisher.connect()
    payloads = [f"reading {i}".encode() for i in range(200)]
    try:
        for payload in payloads[:100]:
            publisher.publish(TOPIC, payload)
        broker.stop()
        restart = threading.Timer(1.5, broker.start)
        restart.start()
        # The window fills while the broker is away: publish blocks until it is back and acknowledges.
        for payload in payloads[100:]:
            publisher.publish(TOPIC, payload, timeout=30)
        assert publisher.wait_all_acknowledged(30)
        restart.join()
        assert publisher.connections_lost >= 1
        assert publisher.published == publisher.acknowledged == len(payloads)
        assert subscriber.wait_for(set(payloads)) == set(payloads)
    finally:
        publisher.close()
        subscriber.close()


def test_idle_keeps_the_connection_past_its_keep_alive(broker):
    # mosquitto drops a client it hears nothing from for 1.5 keep-alive intervals; 2.0 looks every few seconds
    # (sleeping 8 s instead of idle gets this client dropped, 5 s not always)
    publisher = MqttPublisher(broker.host, broker.port, keepalive_s=1)
    publisher.connect()
    try:
        publisher.idle(10)
        publisher.publish(TOPIC, b"after a quiet spell")
        assert publisher.wait_all_acknowledged(10)
        assert publisher.connections_lost == 0
    finally:
        publisher.close()
