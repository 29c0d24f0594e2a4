"""Java date/time patterns, the two parse_time() and time_to_epoch() use:

- formatting with Joda-Time's DateTimeFormat letters (parse_time):
  https://www.joda.org/joda-time/apidocs/org/joda/time/format/DateTimeFormat.html
- parsing with java.time's DateTimeFormatter letters (time_to_epoch), resolved as its default SMART style does:
  https://docs.oracle.com/en/java/javase/11/docs/api/java.base/java/time/format/DateTimeFormatter.html

Text is English (Java's default locale on IoT Core is assumed to be en_US). Letters outside the supported
subset raise InvalidPattern: a literal pattern is refused when the rule loads, a computed one gives Undefined.
Not supported: full time zone names ('zzzz'), week-based fields in java.time patterns, optional sections '[...]',
and zone abbreviations other than UTC/GMT/UT/Z when parsing (Python has no table mapping e.g. 'PST' to a zone).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = list(calendar.month_name)[1:]
DAYS = list(calendar.day_name)  # Monday first, as date.weekday()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidPattern(ValueError):
    """A pattern (or zone) Java would reject, or one outside the supported subset."""


def tokens(pattern: str) -> list[tuple[str, int] | str]:
    """A pattern as (letter, count) runs and literal text ('...' quotes text, '' is a quote)."""
    parts: list[tuple[str, int] | str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "'":
            end, text = index + 1, []
            while True:
                if end >= len(pattern):
                    raise InvalidPattern(f"unterminated quote in {pattern!r}")
                if pattern[end] == "'":
                    if end + 1 < len(pattern) and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            parts.append("".join(text) if end > index + 1 else "'")
            index = end + 1
        elif char.isascii() and char.isalpha():
            end = index
            while end < len(pattern) and pattern[end] == char:
                end += 1
            parts.append((char, end - index))
            index = end
        else:
            parts.append(char)
            index += 1
    return parts


# -- zones ---------------------------------------------------------------------------------------------------------
_OFFSET = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?(?::?(\d{2}))?")


def _offset(sign: str, hours: str, minutes: str | None, seconds: str | None = None) -> timezone:
    delta = timedelta(hours=int(hours), minutes=int(minutes or 0), seconds=int(seconds or 0))
    if delta > timedelta(hours=18):
        raise InvalidPattern("zone offset beyond 18 hours")
    return timezone(-delta if sign == "-" else delta)


def zone(zone_id: str) -> tzinfo:
    """A zone as Java's ZoneId.of / Joda's DateTimeZone.forID accept it: a region, UTC/GMT/UT/Z, an offset, or a
    UTC/GMT/UT prefix with an offset."""
    if zone_id in {"UTC", "GMT", "UT", "Z"}:
        return UTC
    for prefix in ("UTC", "GMT", "UT", ""):
        rest = zone_id[len(prefix) :] if zone_id.startswith(prefix) else None
        if rest and rest[0] in "+-":
            match = _OFFSET.fullmatch(rest)
            if match is None:
                raise InvalidPattern(f"invalid zone offset {zone_id!r}")
            return _offset(*match.groups())
    try:
        return ZoneInfo(zone_id)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidPattern(f"unknown time zone {zone_id!r}") from exc


# -- Joda formatting (parse_time) ----------------------------------------------------------------------------------
def _number(value: int, count: int) -> str:
    return f"-{-value:0{count}d}" if value < 0 else f"{value:0{count}d}"


def _offset_text(moment: datetime, colon: bool) -> str:
    seconds = int(moment.utcoffset().total_seconds())  # type: ignore[union-attr]
    sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
    hours, minutes = divmod(seconds // 60, 60)
    return f"{sign}{hours:02d}{':' if colon else ''}{minutes:02d}"


def _year_of_era(moment: datetime) -> int:
    return moment.year if moment.year > 0 else 1 - moment.year


_JODA: dict[str, Callable[[datetime, int, str], str]] = {
    "G": lambda m, n, z: "AD" if m.year > 0 else "BC",
    "C": lambda m, n, z: _number(_year_of_era(m) // 100, n),
    "Y": lambda m, n, z: _number(_year_of_era(m) % 100, 2) if n == 2 else _number(_year_of_era(m), n),
    "y": lambda m, n, z: _number(m.year % 100, 2) if n == 2 else _number(m.year, n),
    "x": lambda m, n, z: _number(m.isocalendar()[0] % 100, 2) if n == 2 else _number(m.isocalendar()[0], n),
    "w": lambda m, n, z: _number(m.isocalendar()[1], n),
    "e": lambda m, n, z: _number(m.isoweekday(), n),
    "E": lambda m, n, z: DAYS[m.weekday()] if n >= 4 else DAYS[m.weekday()][:3],
    "D": lambda m, n, z: _number(m.timetuple().tm_yday, n),
    "M": lambda m, n, z: MONTHS[m.month - 1] if n >= 4 else MONTHS[m.month - 1][:3] if n == 3 else _number(m.month, n),
    "d": lambda m, n, z: _number(m.day, n),
    "a": lambda m, n, z: "AM" if m.hour < 12 else "PM",
    "K": lambda m, n, z: _number(m.hour % 12, n),
    "h": lambda m, n, z: _number(m.hour % 12 or 12, n),
    "H": lambda m, n, z: _number(m.hour, n),
    "k": lambda m, n, z: _number(m.hour or 24, n),
    "m": lambda m, n, z: _number(m.minute, n),
    "s": lambda m, n, z: _number(m.second, n),
    "S": lambda m, n, z: f"{m.microsecond:06d}000"[:n].ljust(n, "0"),
    "z": lambda m, n, z: _short_zone_name(m),
    "Z": lambda m, n, z: _offset_text(m, colon=n == 2) if n <= 2 else z,
}


def _short_zone_name(moment: datetime) -> str:
    name = moment.tzname() or ""
    return "UTC" if name in {"UTC", "Z"} else name


def check_joda(pattern: str) -> None:
    for part in tokens(pattern):
        if isinstance(part, tuple):
            letter, count = part
            if letter not in _JODA:
                raise InvalidPattern(f"pattern letter {letter!r} is not a Joda-Time format letter")
            if letter == "z" and count >= 4:
                raise InvalidPattern("full time zone names ('zzzz') are not available locally")


def joda_format(pattern: str, epoch_ms: int, zone_id: str) -> str:
    check_joda(pattern)
    where = zone(zone_id)
    moment = (_EPOCH + timedelta(milliseconds=epoch_ms)).astimezone(where)
    zone_name = "UTC" if where is UTC else zone_id
    return "".join(
        part if isinstance(part, str) else _JODA[part[0]](moment, part[1], zone_name) for part in tokens(pattern)
    )


# -- java.time parsing (time_to_epoch) -----------------------------------------------------------------------------
def _names(names: list[str], count: int) -> str:
    return "|".join(re.escape(name if count >= 4 else name[:3]) for name in sorted(names, key=len, reverse=True))


def _digits(count: int, widest: int) -> str:
    return rf"(\d{{1,{widest}}})" if count == 1 else rf"(\d{{{count}}})"


def _parser_for(letter: str, count: int) -> str:
    """The regex (one group) matching one pattern letter run."""
    if letter in "yu":
        sign = "[+-]?" if letter == "u" else ""
        return r"(\d{2})" if count == 2 else rf"({sign}\d{{{count},9}})"
    if letter in "ML":
        return _digits(count, 2) if count <= 2 else f"({_names(MONTHS, count)})" if count <= 4 else ""
    if letter in "dHhKkms":
        return _digits(count, 2) if count <= 2 else ""
    if letter == "D":
        return rf"(\d{{{count},3}})" if count <= 3 else ""
    if letter == "E":
        return f"({_names(DAYS, count)})" if count <= 4 else ""
    if letter == "a" and count == 1:
        return "(AM|PM)"
    if letter == "G" and count <= 4:
        return "(AD|BC|Anno Domini|Before Christ)"
    if letter == "S":
        return rf"(\d{{{count}}})"
    if (letter == "V" and count == 2) or (letter == "z" and count <= 3):
        return r"((?:UTC|GMT|UT)?[+-]\d{1,2}(?::?\d{2}){0,2}|[A-Za-z][A-Za-z0-9~/._+-]*)"
    if letter in "Xx" and count <= 3:
        zulu = "Z|" if letter == "X" else ""
        return (zulu + (r"[+-]\d{2}(?:\d{2})?", r"[+-]\d{4}", r"[+-]\d{2}:\d{2}")[count - 1]).join("()")
    if letter == "Z" and count <= 3:
        return r"([+-]\d{4})"
    if letter == "Z" and count == 5:
        return r"(Z|[+-]\d{2}:\d{2})"
    if letter == "O" and count in (1, 4):
        return r"(GMT(?:[+-]\d{1,2}(?::\d{2})?)?)"
    return ""


def _compile(pattern: str) -> tuple[re.Pattern[str], list[tuple[str, int]]]:
    regex, fields = [], []
    for part in tokens(pattern):
        if isinstance(part, str):
            regex.append(re.escape(part))
            continue
        matcher = _parser_for(*part)
        if not matcher:
            raise InvalidPattern(f"pattern letters {part[0] * part[1]!r} are not supported for parsing")
        regex.append(matcher)
        fields.append(part)
    return re.compile("".join(regex)), fields


def check_java(pattern: str) -> None:
    if "[" in "".join(part for part in tokens(pattern) if isinstance(part, str)):
        raise InvalidPattern("optional sections '[...]' are not supported")
    _compile(pattern)


def _resolve_zone(letter: str, text: str) -> tzinfo:
    if text == "Z":
        return UTC
    if letter in "VzO":
        return zone(text.replace("GMT", "", 1) or "UTC") if letter == "O" else zone(text)
    match = _OFFSET.fullmatch(text)
    if match is None:
        raise InvalidPattern(f"invalid offset {text!r}")
    return _offset(*match.groups())


def java_parse_epoch_ms(text: str, pattern: str) -> int:
    """Milliseconds since the epoch of `text` read with `pattern`; ValueError when it does not match or resolve."""
    check_java(pattern)
    regex, fields = _compile(pattern)
    match = regex.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} does not match {pattern!r}")
    values: dict[str, str] = {}
    zone_found: tzinfo = UTC
    for (letter, count), found in zip(fields, match.groups(), strict=True):
        if letter in "VzXxZO":
            zone_found = _resolve_zone(letter, found)
        elif values.setdefault(letter, found) != found:
            raise ValueError(f"conflicting values for {letter!r}")
        if letter in "yu" and count == 2:
            values[letter] = str(2000 + int(found))
    moment = _local_datetime(values).replace(tzinfo=zone_found)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _local_datetime(values: dict[str, str]) -> datetime:
    year = int(values.get("u") or values.get("y") or 0) if ("u" in values or "y" in values) else None
    if year is None:
        raise ValueError("no year in the pattern")
    if values.get("G") in {"BC", "Before Christ"} and "y" in values:
        year = 1 - year
    if "D" in values and "M" not in values:
        day = date(year, 1, 1) + timedelta(days=int(values["D"]) - 1)
    else:
        month_text = values.get("M") or values.get("L")
        if month_text is None or "d" not in values:
            raise ValueError("the pattern has no complete date")
        month = (
            int(month_text) if month_text.isdigit() else [m[: len(month_text)] for m in MONTHS].index(month_text) + 1
        )
        if not 1 <= month <= 12 or not 1 <= int(values["d"]) <= 31:
            raise ValueError("month or day out of range")
        # SMART resolution: a day beyond the month's last becomes its last day.
        day = date(year, month, min(int(values["d"]), calendar.monthrange(year, month)[1]))
    if "E" in values and DAYS[day.weekday()][: len(values["E"])] != values["E"]:
        raise ValueError(f"{values['E']} does not match {day}")
    return datetime.combine(day, time()) + _time_of_day(values)


def _time_of_day(values: dict[str, str]) -> timedelta:
    if "H" in values:
        hour = int(values["H"])
    elif "k" in values:
        hour = int(values["k"]) % 24
    elif "h" in values or "K" in values:
        if "a" not in values:
            raise ValueError("an hour of the half-day needs 'a'")
        hour = int(values.get("h", values.get("K", "0"))) % 12 + (12 if values["a"] == "PM" else 0)
    else:
        hour = 0
    minute, second = int(values.get("m", 0)), int(values.get("s", 0))
    fraction = values.get("S", "0")
    if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        raise ValueError("time of day out of range")
    return timedelta(hours=hour, minutes=minute, seconds=second, microseconds=int(fraction.ljust(6, "0")[:6]))
