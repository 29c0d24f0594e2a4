"""Window maths and run planning of the aggregate (pure, no I/O). Expected values are written by hand."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aggregate.plan import plan_full_recompute, plan_incremental
from aggregate.windows import (
    Window,
    initial_watermark,
    next_watermark,
    utc_hours_overlapping,
    window_start,
    windows_closing_between,
    windows_of_hour,
)
from hypothesis import given
from hypothesis import strategies as st

PLUS_2 = timezone(timedelta(hours=2))
PLUS_5_45 = timezone(timedelta(hours=5, minutes=45))


def utc(hour: int, minute: int = 0, second: int = 0, micro: int = 0, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hour, minute, second, micro, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ts", "minutes", "expected"),
    [
        (utc(12, 5), 5, utc(12, 5)),  # exactly on the boundary: the window that starts there
        (utc(12, 4, 59, 999_999), 5, utc(12, 0)),
        (utc(12, 59, 59, 999_999), 60, utc(12)),
        (utc(13), 60, utc(13)),
        (datetime(2024, 3, 10, 14, 7, 30, tzinfo=PLUS_2), 5, utc(12, 5)),  # +02:00 lands in the UTC window
        (datetime(2024, 3, 10, 14, 7, 30, tzinfo=PLUS_2), 60, utc(12)),
        (datetime(2024, 3, 10, 18, 0, tzinfo=PLUS_5_45), 60, utc(12)),  # 12:15Z
        (datetime(2024, 3, 10, 18, 0, tzinfo=PLUS_5_45), 5, utc(12, 15)),
        (datetime(2024, 3, 11, 0, 30, tzinfo=PLUS_2), 60, utc(22, day=10)),  # previous UTC day
    ],
)
def test_window_start_is_utc_aligned(ts, minutes, expected):
    start = window_start(ts, minutes)
    assert start == expected
    assert start.utcoffset() == timedelta(0)


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError, match="time zone"):
        window_start(datetime(2024, 3, 10, 12, 0), 5)


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.sampled_from([timedelta(hours=h, minutes=m) for h in range(-12, 15) for m in (0, 30, 45)]),
    st.sampled_from([5, 60]),
)
def test_window_contains_its_timestamp(naive, offset, minutes):
    ts = naive.replace(tzinfo=timezone(offset))
    start = window_start(ts, minutes)
    assert start <= ts < start + timedelta(minutes=minutes)
    assert start.second == 0 and start.microsecond == 0 and start.minute % minutes == 0


def test_window_end():
    assert Window(5, utc(12, 55)).end == utc(13)
    assert Window(60, utc(23, day=10)).end == datetime(2024, 3, 11, 0, 0, tzinfo=UTC)


def test_hours_overlapping_a_utc_hour_is_that_hour():
    assert utc_hours_overlapping(utc(12), utc(13)) == [utc(12)]


def test_hours_overlapping_a_local_hour_off_the_utc_grid_are_two():
    local_hour = datetime(2024, 3, 10, 18, 0, tzinfo=PLUS_5_45)  # 12:15Z .. 13:15Z
    assert utc_hours_overlapping(local_hour, local_hour + timedelta(hours=1)) == [utc(12), utc(13)]


def test_windows_of_hour_are_the_hour_and_twelve_five_minute_windows():
    windows = windows_of_hour(utc(12))
    assert windows[0] == Window(60, utc(12))
    assert [w.start for w in windows[1:]] == [utc(12, m) for m in range(0, 60, 5)]
    assert all(w.minutes == 5 for w in windows[1:])
    with pytest.raises(ValueError, match="UTC hour"):
        windows_of_hour(utc(12, 15))


def test_windows_closing_between_includes_the_hour_that_closed():
    closing = windows_closing_between(utc(12, 50), utc(13, 5))
    assert closing == [Window(5, utc(12, 50)), Window(5, utc(12, 55)), Window(5, utc(13)), Window(60, utc(12))]


def test_no_windows_close_in_an_empty_interval():
    assert windows_closing_between(utc(12, 5), utc(12, 5)) == []


def test_watermark_follows_the_last_closed_window():
    assert initial_watermark(utc(12, 7, 30)) == utc(12)
    assert next_watermark(utc(12), utc(12, 7, 30), max_catchup_windows=288) == utc(12, 5)
    assert next_watermark(utc(12, 5), utc(12, 9, 59), max_catchup_windows=288) == utc(12, 5)


def test_watermark_catch_up_is_bounded_and_never_goes_back():
    assert next_watermark(utc(0), utc(12, 7), max_catchup_windows=3) == utc(0, 15)
    assert next_watermark(utc(13), utc(12, 7), max_catchup_windows=3) == utc(13)


def test_incremental_plan_dirty_hour_and_closing_windows_for_every_device():
    plan = plan_incremental(
        dirty_hours=[("a", utc(11))],
        device_ids=["a", "b"],
        previous_watermark=utc(12),
        now=utc(12, 7),
        max_catchup_windows=288,
    )
    dirty = [("a", w) for w in windows_of_hour(utc(11))]
    closing = [(d, Window(5, utc(12))) for d in ("a", "b")]
    assert plan.items == sorted(dirty + closing)
    assert plan.watermark == utc(12, 5)
    assert plan.fleet_windows == [utc(11, m) for m in range(0, 60, 5)] + [utc(12)]
    assert plan.device_count == 2


def test_incremental_plan_deduplicates_and_skips_fleet_windows_not_started():
    plan = plan_incremental(
        dirty_hours=[("a", utc(12)), ("a", utc(12))],
        device_ids=["a"],
        previous_watermark=utc(12),
        now=utc(12, 7),
        max_catchup_windows=288,
    )
    assert len(plan.items) == 13  # the closing 12:00 window is one of the dirty hour's windows
    assert plan.fleet_windows == [utc(12), utc(12, 5)]


def test_incremental_plan_expands_a_mark_off_the_utc_grid():
    plan = plan_incremental(
        dirty_hours=[("a", datetime(2024, 3, 10, 18, 0, tzinfo=PLUS_5_45))],
        device_ids=[],
        previous_watermark=utc(14),
        now=utc(14, 1),
        max_catchup_windows=288,
    )
    assert {w for _, w in plan.items if w.minutes == 60} == {Window(60, utc(12)), Window(60, utc(13))}


def test_full_recompute_plans_every_window_of_every_device_and_keeps_the_watermark():
    plan = plan_full_recompute(["a", "b"], utc(10, 30), utc(12), now=utc(13))
    assert len(plan.items) == 2 * 2 * 13  # devices x hours (10:00, 11:00) x windows
    assert plan.watermark is None
    with pytest.raises(ValueError, match="after"):
        plan_full_recompute(["a"], utc(12), utc(12), now=utc(13))
