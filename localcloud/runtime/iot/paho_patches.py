"""paho-mqtt patches for the per-message costs of the rules engine and the simulator's publisher.

paho rebuilds its MQTT 5 property tables for every packet: `Properties.__init__` makes three tables of 27
entries, and setting, clearing or naming a property walks them, calling str.replace on each name (about 270
calls for a PUBLISH carrying the broker's user properties); unpacking them copies the buffer after each field.
Every message also gets a threading.Condition, which only a publisher waiting for its PUBACK uses. And every
packet took a select() and three or four recv() calls (its command byte, each byte of its length, its body). In
the rules engine, which reads every device message, that was most of the runtime's CPU (py-spy, see the
README's benchmark notes). The patches keep paho's behaviour (the same values, attributes and errors:
tests/localcloud/runtime/iot/test_paho_patches.py) and target paho-mqtt 2.2.0, pinned in pyproject.toml.
"""

from __future__ import annotations

import contextlib
import re
import struct
import threading
from collections.abc import Iterator
from typing import Any

from paho.mqtt import properties as paho_properties
from paho.mqtt.client import DISCONNECT, MQTT_LOG_ERR, PUBLISH, Client, MQTTMessageInfo, time_func
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.matcher import MQTTMatcher
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MalformedPacket, MQTTException, Properties

_PRIVATE = frozenset({"packetType", "types", "names", "properties"})
# Property values paho checks, by compressed name: (lowest, highest).
_RANGES = {"ReceiveMaximum": (1, 65535), "TopicAlias": (1, 65535), "TopicAliasMaximum": (0, 65535),
           "MaximumPacketSize": (1, 268435455), "SubscriptionIdentifier": (1, 268435455)}  # fmt: skip
_FLAGS = frozenset({"RequestResponseInformation", "RequestProblemInformation", "PayloadFormatIndicator"})
_MULTIPLE = frozenset({11, 38})  # Subscription Identifier and User Property may occur more than once
# What an MQTT string must not hold, with paho's message for each (strict UTF-8 decoding already refuses the
# surrogates D800-DFFF, which paho also looks for).
_FORBIDDEN_CHARACTER = re.compile("[\x00\ufeff\ud800-\udfff]")
_FORBIDDEN_MESSAGE = {
    "\x00": "[MQTT-1.5.4-2] Null found in UTF-8 data",
    "\ufeff": "[MQTT-1.5.4-3] U+FEFF in UTF-8 data",
}
# What a read from the socket asks for: many packets' worth (a device reading's PUBLISH is ~150 bytes).
READ_SIZE = 64 * 1024
# What one send() of joined packets carries at most.
WRITE_SIZE = 64 * 1024
# Distinct properties whose unpacking is kept (a few per connected device); all are forgotten when full.
UNPACKED_PROPERTIES_KEPT = 4096
_applied = False


def apply() -> None:
    """Patch paho once per process."""
    global _applied
    if not _applied:
        _properties_share_their_tables()
        _strings_checked_at_once()
        _properties_unpacked_in_one_pass()
        _message_condition_on_first_use()
        _reads_buffered()
        _writes_joined()
        _wakes_deferred()
        _empty_matcher_answers_at_once()
        _applied = True


