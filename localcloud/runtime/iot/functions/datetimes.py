"""parse_time() and time_to_epoch()
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-sql-function-parse-time): Java
patterns run by javatime.py; a pattern, zone or text that cannot be used gives Undefined, and a literal pattern
that never can is refused when the rule loads.
"""

from __future__ import annotations

from typing import Any

from localcloud.runtime.iot.conversions import to_int
from localcloud.runtime.iot.functions import javatime
from localcloud.runtime.iot.functions.base import Function, literal_string
from localcloud.runtime.iot.sql_ast import Context, UnsupportedSql
from localcloud.runtime.iot.values import UNDEFINED


def _parse_time(ctx: Context, pattern: Any, timestamp: Any, zone_id: Any = "UTC") -> Any:
    epoch_ms = to_int(timestamp, ctx.numbers)
    if type(pattern) is not str or type(zone_id) is not str or epoch_ms is UNDEFINED:
        return UNDEFINED
    try:
        return javatime.joda_format(pattern, epoch_ms, zone_id)
    except (javatime.InvalidPattern, OverflowError, ValueError):
        return UNDEFINED


def _time_to_epoch(ctx: Context, text: Any, pattern: Any) -> Any:
    if type(text) is not str or type(pattern) is not str:
        return UNDEFINED
    try:
        return ctx.numbers.int(javatime.java_parse_epoch_ms(text, pattern))
    except (javatime.InvalidPattern, OverflowError, ValueError):
        return UNDEFINED


def _checker(position: int, check: Any, function: str) -> Any:
    def check_literal(args: tuple[Any, ...]) -> None:
        pattern = literal_string(args[position])
        if pattern is None:
            return
        try:
            check(pattern)
        except javatime.InvalidPattern as exc:
            raise UnsupportedSql(f"{function}(): pattern {pattern!r}: {exc}") from exc

    return check_literal


FUNCTIONS = [
    Function("parse_time", _parse_time, 2, 3, since_2016=True, check=_checker(0, javatime.check_joda, "parse_time")),
    Function(
        "time_to_epoch", _time_to_epoch, 2, 2, since_2016=True, check=_checker(1, javatime.check_java, "time_to_epoch")
    ),
]
