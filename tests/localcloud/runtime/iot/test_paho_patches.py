"""localcloud/runtime/iot/paho_patches.py keeps paho's behaviour: every case runs with paho as shipped, in a
fresh interpreter, and patched, here; the outcomes (bytes packed, properties unpacked, errors raised) must be
equal. The buffered reads are checked against a scripted broker on a loopback socket."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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


UNPACK_SCRIPT = """
import json, sys
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
if sys.argv[1] == "patched":
    from localcloud.runtime.iot import paho_patches
    paho_patches.apply()

def run(packet_type, hex_buffer):
    props = Properties(getattr(PacketTypes, packet_type))
    props.UserProperty = ("stale", "cleared by unpack")
    try:
        _, end = props.unpack(bytes.fromhex(hex_buffer))
        return {"end": end, "unpacked": json.loads(json.dumps(props.json(), default=repr))}
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}

def twice(packet_type, hex_buffer):  # the second from what the patched unpack kept of the first
    first = run(packet_type, hex_buffer)
    return [first, run(packet_type, hex_buffer)]

print(json.dumps([twice(*case) for case in json.loads(sys.stdin.read())]))
"""


def _property(ident: int, value: bytes) -> bytes:
    return bytes([ident]) + value


def _string(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _properties(*fields: bytes) -> bytes:
    body = b"".join(fields)
    assert len(body) < 128
    return bytes([len(body)]) + body


# What a relayed device message carries (subscription identifier, the broker's user properties), then cases
# each of which one check refuses; every one is also mutated at random below.
RELAYED = (
    _properties(
        _property(11, b"\x07"),
        _property(38, _string("x-iotkpi-clientid") + _string("dev-1")),
        _property(38, _string("x-iotkpi-sourceip") + _string("127.0.0.1")),
        _property(3, _string("application/json")),
    )
    + b'{"payload": 1}'
)
RAW_CASES = [
    ("PUBLISH", RELAYED),
    (
        "PUBLISH",
        _properties(
            _property(1, b"\x01"),
            _property(2, b"\x00\x01\x11\x70"),
            _property(35, b"\x00\x03"),
            _property(9, b"\x00\x03abc"),
            _property(11, b"\xff\xff\xff\x7f"),
        ),
    ),
    ("CONNACK", _properties(_property(18, _string("\u00e9")), _property(19, b"\x00\x1e"), _property(36, b"\x01"))),
    ("PUBLISH", b"\x00"),  # no properties
    ("PUBLISH", b""),  # nothing at all
    ("PUBLISH", _properties(_property(3, _string("a")), _property(3, _string("b")))),  # single-valued twice
    ("PUBLISH", _properties(_property(17, b"\x00\x00\x00\x05"))),  # not a PUBLISH property
    ("PUBLISH", _properties(_property(0x7F, b"\x00"))),  # no such property
    ("PUBLISH", _properties(_property(11, b"\x00"))),  # subscription identifier 0
    ("PUBLISH", _properties(_property(1, b"\x02"))),  # a flag
    ("PUBLISH", _properties(_property(38, _string("a") + _string("nul\u0000")))),
    ("PUBLISH", _properties(_property(3, _string("\ufeff")))),
    ("PUBLISH", bytes([5]) + _property(3, _string("abcdef"))),  # the string reaches past the properties
    ("PUBLISH", bytes([4]) + _property(3, b"\x00\x01\xff")),  # not UTF-8
    ("PUBLISH", bytes([2]) + _property(2, b"\x00\x00\x00\x05")),  # an integer past the end: paho reads it
    ("PUBLISH", b"\x80\x01" + _property(3, _string("x" * 125))),  # a two-byte properties length
    ("PUBLISH", b"\xff\xff\xff\xff\x01"),  # a five-byte one
]


def _mutations(buffer: bytes, rng: random.Random) -> bytes:
    data = bytearray(buffer)
    for _ in range(rng.randint(1, 3)):
        choice = rng.random()
        if choice < 0.5 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice < 0.75 and data:
            del data[rng.randrange(len(data)) :]
        else:
            data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
    return bytes(data)


def test_properties_unpack_as_paho_ships_it_including_malformed_ones():
    """The one-pass unpack gives paho's result or raises paho's error, for well-formed properties, for each
    case one check refuses, and for thousands of random mutations of them (a fixed seed); unpacking the same
    bytes again (the patched unpack then uses what it kept) gives the same result once more."""
    rng = random.Random(16)
    cases = [(packet_type, buffer.hex()) for packet_type, buffer in RAW_CASES]
    cases += [(packet_type, _mutations(buffer, rng).hex()) for packet_type, buffer in RAW_CASES for _ in range(200)]

    def outcomes_of(mode: str) -> list[dict]:
        run = subprocess.run([sys.executable, "-c", UNPACK_SCRIPT, mode], input=json.dumps(cases),
                             capture_output=True, text=True, check=True)  # fmt: skip
        return json.loads(run.stdout)

    shipped, patched = outcomes_of("shipped"), outcomes_of("patched")
    for case, expected, got in zip(cases, shipped, patched, strict=True):
        assert got == expected, case
    assert all(first == second for first, second in patched)
    refused = ["error" in first for first, _ in shipped[: len(RAW_CASES)]]
    assert refused == [False] * 4 + [True] * 10 + [False, False, True]
    assert sum("error" in first for first, _ in shipped) > len(cases) // 4


def test_a_message_changing_its_properties_leaves_the_next_ones_alike():
    paho_patches.apply()
    buffer = _properties(_property(38, _string("client") + _string("dev-1")), _property(11, b"\x07"))
    first = Properties(PacketTypes.PUBLISH)
    first.unpack(buffer)
    first.UserProperty.append(("added", "by one message"))
    first.SubscriptionIdentifier.append(9)
    again = Properties(PacketTypes.PUBLISH)
    assert again.unpack(buffer + b"payload") == (again, len(buffer))
    assert again.UserProperty == [("client", "dev-1")] and again.SubscriptionIdentifier == [7]


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
    """An MQTT 3.1.1 QoS 0 PUBLISH."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    length, remaining = b"", len(body)
    while True:  # the remaining length, 7 bits a byte
        digit, remaining = remaining % 128, remaining // 128
        length += bytes([digit | (128 if remaining else 0)])
        if not remaining:
            return b"\x30" + length + body


