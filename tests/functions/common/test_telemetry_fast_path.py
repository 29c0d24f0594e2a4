"""common.telemetry's shortcuts agree with what they short-cut. Whatever record the msgspec fast path accepts,
the checked path accepts with the same row (values and types), so the fast path can never change a verdict; a
batch's records get the rows they get one by one; the device id's test without a regular expression is
DEVICE_ID's; epoch milliseconds give the datetime timedelta(milliseconds=...) gives. No I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from common.telemetry import (
    DEFAULT_LIMITS,
    DEVICE_ID,
    DEVICE_ID_CHARACTERS,
    EPOCH,
    MAX_DEVICE_ID_LEN,
    MAX_FIRMWARE_LEN,
    MAX_SEQ,
    RowParser,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
PARSER = RowParser(NOW)
COMMON = {"device_id": "dev-1", "ts": "2024-06-01T11:59:00Z", "seq": 42, "rss": -71, "battery": 88.5,
          "temperature": 21.25, "humidity": 40, "firmware": "1.2.3", "received_at": 1717243140123}  # fmt: skip


def checked_or_none(raw: bytes) -> tuple | None:
    try:
        return PARSER.checked_row(raw)
    except ValueError:  # InvalidReading
        return None


def assert_fast_path_agrees(raw: bytes) -> tuple | None:
    fast = PARSER.common_rows([raw])[0]
    if fast is not None:
        checked = PARSER.checked_row(raw)
        assert fast == checked
        assert [type(value) for value in fast] == [type(value) for value in checked]
        assert fast[1].tzinfo is UTC
    return fast


def test_the_common_record_takes_the_fast_path():
    """The shape the IoT rule writes (its timestamp() as received_at) is the one the fast path is for."""
    row = assert_fast_path_agrees(json.dumps(COMMON).encode())
    assert row is not None
    assert row[:3] == ("dev-1", datetime(2024, 6, 1, 11, 59, tzinfo=UTC), 42)
    assert assert_fast_path_agrees(json.dumps({**COMMON, "ts": 1717243140000}).encode()) is not None


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({**COMMON, "extra": 1}).encode(),  # extra fields: the checked path keeps them in payload
        json.dumps({**COMMON, "firmware": "x\x00"}).encode(),
        json.dumps({**COMMON, "firmware": "x" * (MAX_FIRMWARE_LEN + 1)}).encode(),
        json.dumps({**COMMON, "seq": 1.0}).encode(),
        json.dumps({**COMMON, "seq": True}).encode(),
        json.dumps({**COMMON, "rss": True}).encode(),
        json.dumps({**COMMON, "rss": 51}).encode(),
        json.dumps({**COMMON, "ts": 1.5}).encode(),
        json.dumps({**COMMON, "ts": "2024-06-05T00:00:00Z"}).encode(),  # in the future
        json.dumps({**COMMON, "device_id": "a/b"}).encode(),
        b'{"device_id": "dev-1", "ts": "2024-06-01T11:59:00Z", "seq": 1, "rss": 1e400}',
        b'{"device_id": "dev-1", "ts": "2024-06-01T11:59:00Z", "seq": 1, "rss": -1, "firmware": "\\udc00"}',
        b"\xef\xbb\xbf" + json.dumps(COMMON).encode(),  # a BOM
        json.dumps(COMMON).encode() + b" " * DEFAULT_LIMITS.max_bytes,  # oversize, however common its fields
    ],
)
def test_records_of_another_shape_go_the_checked_way(raw):
    assert PARSER.common_rows([raw]) == [None]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"device_id": "a", "device_id": "dev-2", "ts": 1717243140000, "seq": 1, "rss": -1, "seq": 2}',  # last wins
        b' {"device_id": "dev-1", "ts": "2024-06-01 11:59:00+02:00", "seq": 0, "rss": -0.0}\n',
        json.dumps({**COMMON, "firmware": "\U0001f600" * MAX_FIRMWARE_LEN}, ensure_ascii=True).encode(),
        json.dumps(
            {**COMMON, "seq": MAX_SEQ, "rss": 50, "battery": None, "received_at": "2024-06-01T11:59:01"}
        ).encode(),
    ],
)
def test_edge_records_the_fast_path_accepts_give_the_checked_row(raw):
    assert assert_fast_path_agrees(raw) is not None


def anything() -> st.SearchStrategy:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=5)  # fmt: skip


def field_values(name: str) -> st.SearchStrategy:
    """Values near what the field takes, and values of every other kind."""
    plausible = {
        "device_id": st.from_regex(r"[A-Za-z0-9_.:@-]{1,130}", fullmatch=True) | st.text(max_size=5),
        "ts": st.integers(1_700_000_000_000, 1_720_000_000_000)
        | st.datetimes(datetime(2024, 2, 1), datetime(2024, 6, 3), timezones=st.sampled_from([UTC, None])).map(
            lambda d: d.isoformat()
        )
        | st.sampled_from(["2024-06-01T11:59:00Z", "2024-06-01T11:59:00.1234567+05:30", "2024-06-01", "20240601T1159"]),
        "seq": st.integers(-5, MAX_SEQ + 5) | st.sampled_from([MAX_SEQ, MAX_SEQ + 1, 2**64, -1, 0]),
        "firmware": st.text(max_size=MAX_FIRMWARE_LEN + 2),
    }.get(name, st.floats(-250, 250) | st.integers(-250, 250))
    return plausible | anything()


@st.composite
def documents(draw) -> dict:
    names = draw(st.lists(st.sampled_from(sorted(COMMON)), unique=True))
    document = {name: COMMON[name] for name in sorted(COMMON) if name not in names}
    document |= {name: draw(field_values(name)) for name in names}
    if draw(st.booleans()):
        document.pop(draw(st.sampled_from(sorted(document))), None)
    if draw(st.integers(0, 9)) == 0:
        document[draw(st.text(max_size=8))] = draw(anything())
    return document


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.booleans())
@example({**COMMON, "received_at": 10**30}, False)
@example({**COMMON, "ts": -(10**17)}, False)
@example({**COMMON, "battery": 100, "humidity": 0, "temperature": -100}, True)
def test_whatever_the_fast_path_accepts_the_checked_path_accepts_identically(document, ascii_only):
    raw = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    fast = assert_fast_path_agrees(raw)
    if fast is None and document.keys() <= COMMON.keys() and checked_or_none(raw) is not None:
        # Valid and with only the reading's own fields, yet left to the checked path: only epoch ms given
        # as a float may be (the fast path takes integers and strings).
        assert any(type(document.get(name)) is float for name in ("ts", "received_at"))


@given(st.binary(max_size=300))
def test_any_bytes_the_fast_path_accepts_the_checked_path_accepts_identically(raw):
    assert_fast_path_agrees(raw)


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents() | st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")), max_size=12))
def test_a_batch_gives_each_record_the_row_it_gets_alone(records):
    """Valid and invalid records mixed (the checked way's among them): nothing carries over from one to the next."""
    raws = [(json.dumps(record) if isinstance(record, dict) else record).encode("utf-8", "surrogatepass")
            for record in records]  # fmt: skip
    assert RowParser(NOW).common_rows(raws) == [RowParser(NOW).common_rows([raw])[0] for raw in raws]


@given(st.from_regex(r"[A-Za-z0-9_.:@-]{0,130}", fullmatch=True) | st.text(max_size=6))
@example("a\n")
@example("é")
def test_the_device_id_test_without_the_regular_expression_is_device_ids(device_id):
    stripped = 0 < len(device_id) <= MAX_DEVICE_ID_LEN and not device_id.strip(DEVICE_ID_CHARACTERS)
    assert stripped == bool(DEVICE_ID.fullmatch(device_id))


def test_timestamps_at_the_clock_limits_take_either_path_the_same_way():
    for offset in (timedelta(hours=24), timedelta(hours=24, microseconds=1), -timedelta(days=90)):
        raw = json.dumps({**COMMON, "ts": (NOW + offset).isoformat()}).encode()
        assert assert_fast_path_agrees(raw) == checked_or_none(raw)


@given(
    st.lists(
        st.integers(-(2**70), 2**70)
        | st.integers(-(10**13), 10**13)
        | st.integers(1_700_000_000_000, 1_700_000_100_000),
        max_size=50,
    )
)
def test_epoch_milliseconds_give_what_timedelta_gives(values):
    parser = RowParser(NOW)  # one parser for many values: its cache of seconds is reused
    for value in values:
        try:
            expected = EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            with pytest.raises(OverflowError):
                parser._from_epoch_ms(value)
        else:
            assert parser._from_epoch_ms(value) == expected


def test_a_parser_kept_for_many_records_holds_a_bounded_cache_of_seconds():
    parser = RowParser(NOW)
    for second in range(10_000):
        parser._from_epoch_ms(second * 1000)
    assert 0 < len(parser._seconds) <= 4096
