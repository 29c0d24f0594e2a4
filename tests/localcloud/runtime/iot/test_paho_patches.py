"""localcloud/runtime/iot/paho_patches.py keeps paho's behaviour: every case runs with paho as shipped, in a
fresh interpreter, and patched, here; the outcomes (bytes packed, properties unpacked, errors raised) must be
equal. The buffered reads are checked against a scripted broker on a loopback socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.packettypes import PacketTypes

from localcloud.runtime.iot import paho_patches

# Each case: (packet type, [(name, value), ...] set in order) -> pack, then unpack into a new instance.
CASES = [
    ("PUBLISH", [("SubscriptionIdentifier", 7), ("UserProperty", ["x-iotkpi-clientid", "dev-1"]),
                 ("UserProperty", ["x-iotkpi-sourceip", "127.0.0.1"]), ("ContentType", "application/json")]),
    ("PUBLISH", [("Payload Format Indicator", 1), ("MessageExpiryInterval", 70000), ("ResponseTopic", "r/1"),
                 ("CorrelationData", "YWJj"), ("TopicAlias", 3), ("SubscriptionIdentifier", [1, 268435455])]),
    ("CONNECT", [("SessionExpiryInterval", 604800), ("ReceiveMaximum", 1000), ("MaximumPacketSize", 1024),
                 ("RequestProblemInformation", 0), ("AuthenticationMethod", "m"), ("TopicAliasMaximum", 0)]),
    ("CONNACK", [("AssignedClientIdentifier", "\u00e9\u00e8"), ("ServerKeepAlive", 30), ("MaximumQoS", 1),
                 ("ReasonString", "ok"), ("SharedSubscriptionAvailable", 1)]),
    ("PUBLISH", [("NotAProperty", 1)]),  # unknown name
    ("PUBLISH", [("SessionExpiryInterval", 5)]),  # not a PUBLISH property
    ("CONNECT", [("ReceiveMaximum", 0)]),  # out of range
    ("CONNECT", [("TopicAliasMaximum", 65536)]),
    ("SUBSCRIBE", [("SubscriptionIdentifier", 268435456)]),
    ("PUBLISH", [("PayloadFormatIndicator", 2)]),  # a flag
    ("PUBLISH", [("UserProperty", ["a", "nul\u0000inside"])]),  # refused when read back
    ("PUBLISH", [("UserProperty", ["bom\ufeff", "x"])]),
    ("PUBLISH", [("ResponseTopic", "x\ufeffy\u0000")]),  # the first offending character decides the message
]  # fmt: skip

SCRIPT = """
import base64, json, sys
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
PATCHED = sys.argv[1] == "patched"
if PATCHED:
    from localcloud.runtime.iot import paho_patches
    paho_patches.apply()

def value(v):
    return base64.b64decode(v) if isinstance(v, str) and v == "YWJj" else (tuple(v) if isinstance(v, list) and v and isinstance(v[0], str) else v)

def run(case):
    packet_type, settings = case
    out = {}
    try:
        props = Properties(getattr(PacketTypes, packet_type))
        for name, v in settings:
            setattr(props, name, value(v))
        packed = props.pack()
        out["packed"] = packed.hex()
        out["str"] = str(props)
        back = Properties(getattr(PacketTypes, packet_type))
        back.UserProperty = ("stale", "cleared by unpack")
        back.unpack(packed)
        out["unpacked"] = json.loads(json.dumps(back.json(), default=repr))
        out["empty"] = back.isEmpty()
        back.clear()
        out["cleared"] = back.isEmpty()
        out["ident"] = [props.getIdentFromName(n.replace(" ", "")) for n, _ in settings]
        out["name"] = [props.getNameFromIdent(i) for i in out["ident"]]
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out

print(json.dumps([run(case) for case in json.loads(sys.stdin.read())]))
"""


def outcomes(mode: str) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], input=json.dumps(CASES), capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def test_properties_behave_as_paho_ships_them():
    shipped, patched = outcomes("shipped"), outcomes("patched")
    for case, expected, got in zip(CASES, shipped, patched, strict=True):
        assert got == expected, case
    assert any("error" in outcome for outcome in shipped)  # the error cases did fail
    assert sum("packed" in outcome and "error" not in outcome for outcome in shipped) >= 4


def test_a_publisher_waiting_for_its_puback_is_woken():
    """The condition is made on first use, by whichever thread comes first: a waiter and the network thread
    notifying it must get the same one."""
    paho_patches.apply()
    for _ in range(200):
        info = MQTTMessageInfo(1)
        notifier = threading.Thread(target=info._set_as_published)
        notifier.start()
        info.wait_for_publish(timeout=5)
        notifier.join()
        assert info.is_published()


def test_an_unpublished_message_times_out():
    paho_patches.apply()
    info = MQTTMessageInfo(2)
    started = time.monotonic()
    info.wait_for_publish(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert not info.is_published()


@pytest.mark.parametrize("packet_type", [PacketTypes.PUBLISH, PacketTypes.CONNACK])
def test_applying_twice_changes_nothing(packet_type):
    paho_patches.apply()
    paho_patches.apply()
    from paho.mqtt.properties import Properties

    props = Properties(packet_type)
    props.UserProperty = ("a", "b")
    props.UserProperty = ("c", "d")
    assert props.UserProperty == [("a", "b"), ("c", "d")]


def _publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 QoS 0 PUBLISH (remaining length < 128)."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    return bytes([0x30, len(body)]) + body


def test_buffered_reads_deliver_every_packet_of_a_read_and_join_a_split_one():
    """Several packets in one read are all delivered at once (none waits in the buffer for select() to wake,
    which it would not before the keepalive), and a packet split across reads is put together."""
    paho_patches.apply()
    server = socket.create_server(("127.0.0.1", 0))
    received: list[tuple[str, bytes]] = []
    arrived = threading.Condition()

    def on_message(client, userdata, message):
        with arrived:
            received.append((message.topic, message.payload))
            arrived.notify_all()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    client.on_message = on_message
    client.connect_async("127.0.0.1", server.getsockname()[1], keepalive=60)
    client.loop_start()
    broker, _ = server.accept()
    try:
        broker.settimeout(5)
        assert broker.recv(1024)[0] == 0x10  # CONNECT
        packets = [_publish_packet(f"t/{i}", b"p%d" % i) for i in range(4)]
        broker.sendall(b"\x20\x02\x00\x00" + packets[0] + packets[1] + packets[2] + packets[3][:5])
        with arrived:
            assert arrived.wait_for(lambda: len(received) == 3, timeout=5), received
        broker.sendall(packets[3][5:])
        with arrived:
            assert arrived.wait_for(lambda: len(received) == 4, timeout=5), received
        assert received == [(f"t/{i}", b"p%d" % i) for i in range(4)]
    finally:
        client.loop_stop()
        broker.close()
        server.close()