@pytest.mark.parametrize(
    ("payloads", "split_at", "before_split"),
    [
        ([b"p0", b"p1", b"p2", b"p3"], -3, 3),
        ([b"p0", b"p1"], -1, 1),
        ([b"p0", b"x" * 300, b"p2"], 9 + 2, 1),  # 9: the first packet's bytes
        ([b"p0", b"x" * 300, b"p2"], -1, 2),
    ],
    ids=["split in the body", "all but its last byte", "split in a two-byte length", "after a long one"],
)
def test_buffered_reads_deliver_every_packet_of_a_read_and_join_a_split_one(payloads, split_at, before_split):
    """Several packets in one read are all delivered at once (none waits in the buffer for select() to wake,
    which it would not before the keepalive), and a packet split across reads is put together, wherever the
    split falls."""
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
        stream = b"".join(_publish_packet(f"t/{i}", payload) for i, payload in enumerate(payloads))
        broker.sendall(b"\x20\x02\x00\x00" + stream[:split_at])
        with arrived:
            assert arrived.wait_for(lambda: len(received) == before_split, timeout=5), received
        broker.sendall(stream[split_at:])
        with arrived:
            assert arrived.wait_for(lambda: len(received) == len(payloads), timeout=5), received
        assert received == [(f"t/{i}", payload) for i, payload in enumerate(payloads)]
    finally:
        client.loop_stop()
        broker.close()
        server.close()


def test_the_callback_matcher_matches_as_shipped_with_and_without_filters():
    paho_patches.apply()
    from paho.mqtt.matcher import MQTTMatcher

    matcher = MQTTMatcher()
    assert list(matcher.iter_match("devices/d1/telemetry")) == []
    matcher["devices/+/telemetry"] = "telemetry"
    matcher["$SYS/#"] = "sys"
    assert list(matcher.iter_match("devices/d1/telemetry")) == ["telemetry"]
    assert list(matcher.iter_match("$SYS/broker/uptime")) == ["sys"]
    del matcher["devices/+/telemetry"], matcher["$SYS/#"]
    assert list(matcher.iter_match("devices/d1/telemetry")) == []


def _packets(data: bytes) -> list[tuple[int, bytes]]:
    """An MQTT byte stream's packets: (command byte, body)."""
    packets, position = [], 0
    while position < len(data):
        command, length, multiplier, position = data[position], 0, 1, position + 1
        while True:
            digit, position = data[position], position + 1
            length, multiplier = length + (digit & 127) * multiplier, multiplier * 128
            if not digit & 128:
                break
        packets.append((command, data[position : position + length]))
        position += length
    return packets


