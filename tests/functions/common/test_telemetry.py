"""Validation of raw telemetry records (common.telemetry), no I/O."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from common.telemetry import (
    DEFAULT_LIMITS,
    MAX_SEQ,
    RANGES,
    READING_COLUMNS,
    InvalidReading,
    Limits,
    RowParser,
    parse_reading,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def record(**fields) -> dict:
    base = {"device_id": "dev-1", "ts": "2024-06-01T11:59:00Z", "seq": 42, "rss": -71, "received_at": 1717243140123}
    return {**base, **fields}


def encode(document) -> bytes:
    return json.dumps(document).encode()


def rejection(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> InvalidReading:
    with pytest.raises(InvalidReading) as caught:
        parse_reading(raw, NOW, limits)
    return caught.value


def test_full_reading_is_parsed_with_extras_in_payload():
    raw = encode(record(battery=87.5, temperature=-3, humidity=40, firmware="1.2.3", fw_build=17, loc={"lat": 1.5}))
    reading = parse_reading(raw, NOW)
    assert reading.key == ("dev-1", datetime(2024, 6, 1, 11, 59, tzinfo=UTC), 42)
    assert (reading.rss, reading.battery, reading.temperature, reading.humidity) == (-71.0, 87.5, -3.0, 40.0)
    assert reading.firmware == "1.2.3"
    assert reading.payload == {"fw_build": 17, "loc": {"lat": 1.5}}
    assert reading.received_at == datetime(2024, 6, 1, 11, 59, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (1717243140123, datetime(2024, 6, 1, 11, 59, 0, 123000, tzinfo=UTC)),  # epoch ms
        ("2024-06-01T13:59:00+02:00", datetime(2024, 6, 1, 11, 59, tzinfo=UTC)),  # offset normalised to UTC
        ("2024-06-01T11:59:00", datetime(2024, 6, 1, 11, 59, tzinfo=UTC)),  # naive means UTC
        ("2024-06-01T11:59:00.123456789Z", datetime(2024, 6, 1, 11, 59, 0, 123456, tzinfo=UTC)),  # ns cut to µs
    ],
)
def test_timestamp_forms(ts, expected):
    assert parse_reading(encode(record(ts=ts)), NOW).ts == expected


def test_optional_fields_may_be_absent_or_null():
    reading = parse_reading(encode(record(battery=None, firmware=None)), NOW)
    assert (reading.battery, reading.temperature, reading.humidity, reading.firmware) == (None, None, None, None)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (encode(record(ts=None)), "missing_field"),
        (encode({k: v for k, v in record().items() if k != "seq"}), "missing_field"),
        (encode({k: v for k, v in record().items() if k != "rss"}), "missing_field"),
        (encode({k: v for k, v in record().items() if k != "device_id"}), "bad_device_id"),
        (encode(record(device_id="a/b")), "bad_device_id"),
        (encode(record(device_id="x" * 129)), "bad_device_id"),
        (encode(record(seq="42")), "bad_seq"),
        (encode(record(seq=1.5)), "bad_seq"),
        (encode(record(seq=True)), "bad_seq"),
        (encode(record(seq=-1)), "bad_seq"),
        (encode(record(seq=MAX_SEQ + 1)), "bad_seq"),
        (encode(record(rss="-70")), "wrong_type"),
        (encode(record(rss=True)), "wrong_type"),
        (encode(record(battery=[1])), "wrong_type"),
        (encode(record(firmware=12)), "wrong_type"),
        (encode(record(battery=101)), "out_of_range"),
        (encode(record(rss=-1e30)), "out_of_range"),
        (encode(record(temperature=10**40)), "out_of_range"),  # beyond PostgreSQL real
        (encode(record(ts="soon")), "bad_ts"),
        (encode(record(ts=True)), "bad_ts"),
        (encode(record(ts=10**30)), "bad_ts"),
        (encode(record(ts="2024-06-03T12:00:00Z")), "ts_in_future"),
        (encode(record(ts="1970-01-01T00:00:00Z")), "ts_too_old"),
        (encode(record(ts=0)), "ts_too_old"),
        (encode(record(received_at="never")), "bad_ts"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1, "rss": NaN}', "non_finite_number"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1, "rss": -Infinity}', "non_finite_number"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1, "rss": 1e400}', "non_finite_number"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1' + b"1" * 5000 + b', "rss": -1}', "invalid_json"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1, "rss": -1, "x": [1e999]}', "non_finite_number"),
        (encode(record(rss=10**400)), "out_of_range"),
        (b"\xff\xfe{}", "invalid_utf8"),
        (b'{"device_id": "dev-\xc3\x28"}', "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"null", "not_an_object"),
        (encode(record(note="a\x00b")), "unstorable_text"),
        (encode(record(**{"bad\x00key": 1})), "unstorable_text"),
        (b'{"device_id": "dev-1", "ts": 1717243140123, "seq": 1, "rss": -1, "x": "\\ud800"}', "unstorable_text"),
        (encode(record(firmware="v\x00")), "unstorable_text"),
        (encode(record(blob="x" * (DEFAULT_LIMITS.max_bytes + 1))), "oversize"),
    ],
)
def test_invalid_records_are_rejected_with_a_reason(raw, code):
    invalid = rejection(raw)
    assert invalid.code == code
    assert invalid.reason.startswith(f"{code}: ")


def test_device_id_is_kept_on_a_rejection_when_known():
    assert rejection(encode(record(seq="x"))).device_id == "dev-1"
    assert rejection(b"{").device_id is None


def test_deeply_nested_extras_are_rejected_at_the_limit():
    def nested(depth: int):
        value: object = 1
        for _ in range(depth):
            value = {"n": value}
        return value

    limits = Limits(max_depth=5)
    assert parse_reading(encode(record(deep=nested(4))), NOW, limits).payload["deep"] == nested(4)
    assert rejection(encode(record(deep=nested(5))), limits).code == "too_deep"
    pathological = b'{"device_id": "dev-1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert rejection(pathological, Limits(max_bytes=10**6)).code == "too_deep"


def test_clock_limits_are_inclusive_bounds():
    limits = Limits(max_future=timedelta(minutes=5), max_age=timedelta(days=1))
    assert parse_reading(encode(record(ts=(NOW + timedelta(minutes=5)).isoformat())), NOW, limits)
    assert rejection(encode(record(ts=(NOW + timedelta(minutes=5, seconds=1)).isoformat())), limits).code == (
        "ts_in_future"
    )
    assert parse_reading(encode(record(ts=(NOW - timedelta(days=1)).isoformat())), NOW, limits)


# -- properties ---------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


# The machine is shared and busy: generation speed is not what these properties are about.
relaxed = settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)


@relaxed
@given(st.binary(max_size=300))
def test_any_bytes_give_a_reading_or_a_rejection_never_a_crash(raw):
    try:
        parse_reading(raw, NOW)
    except InvalidReading as invalid:
        assert invalid.code


@relaxed
@given(st.dictionaries(st.sampled_from(["device_id", "ts", "seq", "rss", "battery", "firmware", "x"]), json_values))
def test_any_json_object_gives_a_reading_or_a_rejection(document):
    try:
        parse_reading(encode(document), NOW)
    except InvalidReading as invalid:
        assert invalid.code


@settings(relaxed, max_examples=200)
@given(
    device=st.from_regex(r"[A-Za-z0-9_.:@-]{1,128}", fullmatch=True),
    offset_ms=st.integers(-int(DEFAULT_LIMITS.max_age.total_seconds() * 1000), 0),
    seq=st.integers(0, MAX_SEQ),
    rss=st.floats(*RANGES["rss"]),
    extras=st.dictionaries(
        st.text(min_size=1, max_size=10).filter(lambda k: k not in record()), json_values, max_size=3
    ),
)
def test_valid_readings_round_trip(device, offset_ms, seq, rss, extras):
    ts = NOW + timedelta(milliseconds=offset_ms)
    extras = {k: v for k, v in extras.items() if k not in {"battery", "temperature", "humidity", "firmware"}}
    try:
        raw = json.dumps({**extras, "device_id": device, "ts": ts.isoformat(), "seq": seq, "rss": rss}).encode()
    except ValueError:
        return
    if any(
        c in raw.decode() for c in ("\\u0000", "\\ud8", "\\ud9", "\\uda", "\\udb", "\\udc", "\\udd", "\\ude", "\\udf")
    ):
        return  # unstorable text: covered above
    reading = parse_reading(raw, NOW)
    assert reading.key == (device, ts, seq)
    assert math.isclose(reading.rss, rss)
    assert reading.payload == json.loads(json.dumps(extras))


def test_integers_beyond_64_bits_in_extra_fields_stay_exact():
    # The fast decoder (orjson) would turn these into floats: such records go to the exact one.
    reading = parse_reading(encode(record(counter=2**70, low=-(2**64), id_text="1234567890123456789012")), NOW)
    assert reading.payload == {"counter": 2**70, "low": -(2**64), "id_text": "1234567890123456789012"}
    assert type(reading.payload["counter"]) is int


@relaxed
@given(st.dictionaries(st.sampled_from(["ts", "seq", "rss", "battery", "firmware", "received_at", "x"]), json_values))
def test_row_parser_gives_the_fields_of_parse_reading_in_column_order(fields):
    raw = encode(record(**fields))
    try:
        reading = parse_reading(raw, NOW)
    except InvalidReading as invalid:
        with pytest.raises(InvalidReading) as caught:
            RowParser(NOW)(raw)
        assert (caught.value.code, caught.value.reason) == (invalid.code, invalid.reason)
    else:
        assert RowParser(NOW)(raw) == tuple(getattr(reading, column) for column in READING_COLUMNS)
