"""Properties of IoT SQL numbers (34-digit Decimals, Ints, the 2016-03-23 whole-number rule) and of the
standard conversions, over generated values."""

from __future__ import annotations

import json
from decimal import Context, Decimal

from hypothesis import assume, given
from hypothesis import strategies as st

from localcloud.runtime.iot.conversions import to_decimal, to_string
from localcloud.runtime.iot.values import DECIMAL_CONTEXT, UNDEFINED, Numbers, parse_json, to_json
from tests.localcloud.runtime.iot.evaluate import value_of

V1, V2 = Numbers("2015-10-08"), Numbers("2016-03-23")
INTS = st.integers(-(10**16), 10**16)  # products stay below 34 digits
# Decimals IoT SQL can hold exactly: up to 20 significant digits, exponents well inside 1E-999..9.99E999.
DECIMALS = st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
    lambda d: len(d.as_tuple().digits) <= 20 and -300 < d.as_tuple().exponent < 300  # type: ignore[operator]
)


def sql(number: int | Decimal) -> str:
    """A number as SQL text: its own notation (a Decimal always with a point or exponent, so that it is not read
    as an Int), parenthesised when negative."""
    text = str(number)
    if isinstance(number, Decimal) and not any(mark in text for mark in ".E"):
        text += ".0"
    return f"({text})" if text.startswith("-") else text


def decimal_of(json_text: str | None) -> Decimal:
    assert json_text is not None
    return Decimal(json_text)


@given(DECIMALS, DECIMALS)
def test_decimal_addition_is_exact_below_34_digits(a: Decimal, b: Decimal) -> None:
    assume(abs(a.adjusted() - b.adjusted()) < 12)  # so the exact sum has at most 33 digits
    exact = Context(prec=100).add(a, b)
    assert decimal_of(value_of(f"{sql(a)} + {sql(b)}", version="2015-10-08")) == exact


@given(DECIMALS, DECIMALS)
def test_addition_and_multiplication_commute(a: Decimal, b: Decimal) -> None:
    for op in ("+", "*"):
        assert value_of(f"{sql(a)} {op} {sql(b)}", version="2015-10-08") == value_of(
            f"{sql(b)} {op} {sql(a)}", version="2015-10-08"
        )


@given(DECIMALS, DECIMALS.filter(lambda d: d != 0))
def test_decimal_division_is_rounded_to_34_digits(a: Decimal, b: Decimal) -> None:
    result = value_of(f"{sql(a)} / {sql(b)}", version="2015-10-08")
    assert result is not None
    quotient = Decimal(result)
    assert len(quotient.as_tuple().digits) <= 34
    assert quotient == DECIMAL_CONTEXT.divide(a, b)


@given(INTS, INTS.filter(lambda i: i != 0))
def test_int_division_and_remainder_behave_as_java(a: int, b: int) -> None:
    quotient = int(value_of(f"{sql(a)} / {sql(b)}"))
    remainder = int(value_of(f"{sql(a)} % {sql(b)}"))
    assert quotient * b + remainder == a
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder > 0) == (a > 0)  # the dividend's sign
    assert abs(quotient) == abs(a) // abs(b)  # truncated toward zero


@given(INTS, INTS)
def test_int_arithmetic_stays_int(a: int, b: int) -> None:
    for op, expected in (("+", a + b), ("-", a - b), ("*", a * b)):
        assert value_of(f"{sql(a)} {op} {sql(b)}") == str(expected)


@given(st.integers(-(10**20), 10**20), st.integers(1, 8))
def test_whole_numbers_with_a_fraction_are_ints_in_2016_03_23_only(whole: int, zeros: int) -> None:
    text = f"{whole}.{'0' * zeros}"
    literal = f"({text})" if whole < 0 else text
    assert value_of(literal) == str(whole)
    assert value_of(literal, version="2015-10-08") == text
    assert value_of(f"{literal} * 1") == str(whole)


@given(DECIMALS, DECIMALS)
def test_ordering_matches_decimal_order_also_for_numeric_strings(a: Decimal, b: Decimal) -> None:
    expected = "true" if a < b else "false"
    assert value_of(f"{sql(a)} < {sql(b)}") == expected
    assume(to_decimal(str(a), V1) is not UNDEFINED)  # strings convert when they match -?\d+(\.\d+)?(E-?\d+)?
    assert value_of(f"'{a}' < {sql(b)}") == expected


@given(DECIMALS)
def test_string_conversion_round_trips(a: Decimal) -> None:
    for numbers in (V1, V2):
        number = numbers.decimal(a)
        text = to_string(number)
        assert Decimal(text) == a
        assert to_decimal(text, numbers) == a


@given(st.recursive(
    st.none() | st.booleans() | INTS | DECIMALS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
))  # fmt: skip
def test_json_round_trips_with_2015_10_08_numbers(value: object) -> None:
    text = to_json(value)
    assert parse_json(text, V1) == value
    assert json.loads(text, parse_float=Decimal) == value
