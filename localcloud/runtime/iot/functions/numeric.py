"""Math and bitwise functions, following their argument/result tables in
https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html

Strings convert to Decimal (the standard conversion); Booleans, arrays, objects, Null and Undefined give
Undefined. Functions documented as "Decimal (with double precision)" compute on a double (Python float) and
give its shortest decimal text as a Decimal; NaN and infinities ("imaginary results") are Undefined.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal, DecimalException
from typing import Any

from localcloud.runtime.iot import operators
from localcloud.runtime.iot.conversions import decimal_of, to_int, to_number
from localcloud.runtime.iot.functions.base import Function
from localcloud.runtime.iot.sql_ast import Context
from localcloud.runtime.iot.values import DECIMAL_CONTEXT, UNDEFINED


def _double(operation: Callable[..., float]) -> Callable[..., Any]:
    def impl(ctx: Context, *args: Any) -> Any:
        numbers = [to_number(arg, ctx.numbers) for arg in args]
        if any(number is UNDEFINED for number in numbers):
            return UNDEFINED
        try:
            return ctx.numbers.double(operation(*(float(number) for number in numbers)))
        except (ValueError, OverflowError, ZeroDivisionError):  # outside the domain, or beyond a double
            return UNDEFINED

    return impl


def _abs(ctx: Context, value: Any) -> Any:
    number = to_number(value, ctx.numbers)
    if number is UNDEFINED:
        return UNDEFINED
    if type(number) is int:
        return ctx.numbers.int(abs(number))
    return ctx.numbers.decimal(DECIMAL_CONTEXT.abs(number))


def _to_integral(rounding: str) -> Callable[[Context, Any], Any]:
    def impl(ctx: Context, value: Any) -> Any:
        number = to_number(value, ctx.numbers)
        if number is UNDEFINED:
            return UNDEFINED
        if type(number) is int:
            return number
        return ctx.numbers.int(int(number.to_integral_value(rounding=rounding)))

    return impl


def _sign(ctx: Context, value: Any) -> Any:
    number = to_number(value, ctx.numbers)
    if number is UNDEFINED:
        return UNDEFINED
    return (number > 0) - (number < 0)


def _remainder(ctx: Context, left: Any, right: Any) -> Any:
    return operators.remainder(left, right, ctx.numbers)


def _trunc(ctx: Context, value: Any, places: Any) -> Any:
    """Truncate to `places` decimal places (clamped to 0..34), trailing zeros stripped."""
    if type(value) is int and type(places) is int:
        return value
    if type(places) not in (int, Decimal):
        return UNDEFINED
    number = to_number(value, ctx.numbers)
    if number is UNDEFINED:
        return UNDEFINED
    digits = min(max(to_int(places, ctx.numbers), 0), 34)
    exact = decimal_of(number)
    try:
        if exact.as_tuple().exponent < -digits:  # type: ignore[operator]
            exact = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_DOWN, context=DECIMAL_CONTEXT)
        return ctx.numbers.decimal(exact.normalize(DECIMAL_CONTEXT))
    except DecimalException:
        return UNDEFINED


def _bitwise(operation: Callable[..., int]) -> Callable[..., Any]:
    """Int arguments: numbers and numeric strings rounded toward zero; anything else Undefined."""

    def impl(ctx: Context, *args: Any) -> Any:
        ints = [to_int(arg, ctx.numbers) for arg in args]
        if any(value is UNDEFINED for value in ints):
            return UNDEFINED
        return ctx.numbers.int(operation(*ints))

    return impl


def _rand(ctx: Context) -> Any:
    return ctx.numbers.double(random.random())  # noqa: S311 - rand() is documented as pseudorandom


FUNCTIONS = [
    Function("abs", _abs, 1, 1),
    Function("acos", _double(math.acos), 1, 1),
    Function("asin", _double(math.asin), 1, 1),
    Function("atan", _double(math.atan), 1, 1),
    Function("atan2", _double(math.atan2), 2, 2),
    Function("ceil", _to_integral(ROUND_CEILING), 1, 1),
    Function("cos", _double(math.cos), 1, 1),
    Function("cosh", _double(math.cosh), 1, 1),
    Function("exp", _double(math.exp), 1, 1),
    Function("floor", _to_integral(ROUND_FLOOR), 1, 1),
    Function("ln", _double(math.log), 1, 1),
    Function("log", _double(math.log10), 1, 1),
    Function("mod", _remainder, 2, 2),
    Function("power", _double(math.pow), 2, 2),
    Function("rand", _rand, 0, 0),
    Function("remainder", _remainder, 2, 2),
    # "If the Decimal is equidistant from two Int values (for example, 0.5), the Decimal is rounded up":
    # the examples round(1.5) = 2 and round(-1.5) = -2 make that half away from zero.
    Function("round", _to_integral(ROUND_HALF_UP), 1, 1),
    Function("sign", _sign, 1, 1),
    Function("sin", _double(math.sin), 1, 1),
    Function("sinh", _double(math.sinh), 1, 1),
    Function("sqrt", _double(math.sqrt), 1, 1),
    Function("tan", _double(math.tan), 1, 1),
    Function("tanh", _double(math.tanh), 1, 1),
    Function("trunc", _trunc, 2, 2),
    Function("bitand", _bitwise(lambda a, b: a & b), 2, 2),
    Function("bitor", _bitwise(lambda a, b: a | b), 2, 2),
    Function("bitxor", _bitwise(lambda a, b: a ^ b), 2, 2),
    Function("bitnot", _bitwise(lambda a: ~a), 1, 1),
]