def _properties_share_their_tables() -> None:
    """Properties' tables are the same for every instance: built once (by paho itself), held by the class,
    and looked up by name in dicts instead of walked."""
    tables = Properties(PacketTypes.PUBLISH)
    idents = {name.replace(" ", ""): ident for name, ident in tables.names.items()}
    names = {ident: name for name, ident in tables.names.items()}
    Properties.types, Properties.names, Properties.properties = tables.types, tables.names, tables.properties

    def __init__(self: Properties, packetType: int) -> None:
        object.__setattr__(self, "packetType", packetType)

    def getIdentFromName(self: Properties, compressedName: str) -> int:
        return idents.get(compressedName, -1)

    def getNameFromIdent(self: Properties, identifier: int) -> str | None:
        return names.get(identifier)

    def allowsMultiple(self: Properties, compressedName: str) -> bool:
        return idents.get(compressedName) in _MULTIPLE

    def clear(self: Properties) -> None:
        for name in [name for name in vars(self) if name not in _PRIVATE]:
            delattr(self, name)

    def __setattr__(self: Properties, name: str, value: Any) -> None:
        name = name.replace(" ", "")
        if name in _PRIVATE:
            object.__setattr__(self, name, value)
            return
        ident = idents.get(name)
        if ident is None:
            raise MQTTException(f"Property name must be one of {self.names.keys()}")
        if self.packetType not in self.properties[ident][1]:
            raise MQTTException(f"Property {name} does not apply to packet type {PacketTypes.Names[self.packetType]}")
        if not isinstance(value, list):
            if name in _RANGES and not _RANGES[name][0] <= value <= _RANGES[name][1]:
                low, high = _RANGES[name]
                raise MQTTException(f"{name} property value must be in the range {low}-{high}")
            if name in _FLAGS and value not in (0, 1):
                raise MQTTException(f"{name} property value must be 0 or 1")
        if ident in _MULTIPLE:
            if not isinstance(value, list):
                value = [value]
            if name in vars(self):
                value = object.__getattribute__(self, name) + value
        object.__setattr__(self, name, value)

    for method in (__init__, getIdentFromName, getNameFromIdent, allowsMultiple, clear, __setattr__):
        setattr(Properties, method.__name__, method)


def _strings_checked_at_once() -> None:
    """readUTF checks a string's characters one by one in Python: one regular expression search instead,
    which finds the same first offending character."""
    read_int16 = paho_properties.readInt16

    def readUTF(buffer: bytes, maxlen: int) -> tuple[str, int]:
        if maxlen < 2:
            raise MalformedPacket("Not enough data to read string length")
        length = read_int16(buffer)
        if length > maxlen - 2:
            raise MalformedPacket("Length delimited string too long")
        text = buffer[2 : 2 + length].decode("utf-8")
        if (found := _FORBIDDEN_CHARACTER.search(text)) is not None:
            raise MalformedPacket(_FORBIDDEN_MESSAGE.get(found[0], "[MQTT-1.5.4-1] D800-DFFF found in UTF-8 data"))
        return text, length + 2

    paho_properties.readUTF = readUTF


class _NotTheCommonCase(Exception):
    """Properties the one-pass unpack leaves to paho's own (which raises paho's error for a malformed one)."""


