"""The telemetry reading and its validation: raw record bytes in, a `Reading` or an `InvalidReading` out.

Pure (no I/O). A record is the IoT rule's output: the device's JSON payload plus `device_id` (from the
topic) and `received_at` (ms epoch from timestamp()). Everything a reading holds must be storable as is:
a value PostgreSQL would refuse (NUL characters, lone surrogates, floats beyond `real`) is rejected here,
because one unstorable row would otherwise fail its whole batch again and again.

This runs once per ingested record, so it is written for speed (the ingest's budget is a few microseconds
a record): `parse_row` gives the fields as a plain tuple for COPY, `parse_reading` wraps them in a `Reading`.
Two paths give the same answer. The common record (the reading's own fields, nothing else) is decoded and
range-checked by msgspec in C against `_CommonFields`, and only what msgspec cannot check is checked here;
anything else (extra fields, a value out of range, invalid JSON, ...) goes the checked way, which decides
every rejection and its reason. The fast path only ever accepts, so it cannot change a verdict: a record it
accepts gives the same row as the checked path (a hypothesis property tests this). The ingest runs a batch's
records through the fast path in one loop (`RowParser.common_rows`), then the others the checked way.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECONDS = tuple(timedelta(milliseconds=ms) for ms in range(1000))
_MAX_CACHED_SECONDS = 4096
# The reading's own columns; every other field of the payload is kept in `payload`.
KNOWN_FIELDS = frozenset(
    {"device_id", "ts", "seq", "rss", "battery", "temperature", "humidity", "firmware", "received_at"}
)
# Physical ranges, wide enough for any real sensor; they also keep values inside PostgreSQL `real`.
RANGES = {
    "rss": (-200.0, 50.0),
    "battery": (0.0, 100.0),
    "temperature": (-100.0, 200.0),
    "humidity": (0.0, 100.0),
}
MAX_DEVICE_ID_LEN = 128
DEVICE_ID = re.compile(rf"[A-Za-z0-9_.:@-]{{1,{MAX_DEVICE_ID_LEN}}}")
# DEVICE_ID's characters, for the test without the regular expression (RowParser.common_rows).
DEVICE_ID_CHARACTERS = string.ascii_letters + string.digits + "_.:@-"
_FROM_ISO = datetime.fromisoformat
MAX_SEQ = 2**63 - 1
MAX_FIRMWARE_LEN = 128
# The fields of a reading in column order: what `parse_row` returns and the ingest COPYs.
READING_COLUMNS = ("device_id", "ts", "seq", "rss", "battery", "temperature", "humidity", "firmware", "payload",
                   "received_at")  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """How much a reading may weigh and how far its clock may be off."""

    max_bytes: int = 128 * 1024
    max_future: timedelta = timedelta(hours=24)
    max_age: timedelta = timedelta(days=90)
    max_depth: int = 32  # nesting of the extra fields


DEFAULT_LIMITS = Limits()


# A measure in its range, as msgspec checks it.
_RSS, _BATTERY, _TEMPERATURE, _HUMIDITY = (
    Annotated[float, msgspec.Meta(ge=RANGES[name][0], le=RANGES[name][1])]
    for name in ("rss", "battery", "temperature", "humidity")
)


class _CommonFields(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A record with only the reading's own fields, their types and ranges checked by msgspec: the fast path.

    Integers for `rss` and the other measures become floats, as the checked path's float(value) makes them;
    floats, booleans and strings are refused for `seq`, booleans and strings for the measures (JSON has no
    NaN; 1e400 is refused as out of range). gc=False: these hold no containers, so the collector need not
    track them."""

    device_id: str
    ts: str | int
    seq: Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
    rss: _RSS
    battery: _BATTERY | None = None
    temperature: _TEMPERATURE | None = None
    humidity: _HUMIDITY | None = None
    firmware: str | None = None
    received_at: str | int | None = None


_COMMON_DECODER = msgspec.json.Decoder(_CommonFields)


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    ts: datetime
    seq: int
    rss: float
    battery: float | None = None
    temperature: float | None = None
    humidity: float | None = None
    firmware: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    received_at: datetime | None = None

    @property
    def key(self) -> tuple[str, datetime, int]:
        """The idempotency key: a redelivered reading has the same key and is stored once."""
        return (self.device_id, self.ts, self.seq)


