"""Grafana's PostgreSQL query expansion, reproduced so that dashboard queries can be run without Grafana.

Grafana expands a panel's rawSql in two stages, and so does `expand`:
1. the browser's template service replaces variables — `$var`, `[[var]]`, `${var}`, `${var:format}` and the
   built-ins `$__interval`, `$__interval_ms`, `$__from`, `$__to` — formatting values with the SQL data
   source's `interpolateVariable` unless a format is named (packages/grafana-sql SqlDatasource.ts,
   public/app/features/templating template_srv.ts and formatRegistry.ts);
2. the server's macro engine replaces `$__name(args)` macros (pkg/tsdb/grafana-postgresql-datasource/
   macros.go, and sqleng's `$__unixEpochFrom()`/`$__unixEpochTo()`).
`$__interval` itself comes from the time range and the panel width (rangeutil.calculateInterval).

Macros reproduced: $__time, $__timeEpoch, $__timeFilter, $__timeFrom, $__timeTo, $__timeGroup,
$__timeGroupAlias, $__unixEpochFilter, $__unixEpochFrom, $__unixEpochTo. Any other macro (the nanosecond and
epoch-group variants included), and an unknown variable format, is an error here, where Grafana would fail
the query or fall back to the glob format: a dashboard typo then fails its test.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

ALL = "$__all"


@dataclass(frozen=True)
class TimeRange:
    start: datetime  # timezone-aware
    end: datetime

    @property
    def span_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


@dataclass(frozen=True)
class Variable:
    """A template variable with its current value, as the dashboard's variable picker holds it."""

    name: str
    value: str | tuple[str, ...]  # ALL (or (ALL,)) when "All" is selected
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None  # the variable's custom "All" value, inserted as written
    options: tuple[str, ...] = ()  # option values without "All": what "All" stands for otherwise

    @property
    def is_all(self) -> bool:
        return self.value == ALL or (isinstance(self.value, tuple) and self.value[:1] == (ALL,))


# ---- stage 1: template variables -----------------------------------------------------------------------
VARIABLE_REF = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?::([^}]+))?\}")


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_datasource_format(value: str | tuple[str, ...], multi_or_all: bool) -> str:
    """SqlDatasource.interpolateVariable: the default format of every SQL data source."""
    if isinstance(value, str):
        return _quote_literal(value) if multi_or_all else value.replace("'", "''")
    return ",".join(_quote_literal(v) for v in value)


def _named_format(value: str | tuple[str, ...], fmt: str) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "raw":
        return value if isinstance(value, str) else ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    if fmt == "sqlstring":
        return ",".join(_quote_literal(v) for v in values)
    if fmt == "glob":
        return "{" + ",".join(values) + "}" if len(values) > 1 else values[0]
    raise ValueError(f"unsupported variable format {fmt!r}")


def interpolate_variables(sql: str, variables: Mapping[str, Variable], builtins: Mapping[str, str]) -> str:
    """Replace variable references like Grafana's template service; unknown names stay (macros do)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name in builtins:
            return _named_format(builtins[name], fmt) if fmt else builtins[name].replace("'", "''")
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        value: str | tuple[str, ...] = variable.value
        if variable.is_all:
            if variable.all_value is not None:
                return interpolate_variables(variable.all_value, {}, builtins)  # custom All: not formatted
            value = variable.options
        if fmt:
            return _named_format(value, fmt)
        return _sql_datasource_format(value, variable.multi or variable.include_all)

    return VARIABLE_REF.sub(replace, sql)


# ---- the interval: rangeutil.calculateInterval -----------------------------------------------------------
# (upper bound in ms, rounded interval in ms): rangeutil.roundInterval's ladder.
_ROUNDING = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
    (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip
_UNIT_SECONDS = {"y": 31536000, "M": 2592000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}


def round_interval(interval_ms: float) -> int:
    for bound, rounded in _ROUNDING:
        if interval_ms < bound:
            return rounded
    return 31536000000


def interval_to_ms(text: str) -> float:
    """rangeutil.describeInterval: `5m`, `1h`, `500ms`; a bare number is seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|[yMwdhms])?", text.strip())
    if not match:
        raise ValueError(f"invalid interval {text!r}")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"] * 1000