def _properties_unpacked_in_one_pass() -> None:
    """paho's unpack copies the rest of the buffer after every field it reads, names each property by a table
    lookup and sets it through __setattr__'s checks: every PUBLISH the broker relays carries a subscription
    identifier and the broker's user properties (localcloud/servers/mqtt_broker.py), unpacked for every device
    message. This reads well-formed properties in one pass over the buffer, with the same checks; anything else
    (an unknown or misplaced property, a value out of range or past the properties' end, a second single-valued
    property, a string paho refuses) goes to paho's own unpack, which gives its result or raises its error."""
    shipped = Properties.unpack
    tables = Properties(PacketTypes.PUBLISH)
    kinds = {name: tables.types.index(name) for name in tables.types}
    # identifier -> (compressed name, value type, packet types it may appear in)
    layout = {ident: (name.replace(" ", ""), *tables.properties[ident]) for name, ident in tables.names.items()}
    byte, int16, int32 = kinds["Byte"], kinds["Two Byte Integer"], kinds["Four Byte Integer"]
    vbi, binary = kinds["Variable Byte Integer"], kinds["Binary Data"]
    utf8, pair = kinds["UTF-8 Encoded String"], kinds["UTF-8 String Pair"]
    read_int16, read_int32 = struct.Struct("!H").unpack_from, struct.Struct("!L").unpack_from

    def read_vbi(buffer: bytes, offset: int) -> tuple[int, int]:
        value = 0
        for position in range(4):
            digit = buffer[offset + position]
            value += (digit & 127) << (7 * position)
            if not digit & 128:
                return value, offset + position + 1
        raise _NotTheCommonCase

    def read_string(buffer: bytes, offset: int, end: int) -> tuple[str, int]:
        start = offset + 2
        stop = start + read_int16(buffer, offset)[0]
        if stop > end:
            raise _NotTheCommonCase
        text = buffer[start:stop].decode("utf-8")
        if _FORBIDDEN_CHARACTER.search(text) is not None:
            raise _NotTheCommonCase
        return text, stop

    def read_value(buffer: bytes, kind: int, offset: int, end: int) -> tuple[Any, int]:
        if kind == utf8:
            return read_string(buffer, offset, end)
        if kind == pair:
            key, offset = read_string(buffer, offset, end)
            value, offset = read_string(buffer, offset, end)
            return (key, value), offset
        if kind == vbi:
            return read_vbi(buffer, offset)
        if kind == byte:
            return buffer[offset], offset + 1
        if kind == int16:
            return read_int16(buffer, offset)[0], offset + 2
        if kind == int32:
            return read_int32(buffer, offset)[0], offset + 4
        if kind == binary:
            start = offset + 2
            stop = start + read_int16(buffer, offset)[0]
            return buffer[start:stop], stop
        raise _NotTheCommonCase

    def unpack_common(self: Properties, buffer: bytes) -> tuple[Properties, int]:
        self.clear()
        held = self.__dict__
        length, offset = read_vbi(buffer, 0)
        end = offset + length
        if end > len(buffer):
            raise _NotTheCommonCase
        while offset < end:
            ident, offset = read_vbi(buffer, offset)
            name, kind, packet_types = layout[ident]
            if self.packetType not in packet_types:
                raise _NotTheCommonCase
            value, offset = read_value(buffer, kind, offset, end)
            if offset > end or (name in _FLAGS and value not in (0, 1)):
                raise _NotTheCommonCase
            if name in _RANGES and not _RANGES[name][0] <= value <= _RANGES[name][1]:
                raise _NotTheCommonCase
            if ident in _MULTIPLE:
                held[name] = [*held.get(name, ()), value]
            elif name in held:
                raise _NotTheCommonCase
            else:
                held[name] = value
        return self, end

    # (packet type, the properties' bytes) -> what unpack_common made of them. A broker relays every message of
    # a client with the same properties (its user properties name the client; the subscription identifier is
    # the subscriber's), so most messages find theirs here: a dict lookup instead of the unpacking.
    unpacked: dict[tuple[int, bytes], tuple[dict[str, Any], int]] = {}

    def unpack(self: Properties, buffer: bytes) -> tuple[Properties, int]:
        try:
            length, offset = read_vbi(buffer, 0)
            key = (self.packetType, bytes(buffer[: offset + length]))
            known = unpacked.get(key)
            if known is not None:
                self.clear()
                self.__dict__.update(copied(known[0]))
                return self, known[1]
            unpack_common(self, buffer)
        except (_NotTheCommonCase, IndexError, KeyError, UnicodeDecodeError, struct.error):
            return shipped(self, buffer)
        if len(unpacked) >= UNPACKED_PROPERTIES_KEPT:
            unpacked.clear()
        unpacked[key] = (copied(vars(self)), offset + length)
        return self, offset + length

    def copied(values: dict[str, Any]) -> dict[str, Any]:
        """The properties among `values`, lists copied: a caller may change its message's, never another's."""
        return {name: list(value) if type(value) is list else value
                for name, value in values.items() if name not in _PRIVATE}  # fmt: skip

    Properties.unpack = unpack


def _message_condition_on_first_use() -> None:
    """Every MQTTMessage, received ones too, gets an MQTTMessageInfo with a threading.Condition, which only
    wait_for_publish/is_published/_set_as_published use: the condition is made on first use instead, and a
    PUBACK nobody waits for (the simulator's publisher counts them in on_publish) makes none: it only marks the
    message published, which a later waiter sees before it waits."""
    slot = MQTTMessageInfo._condition  # the __slots__ member
    creating = threading.Lock()

    def condition(self: MQTTMessageInfo) -> threading.Condition:
        try:
            return slot.__get__(self)
        except AttributeError:
            with creating:  # the network thread and a waiting publisher may both ask first
                try:
                    return slot.__get__(self)
                except AttributeError:
                    made = threading.Condition()
                    slot.__set__(self, made)
                    return made

    def __init__(self: MQTTMessageInfo, mid: int) -> None:  # paho's, without the condition
        self.mid = mid
        self._published = False
        self.rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        self._iterpos = 0

    def _set_as_published(self: MQTTMessageInfo) -> None:
        with creating:  # a waiter makes the condition under this lock, then checks _published under it
            try:
                made = slot.__get__(self)
            except AttributeError:
                self._published = True
                return
        with made:
            self._published = True
            made.notify()

    MQTTMessageInfo._condition = property(condition, slot.__set__)
    MQTTMessageInfo.__init__ = __init__
    MQTTMessageInfo._set_as_published = _set_as_published


