"""The local broker refuses QoS 2 as closely to IoT Core as mosquitto can (real mosquitto, real paho clients).

IoT Core: "AWS IoT Core does not support publishing or subscribing with QoS level 2. When QoS level 2 is
requested, the AWS IoT message broker does not send a PUBACK or SUBACK."
(https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences)
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion


class Client:
    """A paho client that records its CONNACK, DISCONNECT, SUBACK and the messages it receives."""

    def __init__(self, broker: Any, protocol: int) -> None:
        self.connected, self.disconnected, self.subscribed = threading.Event(), threading.Event(), threading.Event()
        self.connack: Any = None
        self.disconnect_reason: Any = None
        self.granted: list[Any] = []
        self.received: list[bytes] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"qos-{uuid.uuid4().hex[:8]}", protocol=protocol
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, msg: self.received.append(msg.payload)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.connected.wait(10)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.connack = properties
        self.connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        self.granted = list(reasons)
        self.subscribed.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients(mqtt_broker: Any):
    made: list[Client] = []

    def make(protocol: int = mqtt.MQTTv5) -> Client:
        made.append(Client(mqtt_broker, protocol))
        return made[-1]

    yield make
    for client in made:
        client.close()


def test_mqtt5_clients_are_told_the_maximum_qos_is_1(clients: Any) -> None:
    assert clients().connack.MaximumQoS == 1


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["MQTT 5", "MQTT 3.1.1"])
def test_a_qos_2_publish_is_never_acknowledged_nor_delivered(clients: Any, protocol: int) -> None:
    topic = f"qos/{uuid.uuid4().hex[:8]}"
    subscriber = clients()
    subscriber.client.subscribe(topic, qos=1)
    assert subscriber.subscribed.wait(10)
    publisher = clients(protocol)
    publisher.client.publish(topic, b"qos1", qos=1).wait_for_publish(10)
    sent = publisher.client.publish(topic, b"qos2", qos=2)
    assert publisher.disconnected.wait(10), "the broker must close a connection that publishes QoS 2"
    assert not sent.is_published()  # no PUBREC/PUBCOMP ever came
    if protocol == mqtt.MQTTv5:
        assert str(publisher.disconnect_reason) == "QoS not supported"  # DISCONNECT reason 0x9B
    publisher.client.loop_stop()
    # A message published after the refused one arrives; the refused one never did.
    clients().client.publish(topic, b"after", qos=1).wait_for_publish(10)
    deadline = time.monotonic() + 10
    while b"after" not in subscriber.received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert subscriber.received == [b"qos1", b"after"]


def test_a_qos_2_subscription_is_granted_qos_1(clients: Any) -> None:
    """IoT Core sends no SUBACK at all; mosquitto downgrades, which the README lists as a difference."""
    subscriber = clients()
    subscriber.client.subscribe(f"qos/{uuid.uuid4().hex[:8]}", qos=2)
    assert subscriber.subscribed.wait(10)
    assert [reason.value for reason in subscriber.granted] == [1]