def seconds_to_hms(seconds: float) -> str:
    """rangeutil.secondsToHms: the largest whole unit only (90 s -> `1m`)."""
    years = int(seconds // 31536000)
    if years:
        return f"{years}y"
    rest = seconds % 31536000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if int(rest // size):
            return f"{int(rest // size)}{unit}"
    milliseconds = int(seconds * 1000)
    return f"{milliseconds}ms" if milliseconds else "less than a millisecond"


@dataclass(frozen=True)
class Interval:
    text: str  # what $__interval becomes, e.g. "5m"
    ms: int  # what $__interval_ms becomes


def calculate_interval(time_range: TimeRange, max_data_points: int, min_interval: str = "1m") -> Interval:
    """The panel's interval: span / data points rounded to a nice step, at least the panel's (or the data
    source's `timeInterval`, default 1m) minimum."""
    interval_ms = max(round_interval(time_range.span_ms / max_data_points), interval_to_ms(min_interval))
    return Interval(seconds_to_hms(interval_ms / 1000), int(interval_ms))


# ---- stage 2: server-side macros -----------------------------------------------------------------------
MACRO_CALL = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of the UTC time: fraction without trailing zeros, `Z`."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_float(value: float) -> str:
    """Go's %v of a float64 (strconv 'g', shortest): exponent form when the decimal exponent is < -4 or
    >= 6, e.g. 300 -> `300`, 2592000 -> `2.592e+06`."""
    if value == 0:
        return "0"
    sign, digits, exponent = Decimal(repr(float(value))).normalize().as_tuple()
    text_digits = "".join(map(str, digits))
    point = len(text_digits) + int(exponent)  # digits before the decimal point
    power = point - 1
    prefix = "-" if sign else ""
    if power < -4 or power >= 6:
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if power < 0 else '+'}{abs(power):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return prefix + text_digits + "0" * (point - len(text_digits))
    return f"{prefix}{text_digits[:point]}.{text_digits[point:]}"


def parse_interval(text: str, now: datetime | None = None) -> timedelta:
    """gtime.ParseInterval: `Nd`/`Nw`/`NM`/`Ny` are calendar steps from now (UTC), the rest Go durations."""
    calendar = re.fullmatch(r"(\d+)([dwMy])", text)
    if calendar:
        count, unit = int(calendar.group(1)), calendar.group(2)
        if unit in "dw":
            return timedelta(days=count * (7 if unit == "w" else 1))
        # Go's AddDate: months roll over, then an overflowing day rolls into the next month.
        now = now or datetime.now(UTC)
        months = now.month - 1 + count * (12 if unit == "y" else 1)
        first = now.replace(year=now.year + months // 12, month=months % 12 + 1, day=1)
        return first + timedelta(days=now.day - 1) - now
    parts = GO_DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"error parsing interval {text}")
    return timedelta(seconds=sum(float(n) * _GO_UNITS[u] for n, u in parts))


def _time_group(args: list[str], timescaledb: bool) -> str:
    if len(args) < 2:
        raise ValueError("macro __timeGroup needs time column and interval and optional fill value")
    seconds = parse_interval(args[1].strip("'")).total_seconds()
    if len(args) == 3 and not re.fullmatch(r"NULL|previous|-?\d+(\.\d+)?", args[2]):
        raise ValueError(f"invalid fill value {args[2]!r}")  # fill itself is done on the result, by Grafana
    if timescaledb:
        return f"time_bucket('{seconds:.3f}s',{args[0]})"
    return f"floor(extract(epoch from {args[0]})/{go_float(seconds)})*{go_float(seconds)}"


def _macro(name: str, args: list[str], time_range: TimeRange, timescaledb: bool) -> str:
    start, end = rfc3339nano(time_range.start), rfc3339nano(time_range.end)
    column_macros = {"__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter"}
    if name in column_macros and not args[0]:
        raise ValueError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{start}' AND '{end}'"
    if name == "__timeFrom":
        return f"'{start}'"
    if name == "__timeTo":
        return f"'{end}'"
    if name == "__timeGroup":
        return _time_group(args, timescaledb)
    if name == "__timeGroupAlias":
        return _time_group(args, timescaledb) + ' AS "time"'
    epoch_from, epoch_to = int(time_range.start.timestamp()), int(time_range.end.timestamp())
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {epoch_from} AND {args[0]} <= {epoch_to}"
    if name == "__unixEpochFrom":
        return str(epoch_from)
    if name == "__unixEpochTo":
        return str(epoch_to)
    raise ValueError(f"unknown macro {name!r}")


def expand_macros(sql: str, time_range: TimeRange, timescaledb: bool = False) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        # Grafana < 5.3 compatibility, kept by macros.go: `$__timeGroup(...)` followed by ',' gets the alias.
        if name == "__timeGroup" and sql[sql.index(match.group(0)) + len(match.group(0)) :].startswith(","):
            name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in match.group(2).split(",")]
        return _macro(name, args, time_range, timescaledb)

    return MACRO_CALL.sub(replace, sql)


def expand(
    sql: str,
    time_range: TimeRange,
    interval: Interval,
    variables: Mapping[str, Variable] | None = None,
    timescaledb: bool = False,
) -> str:
    """The SQL Grafana sends to PostgreSQL for this query text."""
    builtins = {
        "__interval": interval.text,
        "__interval_ms": str(interval.ms),
        "__from": str(int(time_range.start.timestamp() * 1000)),
        "__to": str(int(time_range.end.timestamp() * 1000)),
    }
    return expand_macros(interpolate_variables(sql, variables or {}, builtins), time_range, timescaledb)
