"""The type system, table by table:
- conversions: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-data-types.html#iot-sql-conversions
- cast(): https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-sql-function-cast
- operators: https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-operators.html
- Int/Decimal at 34 digits, the 2016-03-23 whole-number rule, JSON output as IoT Core writes it.

Each row names a value of each type as SQL text, so one table covers "Argument type | Result".
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from localcloud.runtime.iot.conversions import to_bool, to_decimal, to_int, to_string
from localcloud.runtime.iot.sql import parse_rule
from localcloud.runtime.iot.values import UNDEFINED, Numbers, parse_json, to_json
from tests.localcloud.runtime.iot.evaluate import message, value_of

V1, V2 = Numbers("2015-10-08"), Numbers("2016-03-23")
PAYLOAD = {"n": None, "arr": [1, "a"], "obj": {"k": "v"}}  # Null, Array and Object values come from here
UNDEFINED_SQL = "missing"
OF_EACH_TYPE = {
    "Int": "5",
    "Decimal": "2.5",
    "Boolean": "true",
    "String": "'text'",
    "Array": "arr",
    "Object": "obj",
    "Null": "n",
    "Undefined": UNDEFINED_SQL,
}


def evaluated(expression: str, version: str = "2016-03-23") -> str | None:
    return value_of(expression, message(PAYLOAD), version)


# -- standard conversions ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "decimal", "integer", "boolean", "string"),
    [
        (5, 5, 5, UNDEFINED, "5"),
        (Decimal("2.5"), Decimal("2.5"), 2, UNDEFINED, "2.5"),
        (Decimal("-2.5"), Decimal("-2.5"), -2, UNDEFINED, "-2.5"),  # toward zero, as "truncates" says
        (True, UNDEFINED, UNDEFINED, True, "true"),
        ("-1.2", Decimal("-1.2"), -1, UNDEFINED, "-1.2"),
        ("5E-12", Decimal("5E-12"), 0, UNDEFINED, "5E-12"),
        ("0", 0, 0, UNDEFINED, "0"),
        ("TRUE", UNDEFINED, UNDEFINED, True, "TRUE"),
        ("+5", UNDEFINED, UNDEFINED, UNDEFINED, "+5"),  # outside ^-?\d+(\.\d+)?((?i)E-?\d+)?$
        (".5", UNDEFINED, UNDEFINED, UNDEFINED, ".5"),
        ("٣", UNDEFINED, UNDEFINED, UNDEFINED, "٣"),  # \d is ASCII in Java
        ([1, "a"], UNDEFINED, UNDEFINED, UNDEFINED, '[1,"a"]'),
        ({"k": Decimal("1.50")}, UNDEFINED, UNDEFINED, UNDEFINED, '{"k":1.50}'),
        (None, None, None, UNDEFINED, UNDEFINED),  # "Null → Null" for numbers, Undefined for Boolean/String
        (UNDEFINED, UNDEFINED, UNDEFINED, UNDEFINED, UNDEFINED),
    ],
)
def test_standard_conversions(value: object, decimal: object, integer: object, boolean: object, string: object) -> None:
    assert to_decimal(value, V1) == decimal if decimal is not UNDEFINED else to_decimal(value, V1) is UNDEFINED
    converted = to_int(value, V1)
    assert converted is UNDEFINED if integer is UNDEFINED or integer is None else converted == integer
    assert to_bool(value) is boolean
    assert to_string(value) == string if string is not UNDEFINED else to_string(value) is UNDEFINED


# -- cast ----------------------------------------------------------------------------------------------------------
CAST_TABLE = {
    # type keyword: results for Int, Decimal, Boolean, String, Array, Object, Null, Undefined (None: Undefined)
    "String": ['"5"', '"2.5"', '"true"', '"text"', '"[1,\\"a\\"]"', '"{\\"k\\":\\"v\\"}"', None, None],
    "Int": ["5", "2", "1", None, None, None, None, None],
    "Double": ["5", "2.5", "1", None, None, None, None, None],
    "Decimal": ["5", "2.5", "1", None, None, None, None, None],
    "Boolean": ["true", "true", "true", None, None, None, None, None],
}


@pytest.mark.parametrize(("keyword", "results"), CAST_TABLE.items())
def test_cast_table(keyword: str, results: list[str | None]) -> None:
    for (kind, sql), expected in zip(OF_EACH_TYPE.items(), results, strict=True):
        assert evaluated(f"cast({sql} AS {keyword})") == expected, f"cast({kind} AS {keyword})"


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("cast('-1.2' AS Int)", "-1"),
        ("cast('12.75' AS Integer)", "12"),
        ("cast(0 AS Bool)", "false"),
        ("cast(0.0 AS Boolean)", "false"),
        ("cast('FALSE' AS Boolean)", "false"),
        ("cast('yes' AS Boolean)", None),
        ("cast(false AS Decimal)", "0"),
        ("cast(1.25 AS Nvarchar)", '"1.25"'),
        ("cast(1E+3 AS varchar)", '"1000"'),  # whole in 2016-03-23: the Int 1000
        ("cast(0.00000001 AS Text)", '"1E-8"'),  # "possibly in scientific notation", as Java's BigDecimal
        ("cast(null AS Ntext)", None),
    ],
)
def test_cast_rules(expression: str, result: str | None) -> None:
    assert evaluated(expression) == result


def test_cast_to_decimal_keeps_whole_numbers_decimal_in_2015_10_08_only() -> None:
    """ "With SQL V2 (2016-03-23), numeric values that are whole numbers, such as 10.0, return an Int value (10)
    instead of the expected Decimal value (10.0)."""
    assert evaluated("cast(10.0 AS Double)", "2015-10-08") == "10.0"
    assert evaluated("cast(10.0 AS Decimal)") == "10"
    assert evaluated("cast(true AS Double)", "2015-10-08") == "1.0"


# -- operators -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "result"),
    [
        # AND / OR / NOT: Booleans or "true"/"false" strings, any case.
        ("true AND 'TRUE'", "true"),
        ("true AND false", "false"),
        ("'false' OR 'True'", "true"),
        ("true AND 1", None),
        (f"true OR {UNDEFINED_SQL}", None),
        ("NOT 'false'", "true"),
        ("NOT 0", None),
        # > >= < <=: both converted to Decimal.
        ("'10' > 9.5", "true"),
        ("'1E1' >= 10", "true"),
        ("2 < 2.5", "true"),
        ("'abc' < 1", None),
        ("true <= 1", None),
        ("n < 1", None),
        # = and <>: same-type values, Int and Decimal as numbers, mismatched types not equal, Undefined unknown.
        ("5 = 5.0", "true"),
        ("'a' = 'a'", "true"),
        ("[1, 2] = [1, 2]", "true"),
        ("[1, 2] = [2, 1]", "false"),
        ("{'a': 1, 'b': 2} = {'b': 2, 'a': 1}", "true"),
        ("{'a': 1} = {'a': 1.0}", "true"),
        ("n = n", "true"),
        ("n <> n", "false"),
        ("5 = '5'", "false"),
        ("5 <> '5'", "true"),
        ("true = 1", "false"),
        (f"{UNDEFINED_SQL} = {UNDEFINED_SQL}", None),
        (f"5 <> {UNDEFINED_SQL}", None),
        # +: strings concatenate (the other side converted), numbers add.
        ("'a' + 1", '"a1"'),
        ("1.5 + 'b'", '"1.5b"'),
        ("'a' + arr", '"a[1,\\"a\\"]"'),
        ("'a' + n", None),
        ("2 + 3", "5"),
        ("2 + 0.5", "2.5"),
        ("true + 1", None),
        # - * / %: numeric strings convert; Int op Int stays Int.
        ("'7' - 2", "5"),
        ("'2.5' * 2", "5"),
        ("7 / 2", "3"),
        ("-7 / 2", "-3"),
        ("7.5 / 2", "3.75"),
        ("7 % -3", "1"),
        ("-7 % 3", "-1"),
        ("7.5 % 2", "1.5"),
        ("-7.5 % 2", "-1.5"),
        ("1 / 0", None),
        ("1.5 / 0", None),
        ("0.0 / 0", None),
        ("5 % 0", None),
        ("'x' - 1", None),
        ("arr * 2", None),
        ("-'3'", "-3"),
    ],
)
def test_operator_tables(expression: str, result: str | None) -> None:
    assert evaluated(expression) == result


# -- numbers -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("expression", "v1", "v2"),
    [
        ("0.1 + 0.2", "0.3", "0.3"),  # Decimals, not binary floats
        ("1 / 3.0", "0.3333333333333333333333333333333333", "0"),  # 3.0 is the Int 3 in 2016-03-23
        ("2.0 / 3", "0.6666666666666666666666666666666667", "0"),
        ("10.0", "10.0", "10"),
        ("2.5 * 2", "5.0", "5"),
        ("1.50 + 1", "2.50", "2.50"),  # Decimal keeps its scale, as Java's BigDecimal
        (
            "99999999999999999999999999999999999",
            "1.000000000000000000000000000000000E+35",
            "1.000000000000000000000000000000000E+35",
        ),
        (
            "9999999999999999999999999999999999 + 1",
            "1.000000000000000000000000000000000E+34",
            "1.000000000000000000000000000000000E+34",
        ),
        ("9.99E999 * 10", None, None),  # beyond IoT SQL's maximum magnitude
    ],
)
def test_decimal_arithmetic_and_the_whole_number_rule(expression: str, v1: str | None, v2: str | None) -> None:
    assert evaluated(expression, "2015-10-08") == v1
    assert evaluated(expression) == v2


def test_payload_numbers_follow_the_sql_version() -> None:
    payload = b'{"a": 10.0, "b": 21.50, "c": 1e2, "d": 3, "e": 0.1}'
    assert parse_rule("SELECT * FROM 'a'", "2015-10-08").evaluate(message(payload)) == (
        b'{"a":10.0,"b":21.50,"c":1E+2,"d":3,"e":0.1}'  # Java's BigDecimal writes 1e2 as 1E+2
    )
    assert parse_rule("SELECT * FROM 'a'").evaluate(message(payload)) == b'{"a":10,"b":21.50,"c":100,"d":3,"e":0.1}'


def test_json_output_as_iot_core_writes_it() -> None:
    assert to_json({"i": 10, "d": Decimal("10.50"), "e": Decimal("1E+1000"), "b": True, "z": None}) == (
        b'{"i":10,"d":10.50,"e":1E+1000,"b":true,"z":null}'
    )
    assert to_json([2**70, -(2**70)]) == f"[{2**70},{-(2**70)}]".encode()
    assert to_json({"s": "ok \ud83d"}) == b'{"s":"ok \\ud83d"}'  # a lone surrogate (half of an emoji) is escaped


def test_undefined_is_left_out_and_is_empty_on_its_own() -> None:
    assert parse_rule("SELECT missing, n FROM 'a'").evaluate(message(PAYLOAD)) == b'{"n":null}'
    assert parse_rule("SELECT VALUE missing FROM 'a'").evaluate(message(PAYLOAD)) == b""
    assert parse_rule("SELECT {'a': missing, 'b': 1} AS o, [missing, 2] AS l FROM 'a'").evaluate(message(PAYLOAD)) == (
        b'{"o":{"b":1},"l":[2]}'
    )


def test_json_input_beyond_the_decimal_range_is_not_json() -> None:
    assert parse_json(b'{"a": 1e999}', V2) == {"a": Decimal("1E+999")}
    assert parse_json(b'{"a": 1e1000}', V2) is UNDEFINED
    assert parse_json(b'{"a": 1e-999}', V1) == {"a": Decimal("1E-999")}


def test_select_value_of_an_array_needs_2016_03_23() -> None:
    with pytest.raises(ValueError, match="2015-10-08"):
        parse_rule("SELECT VALUE arr FROM 'a'", "2015-10-08").evaluate(message(PAYLOAD))
    assert json.loads(parse_rule("SELECT VALUE arr FROM 'a'").evaluate(message(PAYLOAD))) == [1, "a"]


# -- function argument tables: every numeric function's "Other value" rows ----------------------------------------
NUMERIC_FUNCTIONS = ["abs", "acos", "asin", "atan", "ceil", "cos", "cosh", "exp", "floor", "ln", "log", "round",
                     "sign", "sin", "sinh", "sqrt", "tan", "tanh", "bitnot", "chr"]  # fmt: skip


@pytest.mark.parametrize("function", NUMERIC_FUNCTIONS)
@pytest.mark.parametrize("kind", ["Boolean", "Array", "Object", "Null", "Undefined"])
def test_numeric_functions_give_undefined_for_non_numbers(function: str, kind: str) -> None:
    assert evaluated(f"{function}({OF_EACH_TYPE[kind]})") is None


@pytest.mark.parametrize("function", ["acos", "asin", "ln", "log", "sqrt"])
def test_imaginary_or_infinite_results_are_undefined(function: str) -> None:
    assert evaluated(f"{function}(-2)") is None


@pytest.mark.parametrize(
    "expression",
    ["lower(n)", "upper(missing)", "trim(n)", "ltrim(n)", "rtrim(n)", "length(n)", "numbytes(missing)",
     "startswith(n, 'a')", "endswith('a', missing)", "indexof(n, 'a')", "replace('a', n, 'b')", "md5(n)",
     "regexp_matches(n, 'a')", "substring(n, 1)", "lpad(n, 1)", "lpad('a', true)", "concat('a', n)"],
)  # fmt: skip
def test_string_functions_give_undefined_for_null_and_undefined(expression: str) -> None:
    assert evaluated(expression) is None


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("length('😀')", "2"),  # Java counts UTF-16 code units
        ("substring('a😀b', 1, 3)", '"😀"'),
        ("indexof('😀x', 'x')", "2"),
        ("get('😀x', 2)", '"x"'),
        ("lpad('a', 5000)", json.dumps(" " * 1000 + "a")),  # clamped to 1000
        ("rpad('a', -3)", '"a"'),
        ("trunc('2.789', 1.9)", "2.7"),
        ("trunc(2.789, '1')", None),  # the second argument is Int/Decimal only
        ("trunc(1234.5678, 50)", "1234.5678"),
        ("bitand('13.9', 5)", "5"),
        ("mod(-8, 3)", "-2"),
        ("sign('-0.5')", "-1"),
        ("chr(128)", None),
        ("get(arr, '1')", '"a"'),
        ("get(obj, 1)", None),
        ("nanvl(missing, 'x')", '"x"'),
        ("nanvl(n, 'x')", '"x"'),
        ("decode('not base64!', 'base64')", "null"),
        ("decode(encode('{\"a\": 2.0}', 'base64'), 'base64')", '{"a":2}'),
        ("encode(obj, 'base64')", '"eyJrIjoidiJ9"'),
        ("regexp_replace('a-b', '(?<x>[a-z])', '${x}$0\\$')", '"aa$-bb$"'),  # ${name}, $n, \\$ a literal $
        ("regexp_replace('a-b', 'a', '$')", None),  # a lone $ is an illegal group reference in Java
        ("regexp_matches('xx', '(?<c>x)\\k<c>')", "true"),  # a Java named back reference
        ("regexp_matches('a]', '[]a]+')", "true"),
        ("regexp_matches('[', '\\Q[\\E')", "true"),
        ("regexp_replace('ab', 'b', '$2')", None),  # no group 2
        ("regexp_substr('abc', 'x')", None),
        ("parse_time('yyyy-MM-dd HH:mm:ss.SSS Z', 1700000000123, '+05:30')", '"2023-11-15 03:43:20.123 +0530"'),
        ("parse_time('EEEE, MMMM d, yyyy h:mm a', 1700000000123)", '"Tuesday, November 14, 2023 10:13 PM"'),
        ("parse_time('yyyy', 0, 'Nowhere/City')", None),
        ("time_to_epoch('2021-02-31', 'yyyy-MM-dd')", "1614470400000"),  # SMART: Feb 31 → Feb 28
        ("time_to_epoch('Tue 2023-11-14', 'EEE yyyy-MM-dd')", "1699920000000"),
        ("time_to_epoch('Wed 2023-11-14', 'EEE yyyy-MM-dd')", None),
        ("time_to_epoch('nope', 'yyyy-MM-dd')", None),
        ("time_to_epoch('10:15', 'HH:mm')", None),  # no date: no instant
        ("time_to_epoch('2023-11-14T10:15:30+0100', \"yyyy-MM-dd'T'HH:mm:ssZ\")", "1699953330000"),
    ],
)
def test_function_table_rows(expression: str, result: str | None) -> None:
    assert evaluated(expression) == result
