from datetime import UTC, datetime, timedelta, timezone

import pytest

from localcloud.runtime.scheduler.expressions import ScheduleExpressionError, parse


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_fires_at_anchor_plus_whole_periods(expression, period):
    anchor = utc(2026, 5, 1, 12, 0, 30)
    rate = parse(expression)
    assert rate.next_after(anchor, anchor) == anchor + period
    # Exactly on a fire time: the next one is a full period later (strictly after).
    assert rate.next_after(anchor + 3 * period, anchor) == anchor + 4 * period
    assert rate.next_after(anchor + 3 * period - timedelta(seconds=1), anchor) == anchor + 3 * period


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(2 minute)", "rate(0 minutes)", "rate(5 weeks)"])
def test_rate_rejects_what_aws_rejects(expression):
    with pytest.raises(ScheduleExpressionError):
        parse(expression)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # every day at 12:00 UTC; at the fire time itself the next one is the following day
        ("cron(0 12 * * ? *)", utc(2026, 1, 1, 11, 59), utc(2026, 1, 1, 12, 0)),
        ("cron(0 12 * * ? *)", utc(2026, 1, 1, 12, 0), utc(2026, 1, 2, 12, 0)),
        # AWS day-of-week 2-6 is MON-FRI (1 = Sunday); 2026-01-03 is a Saturday
        ("cron(15 10 ? * 2-6 *)", utc(2026, 1, 2, 10, 15), utc(2026, 1, 5, 10, 15)),
        ("cron(15 10 ? * MON-FRI *)", utc(2026, 1, 2, 10, 15), utc(2026, 1, 5, 10, 15)),
        ("cron(0 8 ? * 1 *)", utc(2026, 1, 1), utc(2026, 1, 4, 8, 0)),  # 1 = Sunday
        ("cron(0 8 ? * 7 *)", utc(2026, 1, 1), utc(2026, 1, 3, 8, 0)),  # 7 = Saturday
        # every 5 minutes: crossing an hour boundary
        ("cron(0/5 * * * ? *)", utc(2026, 1, 1, 10, 58, 59), utc(2026, 1, 1, 11, 0)),
        # last day of the month, across a leap February
        ("cron(0 9 L * ? *)", utc(2028, 2, 1), utc(2028, 2, 29, 9, 0)),
        ("cron(0 9 L * ? *)", utc(2026, 2, 1), utc(2026, 2, 28, 9, 0)),
        # 6L = last Friday; 6#2 = second Friday (AWS numbering)
        ("cron(0 10 ? * 6L *)", utc(2026, 1, 1), utc(2026, 1, 30, 10, 0)),
        ("cron(0 10 ? * 6#2 *)", utc(2026, 1, 1), utc(2026, 1, 9, 10, 0)),
        # 15W: nearest weekday to the 15th (2026-02-15 is a Sunday -> Monday 16th)
        ("cron(0 10 15W * ? *)", utc(2026, 2, 1), utc(2026, 2, 16, 10, 0)),
        # year field
        ("cron(0 0 1 1 ? 2027)", utc(2026, 6, 1), utc(2027, 1, 1, 0, 0)),
        # year boundary
        ("cron(30 23 31 12 ? *)", utc(2026, 12, 31, 23, 30), utc(2027, 12, 31, 23, 30)),
    ],
)
def test_cron_next_fire_time(expression, after, expected):
    assert parse(expression).next_after(after) == expected


def test_cron_whose_years_are_past_never_fires():
    assert parse("cron(0 0 1 1 ? 2025)").next_after(utc(2026, 1, 1)) is None


def test_cron_in_a_time_zone_follows_daylight_saving():
    every_morning = parse("cron(0 9 * * ? *)", "Europe/Berlin")
    assert every_morning.next_after(utc(2026, 3, 1)) == utc(2026, 3, 1, 8, 0)  # CET = UTC+1
    assert every_morning.next_after(utc(2026, 4, 1)) == utc(2026, 4, 1, 7, 0)  # CEST = UTC+2


def test_next_after_accepts_any_aware_instant():
    plus_two = timezone(timedelta(hours=2))
    assert parse("cron(0 12 * * ? *)").next_after(datetime(2026, 1, 1, 13, 0, tzinfo=plus_two)) == utc(2026, 1, 1, 12)


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 12 * * *)",  # five fields: standard cron, not AWS
        "cron(0 12 * * MON *)",  # neither day field is ?
        "cron(0 12 ? * ? *)",  # both are
        "cron(0 12 ? * 8 *)",  # day-of-week outside 1-7
        "cron(0 12 LW * ? *)",  # last weekday: not supported locally
        "cron(0 25 * * ? *)",  # hour out of range
        "every 5 minutes",
    ],
)
def test_invalid_or_unsupported_cron_is_a_clear_error(expression):
    with pytest.raises(ScheduleExpressionError, match=r"\S"):
        parse(expression)


def test_at_fires_once_in_its_time_zone():
    once = parse("at(2026-07-01T10:00:00)", "America/New_York")  # EDT = UTC-4
    assert once.next_after(utc(2026, 6, 1)) == utc(2026, 7, 1, 14, 0)
    assert once.next_after(utc(2026, 7, 1, 14, 0)) is None


def test_unknown_time_zone_is_rejected():
    with pytest.raises(ScheduleExpressionError, match="time zone"):
        parse("rate(1 hour)", "Mars/Olympus")