class InvalidReading(ValueError):
    """Why a record is not a storable reading. `code` is short and stable (metrics, DLQ attribute)."""

    def __init__(self, code: str, detail: str, device_id: str | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.device_id = device_id

    @property
    def reason(self) -> str:
        return str(self)


def parse_reading(raw: bytes, now: datetime, limits: Limits = DEFAULT_LIMITS) -> Reading:
    """Validate one record. `now` is the reference for timestamp sanity (the ingest's clock)."""
    return Reading(*RowParser(now, limits)(raw))


def parse_row(raw: bytes, now: datetime, limits: Limits = DEFAULT_LIMITS) -> tuple:
    """`parse_reading`'s fields as a tuple in READING_COLUMNS order (ts and received_at in UTC)."""
    return RowParser(now, limits)(raw)


class RowParser:
    """`parse_row` for many records against one clock: the ingest makes one per batch.

    The ingest's form: the clock bounds are worked out once, no object is built per record, and the tuple is
    the COPY row as it is.
    """

    __slots__ = ("_earliest", "_latest", "_seconds", "limits")

    def __init__(self, now: datetime, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._latest = now + limits.max_future
        self._earliest = now - limits.max_age
        self._seconds: dict[int, datetime] = {}  # epoch second -> its datetime, for _from_epoch_ms

    def __call__(self, raw: bytes) -> tuple:
        row = self.common_rows((raw,))[0]
        return self.checked_row(raw) if row is None else row

    def common_rows(self, records: Sequence[bytes]) -> list[tuple | None]:
        """Each record's row if it has the common shape, else None (then `checked_row` gives its verdict); accepts
        only what `checked_row` accepts, with the same row.

        All of a batch's records in one loop, without a call per record: the ingest's hot path, where calls and
        attribute look-ups would cost as much as the checks."""
        decode, max_bytes = _COMMON_DECODER.decode, self.limits.max_bytes
        earliest, latest, from_epoch_ms, timestamp = self._earliest, self._latest, self._from_epoch_ms, self._timestamp
        rows: list[tuple | None] = []
        append = rows.append
        for raw in records:
            if len(raw) > max_bytes:
                append(None)
                continue
            try:
                fields = decode(raw)
            except msgspec.MsgspecError:  # invalid JSON, a value out of range or of another type, extra fields
                append(None)
                continue
            device_id, ts, firmware, received_at = fields.device_id, fields.ts, fields.firmware, fields.received_at
            # DEVICE_ID's test without a call: nothing is left once its characters are stripped from both ends.
            if (
                not 0 < len(device_id) <= MAX_DEVICE_ID_LEN
                or device_id.strip(DEVICE_ID_CHARACTERS)
                or (firmware is not None and (len(firmware) > MAX_FIRMWARE_LEN or "\x00" in firmware))
            ):  # msgspec refuses lone surrogates itself
                append(None)
                continue
            # The usual forms (ts ISO-8601 in UTC, received_at epoch milliseconds) skip _timestamp's dispatch on the
            # value's type, converting them as it does.
            try:
                if type(ts) is not str or (ts := _FROM_ISO(ts)).tzinfo is not UTC:
                    ts = timestamp(fields.ts, "ts")
                if type(received_at) is int:
                    received_at = from_epoch_ms(received_at)
                elif received_at is not None:
                    received_at = timestamp(received_at, "received_at")
            except (ValueError, OverflowError):  # InvalidReading is a ValueError
                append(None)
                continue
            if not earliest <= ts <= latest:
                append(None)
                continue
            append((device_id, ts, fields.seq, fields.rss, fields.battery, fields.temperature, fields.humidity,
                    firmware, {}, received_at))  # fmt: skip
        return rows

    def _timestamp(self, value: Any, name: str) -> datetime:
        """ISO-8601 (naive means UTC) or epoch milliseconds, in UTC; microsecond precision, like timestamptz.
        `value` comes from JSON, so its type is exact (`type` is cheaper than isinstance, and excludes bool)."""
        kind = type(value)
        if kind is str:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise InvalidReading("bad_ts", f"{name} {value!r:.60} is not ISO-8601") from None
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            if parsed.tzinfo is UTC:
                return parsed
            try:
                return parsed.astimezone(UTC)
            except OverflowError:
                raise InvalidReading("bad_ts", f"{name} {value!r:.60} is out of range") from None
        if kind is int or kind is float:
            try:
                return self._from_epoch_ms(value) if kind is int else EPOCH + timedelta(milliseconds=value)
            except (OverflowError, ValueError):
                raise InvalidReading("bad_ts", f"{name} {value!r:.40} ms is out of range") from None
        raise InvalidReading("bad_ts", f"{name} must be ISO-8601 or epoch ms, got {_type_name(value)}")

    def _from_epoch_ms(self, milliseconds: int) -> datetime:
        """EPOCH + timedelta(milliseconds=...), exactly, in half its instructions (that timedelta, on a 13-digit
        integer, costs as much as decoding the record). Every reading carries one (the rule's received_at) and
        a batch's readings share a few seconds, so each second's datetime is made once and the milliseconds
        come from a table."""
        second, millisecond = divmod(milliseconds, 1000)
        start = self._seconds.get(second)
        if start is None:
            if len(self._seconds) >= _MAX_CACHED_SECONDS:  # a parser kept for more than a batch
                self._seconds.clear()
            start = self._seconds[second] = EPOCH + timedelta(seconds=second)
        return start + _MILLISECONDS[millisecond]

    def checked_row(self, raw: bytes) -> tuple:
        """Every check, in the order that decides a rejection's reason."""
        limits = self.limits
        if len(raw) > limits.max_bytes:
            raise InvalidReading("oversize", f"{len(raw)} bytes > {limits.max_bytes}")
        document = _decode_json(raw)
        if type(document) is not dict:
            raise InvalidReading("not_an_object", f"top level is {_type_name(document)}")
        device_id = document.get("device_id")
        if type(device_id) is not str or not DEVICE_ID.fullmatch(device_id):
            raise InvalidReading("bad_device_id", f"device_id must match {DEVICE_ID.pattern}, got {device_id!r:.80}")
        try:
            return self._row(document, device_id)
        except InvalidReading as invalid:
            invalid.device_id = device_id
            raise

    def _row(self, document: dict[str, Any], device_id: str) -> tuple:
        limits = self.limits
        ts = self._timestamp(_required(document, "ts"), "ts")
        if ts > self._latest:
            raise InvalidReading("ts_in_future", f"ts {ts.isoformat()} is more than {limits.max_future} ahead")
        if ts < self._earliest:
            raise InvalidReading("ts_too_old", f"ts {ts.isoformat()} is more than {limits.max_age} old")
        seq = _required(document, "seq")
        if type(seq) is not int or not 0 <= seq <= MAX_SEQ:  # JSON gives exact types; `type` also excludes bool
            raise InvalidReading("bad_seq", f"seq must be an integer in [0, 2^63), got {seq!r:.40}")
        received_at = document.get("received_at")
        if document.keys() <= KNOWN_FIELDS:
            extras: dict[str, Any] = {}
        else:
            extras = {key: value for key, value in document.items() if key not in KNOWN_FIELDS}
            _check_storable(extras, limits.max_depth)
        return (
            device_id,
            ts,
            seq,
            _measure(document, "rss", required=True),
            _measure(document, "battery"),
            _measure(document, "temperature"),
            _measure(document, "humidity"),
            _firmware(document.get("firmware")),
            extras,
            None if received_at is None else self._timestamp(received_at, "received_at"),
        )


def _reject_constant(name: str) -> float:
    raise InvalidReading("non_finite_number", f"{name} is not a number PostgreSQL can store")


# One decoder for all records (json.loads with options would build one per call). Overflowing literals
# such as 1e400 parse to inf: the measure and extra-field checks reject those.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# orjson parses a record about five times faster than the stdlib, and agrees with it on every document it
# accepts except integers beyond 64 bits, which it turns into floats: a record with a run of 19 digits (which
# such an integer needs) goes to the stdlib decoder, which keeps them exact. Whatever orjson refuses (NaN,
# lone surrogates, invalid UTF-8, deep nesting, bad syntax) goes there too, for the reason and its code.
# The run is looked for by mapping every digit to "0" and everything else to " " (two C-speed passes; a
# regular expression costs more than orjson's whole parse).
_DIGITS_AS_ZEROS = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_NINETEEN_DIGITS = b"0" * 19


def _decode_json(raw: bytes) -> Any:
    if _NINETEEN_DIGITS not in raw.translate(_DIGITS_AS_ZEROS):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidReading("invalid_utf8", str(exc)) from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise InvalidReading("too_deep", "JSON nesting exceeds the parser's limit") from None
    except ValueError as exc:  # JSONDecodeError, and ints beyond Python's digit limit
        if isinstance(exc, InvalidReading):
            raise
        raise InvalidReading("invalid_json", str(exc)[:200]) from None


def _required(document: dict[str, Any], name: str) -> Any:
    value = document.get(name)
    if value is None:
        raise InvalidReading("missing_field", f"{name} is required")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _measure(document: dict[str, Any], name: str, required: bool = False) -> float | None:
    value = document.get(name)
    low, high = RANGES[name]
    kind = type(value)
    if (kind is float or kind is int) and low <= value <= high:  # the usual case first; NaN is not in range
        return float(value)
    if value is None:
        if required:
            raise InvalidReading("missing_field", f"{name} is required")
        return None
    if not _is_number(value):
        raise InvalidReading("wrong_type", f"{name} must be a number, got {_type_name(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidReading("non_finite_number", f"{name} overflows a double")
    raise InvalidReading("out_of_range", f"{name} {value!r:.40} outside [{low}, {high}]")


def _firmware(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidReading("wrong_type", f"firmware must be a string, got {_type_name(value)}")
    if len(value) > MAX_FIRMWARE_LEN:
        raise InvalidReading("out_of_range", f"firmware longer than {MAX_FIRMWARE_LEN} characters")
    _check_text(value, "firmware")
    return value


def _check_text(text: str, where: str) -> None:
    if "\x00" in text:
        raise InvalidReading("unstorable_text", f"NUL character in {where}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escaped as \ud800 in the JSON
        raise InvalidReading("unstorable_text", f"lone surrogate in {where}") from None


def _check_storable(extras: dict[str, Any], max_depth: int) -> None:
    """Every key and string of the extra fields storable in jsonb, nesting at most `max_depth` deep."""
    pending: list[tuple[Any, int]] = [(extras, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list) and depth > max_depth:
            raise InvalidReading("too_deep", f"extra fields nest deeper than {max_depth}")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, "a field name")
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value, "a field value")
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidReading("non_finite_number", "an extra field overflows a double")
