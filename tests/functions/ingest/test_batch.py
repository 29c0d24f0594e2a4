"""ingest/batch.py's DeviceSpans: a batch's readings summed up for the bookkeeping. Pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st
from ingest.batch import DeviceSpans, device_spans

T0 = datetime(2026, 3, 1, 10, 20, tzinfo=UTC)


def row(device_id: str, ts: datetime) -> tuple:
    """A reading row, with only what the bookkeeping reads (device_id, ts) meaningful."""
    return (device_id, ts, 0, -70.0, None, None, None, None, {}, None)


def hours_of(spans: DeviceSpans) -> set[tuple[str, datetime]]:
    """The (device, UTC hour) pairs the statement makes of the hour readings (date_trunc('hour', ts, 'UTC'))."""
    return {
        (device_id, ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0))
        for device_id, ts in zip(spans.hour_device_ids, spans.hour_timestamps, strict=True)
    }


def test_each_device_gets_its_earliest_and_latest_reading_sorted_by_device_id_byte_by_byte():
    """The order the statement upserts (and locks) the registry's rows in, whatever the database's collation:
    "B" < "_" < "a" in bytes (COLLATE "C"), not in most locales."""
    rows = [row("b", T0 + timedelta(seconds=5)), row("a", T0), row("b", T0), row("b", T0 + timedelta(seconds=9)),
            row("a", T0 - timedelta(seconds=1)), row("_", T0), row("B", T0)]  # fmt: skip

    spans = device_spans(rows)

    assert spans.device_ids == ["B", "_", "a", "b"]
    assert spans.first == [T0, T0, T0 - timedelta(seconds=1), T0]
    assert spans.last == [T0, T0, T0, T0 + timedelta(seconds=9)]


def test_a_device_within_one_hour_is_one_hour_reading():
    spans = device_spans([row("a", T0), row("a", T0 + timedelta(minutes=30)), row("a", T0 + timedelta(minutes=5))])

    assert list(zip(spans.hour_device_ids, spans.hour_timestamps, strict=True)) == [("a", T0)]


def test_a_device_across_an_hour_boundary_in_less_than_an_hour_is_its_first_and_last_reading():
    last = T0 + timedelta(minutes=50)  # 11:10, the next hour
    spans = device_spans([row("a", T0), row("a", T0 + timedelta(minutes=20)), row("a", last)])

    assert list(zip(spans.hour_device_ids, spans.hour_timestamps, strict=True)) == [("a", T0), ("a", last)]


def test_a_device_spanning_an_hour_or_more_gives_every_reading():
    stamps = [T0, T0 + timedelta(minutes=70), T0 + timedelta(minutes=140), T0 + timedelta(minutes=141)]
    spans = device_spans([row("a", ts) for ts in stamps] + [row("b", T0)])

    assert list(zip(spans.hour_device_ids, spans.hour_timestamps, strict=True)) == [
        ("b", T0), *(("a", ts) for ts in stamps)
    ]  # fmt: skip


def test_readings_not_in_utc_give_both_ends_which_is_never_wrong():
    """The hour field of another time zone need not be the UTC hour's: 15:10 and 15:40 at +05:30 are 09:40 and
    10:10 UTC."""
    india = timezone(timedelta(hours=5, minutes=30))
    first, last = datetime(2026, 3, 1, 15, 10, tzinfo=india), datetime(2026, 3, 1, 15, 40, tzinfo=india)

    spans = device_spans([row("a", first), row("a", last)])

    assert hours_of(spans) == {("a", datetime(2026, 3, 1, 10, tzinfo=UTC)), ("a", datetime(2026, 3, 1, 9, tzinfo=UTC))}


def test_no_readings_no_spans():
    assert device_spans([]) == DeviceSpans([], [], [], [], [])


@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 4 * 3600 * 10**6)), max_size=60))
def test_the_hour_readings_give_exactly_the_hours_of_the_readings(readings):
    """What the statement derives from the sums is what it derived from every reading before: each device's
    min/max ts and its distinct UTC hours."""
    rows = [row(device_id, T0 + timedelta(microseconds=offset)) for device_id, offset in readings]

    spans = device_spans(rows)

    assert hours_of(spans) == {(r[0], r[1].replace(minute=0, second=0, microsecond=0)) for r in rows}
    expected = {d: (min(r[1] for r in rows if r[0] == d), max(r[1] for r in rows if r[0] == d)) for d, _ in readings}
    assert dict(zip(spans.device_ids, zip(spans.first, spans.last, strict=True), strict=True)) == expected
