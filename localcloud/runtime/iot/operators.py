"""IoT SQL operators, one function per row set of the tables in
https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-operators.html

- AND / OR / NOT take Booleans or the strings "true"/"false" (any case); anything else gives Undefined.
- `=` / `<>`: Int and Decimal compare as numbers, strings/arrays (in order)/objects (any key order) by value,
  Null equals Null; mismatched types are not equal (`=` false, `<>` true); an Undefined operand gives Undefined.
- `< <= > >=` convert both operands to Decimal (numeric strings convert); anything else gives Undefined.
- `+` concatenates when either operand is a String (the other converted to a string), else adds numbers.
- `- * / %`: Int op Int is an Int (`/` truncates toward zero and `%` takes the dividend's sign, as Java does);
  other numbers and numeric strings give a Decimal at 34-digit precision. Division by zero, overflow beyond
  9.99..E999 and non-numeric operands give Undefined.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, DecimalException
from typing import Any

from localcloud.runtime.iot.conversions import decimal_of, to_bool, to_decimal, to_string
from localcloud.runtime.iot.values import DECIMAL_CONTEXT, UNDEFINED, Numbers


def logical_and(left: Any, right: Any) -> Any:
    left, right = to_bool(left), to_bool(right)
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    return left and right


def logical_or(left: Any, right: Any) -> Any:
    left, right = to_bool(left), to_bool(right)
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    return left or right


def logical_not(value: Any) -> Any:
    truth = to_bool(value)
    return UNDEFINED if truth is UNDEFINED else not truth


def same(left: Any, right: Any) -> bool:
    """Equality of two defined values, as `=` defines it."""
    left_type, right_type = type(left), type(right)
    if left_type is right_type:
        if left_type is list:
            return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
        if left_type is dict:
            return left.keys() == right.keys() and all(same(value, right[key]) for key, value in left.items())
        return left == right
    if (left_type is int or left_type is Decimal) and (right_type is int or right_type is Decimal):
        return left == right
    return False


def equal(left: Any, right: Any) -> Any:
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    return same(left, right)


def not_equal(left: Any, right: Any) -> Any:
    if left is UNDEFINED or right is UNDEFINED:
        return UNDEFINED
    return not same(left, right)


def _ordering(compare: Callable[[Any, Any], bool]) -> Callable[[Any, Any, Numbers], Any]:
    def operator(left: Any, right: Any, numbers: Numbers) -> Any:
        left, right = to_decimal(left, numbers), to_decimal(right, numbers)
        if left is UNDEFINED or right is UNDEFINED or left is None or right is None:
            return UNDEFINED
        return compare(left, right)

    return operator


less = _ordering(lambda a, b: a < b)
less_or_equal = _ordering(lambda a, b: a <= b)
greater = _ordering(lambda a, b: a > b)
greater_or_equal = _ordering(lambda a, b: a >= b)


def _numbers_of(left: Any, right: Any, numbers: Numbers) -> tuple[Any, Any]:
    left, right = to_decimal(left, numbers), to_decimal(right, numbers)
    if left is None or right is None:
        return UNDEFINED, UNDEFINED
    return left, right


def _arithmetic(
    int_operation: Callable[[int, int], int | None], decimal_operation: Callable[[Decimal, Decimal], Decimal]
) -> Callable[[Any, Any, Numbers], Any]:
    def operator(left: Any, right: Any, numbers: Numbers) -> Any:
        left, right = _numbers_of(left, right, numbers)
        if left is UNDEFINED or right is UNDEFINED:
            return UNDEFINED
        if type(left) is int and type(right) is int:
            result = int_operation(left, right)
            return UNDEFINED if result is None else numbers.int(result)
        try:
            return numbers.decimal(decimal_operation(decimal_of(left), decimal_of(right)))
        except DecimalException:  # division by zero, 0/0, beyond 9.99..E999
            return UNDEFINED

    return operator


def _java_divide(left: int, right: int) -> int | None:
    if right == 0:
        return None
    quotient = abs(left) // abs(right)
    return quotient if (left >= 0) == (right >= 0) else -quotient


def _java_remainder(left: int, right: int) -> int | None:
    if right == 0:
        return None
    remainder = abs(left) % abs(right)
    return remainder if left >= 0 else -remainder


subtract = _arithmetic(lambda a, b: a - b, DECIMAL_CONTEXT.subtract)
multiply = _arithmetic(lambda a, b: a * b, DECIMAL_CONTEXT.multiply)
divide = _arithmetic(_java_divide, DECIMAL_CONTEXT.divide)
remainder = _arithmetic(_java_remainder, DECIMAL_CONTEXT.remainder)  # Decimal remainder: the dividend's sign too
_add_numbers = _arithmetic(lambda a, b: a + b, DECIMAL_CONTEXT.add)


def add(left: Any, right: Any, numbers: Numbers) -> Any:
    if type(left) is str or type(right) is str:
        left_text, right_text = to_string(left), to_string(right)
        if left_text is UNDEFINED or right_text is UNDEFINED:
            return UNDEFINED
        return left_text + right_text
    left_type, right_type = type(left), type(right)
    if (left_type is int or left_type is Decimal) and (right_type is int or right_type is Decimal):
        return _add_numbers(left, right, numbers)
    return UNDEFINED


def negate(value: Any, numbers: Numbers) -> Any:
    number = to_decimal(value, numbers)
    if number is UNDEFINED or number is None:
        return UNDEFINED
    if type(number) is int:
        return numbers.int(-number)
    return numbers.decimal(DECIMAL_CONTEXT.minus(number))


BINARY: dict[str, Callable[..., Any]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "%": remainder,
    "<": less,
    "<=": less_or_equal,
    ">": greater,
    ">=": greater_or_equal,
}
