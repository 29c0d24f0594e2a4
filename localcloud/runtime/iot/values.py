"""IoT SQL values: the types of https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-data-types.html
as Python values, JSON in and out, and the number rules of the two SQL versions.

| IoT SQL   | Python                                                                                   |
|-----------|------------------------------------------------------------------------------------------|
| Int       | int (not bool); a computed Int beyond 34 digits becomes a Decimal of its 34 leading digits |
| Decimal   | decimal.Decimal, 34-digit precision, magnitudes 1E-999 .. 9.99..E999 (DECIMAL_CONTEXT)   |
| Boolean   | bool                                                                                     |
| String    | str                                                                                      |
| Array     | list                                                                                     |
| Object    | dict with str keys                                                                       |
| Null      | None                                                                                     |
| Undefined | UNDEFINED (never serialised: left out of objects, an empty payload on its own)           |

SQL 2016-03-23 processes whole numbers such as `10.0` as Int `10` (the data types page says so); 2015-10-08
keeps them Decimal. `Numbers` is that rule for one version; every number a rule reads or computes is made by it, so
the rule holds everywhere: payload values, literals, operators and function results.
"""

from __future__ import annotations

import json
import math
from decimal import Context, Decimal, DecimalException, DivisionByZero, InvalidOperation, Overflow
from typing import Any

import orjson

SQL_2015 = "2015-10-08"
SQL_2016 = "2016-03-23"
SQL_VERSIONS = (SQL_2015, SQL_2016)

# 34 significant digits, as IoT Core's Decimal; Overflow beyond 9.99..E999 and invalid operations raise (→ Undefined).
DECIMAL_CONTEXT = Context(prec=34, Emax=999, Emin=-999, traps=[InvalidOperation, DivisionByZero, Overflow])
INT_LIMIT = 10**34


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Undefined"

    def __bool__(self) -> bool:
        return False


UNDEFINED: Any = _Undefined()


class Numbers:
    """The number rules of one SQL version."""

    __slots__ = ("decoder", "version", "whole_is_int")

    def __init__(self, version: str) -> None:
        self.version = version
        self.whole_is_int = version == SQL_2016
        # One decoder per version: json.loads(..., parse_float=...) would build a new one for every message.
        self.decoder = json.JSONDecoder(parse_float=self.parse, parse_constant=_not_json)

    def decimal(self, value: Decimal) -> Any:
        """A Decimal result as the rule sees it: an Int when it is whole and fits an Int (2016-03-23)."""
        if not value.is_finite():
            return UNDEFINED
        if self.whole_is_int and value == value.to_integral_value():
            whole = int(value)
            if -INT_LIMIT < whole < INT_LIMIT:
                return whole
        return value

    def int(self, value: int) -> Any:
        """An Int result; beyond 34 digits it becomes a Decimal of the 34 most significant ones."""
        if -INT_LIMIT < value < INT_LIMIT:
            return value
        return DECIMAL_CONTEXT.plus(Decimal(value))

    def double(self, value: float) -> Any:
        """A "Decimal (with double precision)" result; NaN and infinities ("imaginary results") are Undefined."""
        if not math.isfinite(value):
            return UNDEFINED
        return self.decimal(Decimal(repr(value)))

    def parse(self, text: str) -> Any:
        """A JSON number with a fraction or exponent (or a numeric string being converted)."""
        if len(text) <= 34 and "e" not in text and "E" not in text:
            # Fast path for what devices send (21.5, -103.60): exact as written, whole-ness read from the text.
            whole, _, fraction = text.partition(".")
            if self.whole_is_int and not fraction.strip("0"):
                return int(whole or "0")  # ".0" is a valid SQL literal
            return Decimal(text)
        try:
            return self.decimal(DECIMAL_CONTEXT.create_decimal(text))
        except DecimalException as exc:  # beyond 9.99..E999: no IoT SQL value can hold it
            raise ValueError(f"{text} is outside IoT SQL's Decimal range") from exc


# -- JSON in -----------------------------------------------------------------------------------------------------
def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def parse_json(data: bytes | str, numbers: Numbers) -> Any:
    """JSON text as IoT SQL values, or UNDEFINED when it is not JSON (binary, NaN/Infinity, numbers out of range).
    Integers keep every digit (a hook per integer would slow down every message for a case devices never send)."""
    try:
        return numbers.decoder.decode(data if type(data) is str else data.decode())
    except (UnicodeDecodeError, ValueError, RecursionError):
        return UNDEFINED


def parse_payload(payload: bytes, numbers: Numbers) -> Any:
    """A message payload: JSON, UNDEFINED for binary; an empty payload is `{}` (IoT Core treats it as JSON)."""
    return parse_json(payload, numbers) if payload else {}


# -- JSON out ----------------------------------------------------------------------------------------------------
def _fragment(value: Any) -> Any:
    if type(value) is Decimal:
        return orjson.Fragment(str(value))  # Decimal's own text (e.g. 21.50, 1E+3): what IoT Core writes
    raise TypeError(f"{type(value).__name__} is not an IoT SQL value")


def to_json(value: Any) -> bytes:
    """Compact JSON as IoT Core writes it: Int without a decimal point, Decimal in its own notation; Undefined
    never reaches here (callers leave it out)."""
    try:
        return orjson.dumps(value, default=_fragment)
    except orjson.JSONEncodeError:
        return orjson.dumps(_portable(value), default=_fragment)


def _portable(value: Any) -> Any:
    """What orjson cannot write itself: Ints beyond 64 bits and strings with lone UTF-16 surrogates."""
    kind = type(value)
    if kind is int and not -(2**63) <= value < 2**64:
        return orjson.Fragment(str(value))
    if kind is str:
        try:
            value.encode()
        except UnicodeEncodeError:
            return orjson.Fragment(json.dumps(value))  # \udXXX escapes, as a Java JSON writer produces
        return value
    if kind is list:
        return [_portable(item) for item in value]
    if kind is dict:
        return {key: _portable(item) for key, item in value.items()}
    return value


def to_json_text(value: Any) -> str:
    return to_json(value).decode("utf-8", "surrogatepass")
