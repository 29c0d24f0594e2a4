"""Functions on values of any type: get, get_or_default, nanvl, isNull, isUndefined, transform
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html). cast() is syntax (`cast(x AS
type)`) and lives in the parser and conversions.py.
"""

from __future__ import annotations

from typing import Any

from localcloud.runtime.iot.conversions import to_int
from localcloud.runtime.iot.functions.base import Function, calls_in
from localcloud.runtime.iot.functions.strings import java_length, java_slice
from localcloud.runtime.iot.sql_ast import Context, SqlEvaluationError, UnsupportedSql
from localcloud.runtime.iot.values import UNDEFINED, to_json

TRANSFORM_LIMIT_BYTES = 128 * 1024  # "The array returned by this function is limited to 128 KiB."
# "Functions that fetch data from customer-owned resources ... are not allowed for the defaultValue parameter."
_NOT_IN_DEFAULT = {"get_secret", "get_dynamodb", "aws_lambda", "get_thing_shadow", "get_registry_data"}


def _get(ctx: Context, collection: Any, key: Any) -> Any:
    kind = type(collection)
    if kind is dict:
        return collection.get(key, UNDEFINED) if type(key) is str else UNDEFINED
    if kind is not list and kind is not str:
        return UNDEFINED
    index = to_int(key, ctx.numbers)
    if index is UNDEFINED:
        return UNDEFINED
    if kind is list:
        return collection[index] if 0 <= index < len(collection) else UNDEFINED
    return java_slice(collection, index, index + 1) if 0 <= index < java_length(collection) else UNDEFINED


def _get_or_default(ctx: Context, expression: Any, default: Any = None) -> Any:
    """The expression's value, or the default when it is Null, Undefined or fails."""
    try:
        value = expression.eval(ctx)
    except SqlEvaluationError:
        value = UNDEFINED
    if value is None or value is UNDEFINED:
        return UNDEFINED if default is None else default.eval(ctx)
    return value


def _check_get_or_default(args: tuple[Any, ...]) -> None:
    if len(args) < 2:
        return
    for call in calls_in(args[1]):
        if call.function.name in _NOT_IN_DEFAULT:
            raise UnsupportedSql(f"get_or_default(): {call.function.name}() is not allowed in the default value")


def _nanvl(ctx: Context, value: Any, fallback: Any) -> Any:
    # IoT SQL has no NaN a rule can hold here (NaN payloads are not JSON, NaN results are Undefined).
    return fallback if value is None or value is UNDEFINED else value


def _transform(ctx: Context, mode: Any, attributes: Any, elements: Any) -> Any:
    """'enrichArray': each object of the array with the object's attributes added."""
    if mode != "enrichArray" or type(attributes) is not dict or type(elements) is not list:
        return UNDEFINED
    if any(type(element) is not dict for element in elements):
        return UNDEFINED
    enriched = [{**element, **attributes} for element in elements]
    return enriched if len(to_json(enriched)) <= TRANSFORM_LIMIT_BYTES else UNDEFINED


FUNCTIONS = [
    Function("get", _get, 2, 2),
    Function("get_or_default", _get_or_default, 1, 2, since_2016=True, lazy=True, check=_check_get_or_default),
    Function("isnull", lambda ctx, value: value is None, 1, 1),
    Function("isundefined", lambda ctx, value: value is UNDEFINED, 1, 1, since_2016=True),
    Function("nanvl", _nanvl, 2, 2),
    Function("transform", _transform, 3, 3, since_2016=True),
]