class _ReadBuffer:
    """What one recv() brought from a connection's socket and paho has not taken yet."""

    __slots__ = ("data", "position", "sock")

    def __init__(self, sock: object) -> None:
        self.sock = sock
        self.data = b""
        self.position = 0

    @property
    def holds_bytes(self) -> bool:
        return self.position < len(self.data)

    def take_packet(self) -> tuple[int, list[int], bytes] | None:
        """The next packet if the buffer holds all of it: its command byte, the bytes of its remaining length and
        its body (then taken); None otherwise, or when its length is malformed (paho's own read says why)."""
        data, start = self.data, self.position
        length, multiplier, position = 0, 1, start + 1
        while position < len(data) and position - start <= 4:
            digit = data[position]
            length += (digit & 127) * multiplier
            multiplier *= 128
            position += 1
            if not digit & 128:
                if position + length > len(data):
                    return None
                self.position = position + length
                return data[start], list(data[start + 1 : position]), data[position : self.position]
        return None


def _reads_buffered() -> None:
    """paho's reads of a packet's parts are served from a buffer that one recv() of up to READ_SIZE fills, and
    loop_read goes on while that buffer holds bytes (select() cannot see them): a recv() per many packets instead
    of three per packet, and a select() per socket read instead of one per packet. A packet the buffer holds
    whole is taken at once, not byte by byte through paho's reading state, and handled as paho handles it.

    `_sock_recv` keeps paho's contract: up to `bufsize` bytes, BlockingIOError when nothing is there (paho then
    keeps the partial packet and waits in select()), b"" when the broker closed the connection. A new
    connection (another socket object) starts with an empty buffer."""
    receive = Client._sock_recv
    read = Client.loop_read
    read_packet = Client._packet_read

    def buffer_of(client: Client) -> _ReadBuffer:
        buffer = client.__dict__.get("_read_buffer")
        if buffer is None or buffer.sock is not client._sock:
            buffer = client.__dict__["_read_buffer"] = _ReadBuffer(client._sock)
        return buffer

    def _sock_recv(self: Client, bufsize: int) -> bytes:
        buffer = buffer_of(self)
        if not buffer.holds_bytes:
            buffer.data, buffer.position = receive(self, max(bufsize, READ_SIZE)), 0
            if not buffer.data:
                return buffer.data
        start = buffer.position
        buffer.position = min(start + bufsize, len(buffer.data))
        return buffer.data[start : buffer.position]

    def loop_read(self: Client, max_packets: int = 1) -> MQTTErrorCode:
        rc = read(self, max_packets)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._sock is not None and buffer_of(self).holds_bytes:
            rc = read(self, max_packets)
        return rc

    def _packet_read(self: Client) -> MQTTErrorCode:
        buffer = self.__dict__.get("_read_buffer")
        whole = None
        if self._in_packet["command"] == 0 and buffer is not None and buffer.sock is self._sock:
            whole = buffer.take_packet()
        if whole is None:
            return read_packet(self)
        command, length_bytes, body = whole
        self._in_packet = {"command": command, "have_remaining": 1, "remaining_count": length_bytes,
                           "remaining_mult": 128 ** len(length_bytes), "remaining_length": len(body),
                           "packet": bytearray(body), "to_process": 0, "pos": 0}  # fmt: skip
        rc = self._packet_handle()
        # What paho's _packet_read does after handling a packet.
        self._in_packet = {"command": 0, "have_remaining": 0, "remaining_count": [], "remaining_mult": 1,
                           "remaining_length": 0, "packet": bytearray(b""), "to_process": 0, "pos": 0}  # fmt: skip
        with self._msgtime_mutex:
            self._last_msg_in = time_func()
        return rc

    Client._sock_recv = _sock_recv
    Client.loop_read = loop_read
    Client._packet_read = _packet_read


