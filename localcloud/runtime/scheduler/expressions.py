"""EventBridge schedule expressions (`rate()`, `cron()`, `at()`) → next fire times. Pure: no I/O, no clock.

AWS cron has six fields, `minutes hours day-of-month month day-of-week year`, where day-of-week runs
1-7 = SUN-SAT (standard cron: 0-6), one of the two day fields must be `?`, and `L`, `W` and `#` are
allowed. croniter does the calendar arithmetic; this module translates the AWS dialect into croniter's
seven-field form (`min hour dom month dow second year`) and rejects what croniter cannot express.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from croniter.croniter import CroniterError

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
_DOW_NUMBER = re.compile(r"\d+")


class ScheduleExpressionError(ValueError):
    """The expression is not valid AWS syntax, or uses a feature the local scheduler cannot evaluate."""


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed expression. `next_after(instant, anchor)` is the first fire time strictly after `instant`.

    `anchor` matters only for rate(): AWS counts a rate from when the rule/schedule was created (here:
    when the scheduler first saw it), so fires are anchor + k * period.
    """

    text: str
    kind: str  # "rate" | "cron" | "at"
    period: timedelta | None = None
    croniter_expr: str | None = None
    at_time: datetime | None = None
    timezone: str = "UTC"

    def next_after(self, instant: datetime, anchor: datetime | None = None) -> datetime | None:
        """The next fire time (UTC) strictly after `instant`, or None when there is none (a past at())."""
        instant = _as_utc(instant)
        if self.kind == "rate":
            assert self.period is not None
            start = _as_utc(anchor) if anchor is not None else instant
            if instant < start:
                return start + self.period
            periods = (instant - start) // self.period + 1
            return start + periods * self.period
        if self.kind == "at":
            assert self.at_time is not None
            return self.at_time if self.at_time > instant else None
        assert self.croniter_expr is not None
        local = instant.astimezone(ZoneInfo(self.timezone))
        try:
            fire = croniter(self.croniter_expr, local).get_next(datetime)
        except CroniterBadDateError:
            return None  # e.g. a year field entirely in the past
        return fire.astimezone(UTC)


def parse(expression: str, timezone: str = "UTC") -> ScheduleExpression:
    """Parse `rate(...)`, `cron(...)` or `at(...)`; `timezone` is Scheduler's ScheduleExpressionTimezone."""
    text = expression.strip()
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleExpressionError(f"unknown time zone {timezone!r}") from exc
    if match := _RATE.match(text):
        value, unit = int(match.group(1)), match.group(2)
        if value < 1:
            raise ScheduleExpressionError(f"{text}: the rate value must be a positive integer")
        if (value == 1) != (not unit.endswith("s")):
            raise ScheduleExpressionError(f"{text}: AWS requires the singular unit for 1 and the plural otherwise")
        return ScheduleExpression(text, "rate", period=timedelta(seconds=value * _UNIT_SECONDS[unit.rstrip("s")]))
    if match := _AT.match(text):
        local = datetime.fromisoformat(match.group(1)).replace(tzinfo=zone)
        return ScheduleExpression(text, "at", at_time=local.astimezone(UTC), timezone=zone.key)
    if match := _CRON.match(text):
        expr = _to_croniter(match.group(1), text)
        return ScheduleExpression(text, "cron", croniter_expr=expr, timezone=zone.key)
    raise ScheduleExpressionError(f"{expression!r} is not rate(...), cron(...) or at(yyyy-mm-ddThh:mm:ss)")


def _to_croniter(fields_text: str, text: str) -> str:
    fields = fields_text.split()
    if len(fields) != 6:
        raise ScheduleExpressionError(f"{text}: AWS cron needs 6 fields (minutes hours dom month dow year)")
    minutes, hours, dom, month, dow, year = (field.upper() for field in fields)
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(f"{text}: exactly one of day-of-month and day-of-week must be '?'")
    if "LW" in dom:
        raise ScheduleExpressionError(f"{text}: 'LW' (last weekday of the month) is not supported locally")
    if "#" in dom or "W" in dow or "/" in dow:
        raise ScheduleExpressionError(f"{text}: day-of-week allows only , - * ? L # and day-of-month no #")
    if "L" in dom and dom != "L":
        raise ScheduleExpressionError(f"{text}: day-of-month 'L' must stand alone (offsets are not supported)")
    expr = " ".join([minutes, hours, _star(dom), month, _aws_dow_to_cron(_star(dow), text), "0", year])
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except (CroniterError, ValueError, KeyError) as exc:
        raise ScheduleExpressionError(f"{text}: {exc}") from exc
    return expr


def _star(field: str) -> str:
    return "*" if field == "?" else field


def _aws_dow_to_cron(field: str, text: str) -> str:
    """AWS numbers days 1-7 from Sunday, croniter 0-6; AWS writes "last Friday" `6L`, croniter `L5`."""
    if field == "L":
        return "6"  # the last day of the week: Saturday
    parts = []
    for part in field.split(","):
        if part.endswith("L"):
            day = part[:-1]
            parts.append("L" + _shift(day, text))
        elif "#" in part:
            day, nth = part.split("#", 1)
            parts.append(f"{_shift(day, text)}#{nth}")
        else:
            parts.append("-".join(_shift(day, text) for day in part.split("-")))
    return ",".join(parts)


def _shift(day: str, text: str) -> str:
    if not _DOW_NUMBER.fullmatch(day):
        return day  # `*` or a name (SUN..SAT), the same in both dialects
    number = int(day)
    if not 1 <= number <= 7:
        raise ScheduleExpressionError(f"{text}: day-of-week {number} is outside 1-7 (SUN-SAT)")
    return str(number - 1)


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("use timezone-aware datetimes")
    return moment.astimezone(UTC)