def test_queued_packets_go_out_together_and_whole_when_the_socket_takes_part_of_them():
    """Queued packets leave in few send()s, in order and whole, also when a send() takes only part of the
    data (small socket buffers, a reader that lags): the rest goes out when select() says the socket can
    take more."""
    paho_patches.apply()
    server = socket.create_server(("127.0.0.1", 0))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="w", protocol=mqtt.MQTTv311)
    client.on_socket_register_write = lambda *_: None  # packets stay queued until loop_write
    client.max_inflight_messages_set(0)  # all 200 publishes sent, none held back for PUBACKs
    client.connect("127.0.0.1", server.getsockname()[1], keepalive=60)  # the CONNECT is queued too
    broker, _ = server.accept()
    client.socket().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sends: list[tuple[int, int]] = []  # (bytes offered, bytes taken)
    send = client._sock_send

    def counted(data: bytes) -> int:
        taken = send(data)
        sends.append((len(data), taken))
        return taken

    client._sock_send = counted
    payloads = [f"{i:04d}".encode() * 50 for i in range(200)]  # 40 KB in all
    for payload in payloads:
        client.publish("devices/d/telemetry", payload, qos=1)
    received = bytearray()
    try:
        broker.settimeout(0.2)
        while client.want_write() or len(received) < 40_000:
            client.loop_write()
            with contextlib.suppress(TimeoutError):
                received += broker.recv(1024)  # a slow reader: the client's buffer fills
        broker.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while chunk := broker.recv(65536):
                received += chunk
    finally:
        broker.close()
        client.socket().close()
        server.close()
    packets = _packets(bytes(received))
    assert packets[0][0] == 0x10  # CONNECT
    topic = b"\x00\x13devices/d/telemetry"
    assert [(command, body) for command, body in packets[1:]] == [
        (0x32, topic + (mid).to_bytes(2, "big") + payload) for mid, payload in enumerate(payloads, start=1)
    ]
    assert len(sends) < 50 and any(taken < offered for offered, taken in sends)


class _CountedWakes:
    """paho's socket pair end that wakes its network thread, counting the wake-ups."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.sends = sock, 0

    def send(self, data: bytes) -> int:
        self.sends += 1
        return self.sock.send(data)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


@contextlib.contextmanager
def _acking_client() -> Iterator[tuple[mqtt.Client, socket.socket]]:
    """A manual-ack client with paho's network thread (loop_start), connected to a scripted broker: (the client,
    the broker's end of the connection, the CONNECT read and CONNACK sent)."""
    paho_patches.apply()
    server = socket.create_server(("127.0.0.1", 0))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acks", protocol=mqtt.MQTTv311, manual_ack=True)
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect_async("127.0.0.1", server.getsockname()[1], keepalive=60)
    client.loop_start()
    broker, _ = server.accept()
    try:
        assert _packets(broker.recv(1024))[0][0] == 0x10  # CONNECT
        broker.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
        assert connected.wait(5)
        yield client, broker
    finally:
        client.loop_stop()
        broker.close()
        server.close()


def test_acks_queued_in_one_wake_wake_the_network_thread_once_and_all_go_out():
    with _acking_client() as (client, broker):
        wakes = client._sockpairW = _CountedWakes(client._sockpairW)
        with paho_patches.one_wake(client):
            for mid in range(1, 101):
                client.ack(mid, 1)
            assert wakes.sends == 0
        assert wakes.sends == 1
        received = b""
        broker.settimeout(10)
        while len(received) < 400:  # the network thread writes them once woken (its select() waits up to 1 s)
            received += broker.recv(4096)
        assert _packets(received) == [(0x40, mid.to_bytes(2, "big")) for mid in range(1, 101)]
        client.ack(101, 1)  # outside: woken as paho wakes it
        assert wakes.sends == 2


def test_joined_writes_hold_while_another_thread_queues_packets():
    """The rules engine's Kinesis thread queues PUBACKs while the network thread writes: every one goes out, in
    order, and the network thread lives on (an iteration over paho's queue while another thread appends to it
    raised in the network thread, which then died and the engine took no more messages)."""
    acks = 60_000
    with _acking_client() as (client, broker):

        def acknowledge() -> None:
            for start in range(1, acks + 1, 500):
                with paho_patches.one_wake(client):
                    for mid in range(start, start + 500):
                        client.ack(mid, 1)

        acknowledging = threading.Thread(target=acknowledge)
        acknowledging.start()
        received = bytearray()
        broker.settimeout(10)
        while len(received) < 4 * acks:
            received += broker.recv(65536)
        acknowledging.join()
        assert _packets(bytes(received)) == [(0x40, mid.to_bytes(2, "big")) for mid in range(1, acks + 1)]
        assert client._thread is not None and client._thread.is_alive()