def _writes_joined() -> None:
    """paho sends every queued packet with a send() of its own: a PUBACK per device message from the rules engine,
    a PUBLISH per message from the simulator's publisher, each a system call and, on the broker's side, a wake-up.
    Queued packets that need nothing done once written (all but a QoS 0 PUBLISH, whose on_publish paho calls
    then, and DISCONNECT) go out together, up to WRITE_SIZE bytes a send(); paho's own write sends the others.
    A send() that takes only part of the data leaves the packet it stopped in at the queue's head with its
    position, as paho's does, and the next write sends its rest with the packets after it."""
    write = Client._packet_write

    def joinable(packet: dict[str, Any]) -> bool:
        command = packet["command"] & 0xF0
        return not (command == PUBLISH and packet["qos"] == 0) and command != DISCONNECT

    def _packet_write(self: Client) -> MQTTErrorCode:
        queue = self._out_packet  # other threads append to it (acks, publishes): taken from the left only
        while True:
            joined, size = [], 0
            while size < WRITE_SIZE and queue:
                packet = queue.popleft()
                if not joinable(packet):
                    queue.appendleft(packet)
                    break
                joined.append(packet)
                size += packet["to_process"]
            if len(joined) < 2:
                queue.extendleft(joined)
                return write(self)
            head = joined[0]  # a packet a send() took part of is at the head: its rest is sent first
            parts = [head["packet"][head["pos"] :], *(packet["packet"] for packet in joined[1:])]
            try:
                sent = self._sock_send(b"".join(parts))
            except (AttributeError, ValueError):  # no socket: as paho's
                queue.extendleft(reversed(joined))
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                queue.extendleft(reversed(joined))
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                queue.extendleft(reversed(joined))
                self._easy_log(MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            for index, packet in enumerate(joined):
                if sent < packet["to_process"]:
                    packet["pos"] += sent
                    packet["to_process"] -= sent
                    queue.extendleft(reversed(joined[index:]))
                    return MQTTErrorCode.MQTT_ERR_AGAIN  # the socket took no more: select() says when it does
                sent -= packet["to_process"]

    Client._packet_write = _packet_write


def _wakes_deferred() -> None:
    """A packet queued from another thread than a loop_start client's network thread wakes that thread with a
    send() on paho's socket pair; inside `one_wake`, the calling thread's packets for its client are queued as
    paho queues them, without the wake-up, which one_wake sends once at its end."""
    queue = Client._packet_queue

    def _packet_queue(self: Client, command: int, packet: bytes, mid: int, qos: int,
                      info: MQTTMessageInfo | None = None) -> MQTTErrorCode:  # fmt: skip
        if getattr(_deferring, "client", None) is not self or self._thread is None:
            return queue(self, command, packet, mid, qos, info)
        self._out_packet.append({"command": command, "mid": mid, "qos": qos, "pos": 0, "to_process": len(packet),
                                 "packet": packet, "info": info})  # fmt: skip
        _deferring.queued = True
        self._call_socket_register_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    Client._packet_queue = _packet_queue


# The client whose wake-ups this thread defers (one_wake), and whether it queued a packet meanwhile.
_deferring = threading.local()


@contextlib.contextmanager
def one_wake(client: Client) -> Iterator[None]:
    """Packets this thread queues for `client` inside wake its network thread once, at the end, instead of once
    each: the rules engine acks a PutRecords call's hundreds of messages from its Kinesis thread at once. Needs
    apply()."""
    _deferring.client, _deferring.queued = client, False
    try:
        yield
    finally:
        _deferring.client = None
        wake = client._sockpairW
        if _deferring.queued and wake is not None:
            with contextlib.suppress(BlockingIOError):  # its buffer is full of wake-ups already
                wake.send(b"0")


def _empty_matcher_answers_at_once() -> None:
    """Every received message is matched against the client's per-filter callbacks (message_callback_add), which
    splits the topic and walks a trie of them even when there is none, as in the rules engine: a matcher
    without filters matches nothing at once (every filter, even "", adds a child to the root)."""
    iter_match = MQTTMatcher.iter_match

    def matches(self: MQTTMatcher, topic: str) -> Iterator[Any]:
        return iter_match(self, topic) if self._root._children else iter(())

    MQTTMatcher.iter_match = matches
