"""The standard conversions (the "Conversions" tables of
https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-data-types.html#iot-sql-conversions) and the cast()
rules (https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-sql-function-cast).

Decimal to Int: the tables say "rounded down" (functions, cast) and "truncates" (strings); both describe
rounding toward zero (Java's RoundingMode.DOWN), which is what every conversion here does.
"""

from __future__ import annotations

import re
from decimal import ROUND_DOWN, Decimal
from typing import Any

from localcloud.runtime.iot.values import DECIMAL_CONTEXT, UNDEFINED, Numbers, to_json_text

# ^-?\d+(\.\d+)?((?i)E-?\d+)?$ from the tables; ASCII digits only, as in Java.
_DECIMAL_STRING = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE]-?[0-9]+)?")


def to_decimal(value: Any, numbers: Numbers) -> Any:
    """Int/Decimal as they are, a matching String parsed, Null stays Null, anything else Undefined."""
    kind = type(value)
    if kind is int or kind is Decimal:
        return value
    if kind is str:
        if _DECIMAL_STRING.fullmatch(value) is None:
            return UNDEFINED
        try:
            return numbers.parse(value)
        except ValueError:
            return UNDEFINED
    if value is None:
        return None
    return UNDEFINED


def to_number(value: Any, numbers: Numbers) -> Any:
    """A function's numeric argument: like to_decimal, but Null is Undefined too (every function table says so)."""
    converted = to_decimal(value, numbers)
    return UNDEFINED if converted is None else converted


def truncate(value: Any) -> int:
    """An Int or Decimal rounded toward zero."""
    if type(value) is int:
        return value
    return int(value.to_integral_value(rounding=ROUND_DOWN))


def to_int(value: Any, numbers: Numbers) -> Any:
    """An Int argument: numbers and numeric strings rounded toward zero; anything else Undefined."""
    number = to_number(value, numbers)
    return UNDEFINED if number is UNDEFINED else truncate(number)


def to_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    if type(value) is str:
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    return UNDEFINED


def to_string(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is Decimal:
        return str(value)
    if kind is list or kind is dict:
        return to_json_text(value)
    return UNDEFINED  # Null and Undefined


# -- cast(value AS type) -----------------------------------------------------------------------------------------
def _cast_int(value: Any, numbers: Numbers) -> Any:
    if type(value) is bool:
        return int(value)
    return to_int(value, numbers)


def _cast_decimal(value: Any, numbers: Numbers) -> Any:
    if type(value) is bool:
        return numbers.decimal(Decimal("1.0") if value else Decimal("0.0"))
    return to_number(value, numbers)


def _cast_double(value: Any, numbers: Numbers) -> Any:
    number = _cast_decimal(value, numbers)
    return UNDEFINED if number is UNDEFINED else numbers.double(float(number))


def _cast_bool(value: Any, numbers: Numbers) -> Any:
    kind = type(value)
    if kind is int or kind is Decimal:
        return value != 0
    return to_bool(value)


def _cast_string(value: Any, numbers: Numbers) -> Any:
    return to_string(value)


CAST_TYPES = {
    "string": _cast_string,
    "nvarchar": _cast_string,
    "text": _cast_string,
    "ntext": _cast_string,
    "varchar": _cast_string,
    "int": _cast_int,
    "integer": _cast_int,
    "double": _cast_double,
    # "Additionally, for SQL version 2016-03-23":
    "decimal": _cast_decimal,
    "bool": _cast_bool,
    "boolean": _cast_bool,
}
CAST_TYPES_SINCE_2016 = {"decimal", "bool", "boolean"}


def decimal_of(number: Any) -> Decimal:
    """An Int or Decimal as a Decimal, for the Decimal context's operations."""
    return number if type(number) is Decimal else DECIMAL_CONTEXT.create_decimal(number)
