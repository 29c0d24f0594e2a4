"""Values and expression nodes of the IoT SQL evaluator (see localcloud/runtime/iot/sql.py for the supported subset).

Semantics follow AWS's operator tables where they matter:
- a missing field is Undefined; Undefined select items are left out of the output;
- `=`/`<>` compare values of the same type (Int and Decimal are both numbers); different types give Undefined;
- `< <= > >=` and arithmetic convert both operands to numbers (numeric strings convert, as AWS does) and give
  Undefined otherwise; Int op Int stays Int (`/` truncates toward zero, `%` takes the sign of the dividend, as
  Java does); division by zero and overflow give Undefined;
- AND/OR/NOT take booleans or the strings "true"/"false" (any case); anything else gives Undefined;
- `x IS NULL` is true for JSON null only; `x IS UNDEFINED` for a missing value.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any


class UnsupportedSql(ValueError):
    """The statement uses syntax or a feature this engine does not implement (raised at load time)."""


class SqlEvaluationError(ValueError):
    """A message the rule cannot be evaluated on (AWS logs these and performs no action)."""


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED: Any = _Undefined()


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received_at_ms: int
    client_id: str | None = None


class Context:
    """What expressions see: the message, its payload object, its topic levels."""

    __slots__ = ("document", "message", "topic_levels")

    def __init__(self, message: Message, document: dict[str, Any]) -> None:
        self.message = message
        self.document = document
        self.topic_levels = message.topic.split("/")


# -- values ------------------------------------------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_NUMERIC_STRING = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def _to_number(value: Any) -> Any:
    if _is_number(value):
        return value
    if isinstance(value, str) and _NUMERIC_STRING.fullmatch(value):
        if value.lstrip("+-").isdigit():
            return int(value)
        number = float(value)
        return number if math.isfinite(number) else UNDEFINED
    return UNDEFINED


def to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false"}:
        return value.lower() == "true"
    return UNDEFINED


def _kind(value: Any) -> str:
    return "number" if _is_number(value) else type(value).__name__


def _equal(left: Any, right: Any) -> Any:
    if left is UNDEFINED or right is UNDEFINED or _kind(left) != _kind(right):
        return UNDEFINED
    if isinstance(left, list):
        return len(left) == len(right) and all(_equal(a, b) is True for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_equal(v, right[k]) is True for k, v in left.items())
    return left == right


def _java_divide(left: Any, right: Any) -> Any:
    if right == 0:
        return UNDEFINED
    if isinstance(left, int) and isinstance(right, int):
        quotient = abs(left) // abs(right)
        return quotient if (left >= 0) == (right >= 0) else -quotient
    return left / right


def _java_modulo(left: Any, right: Any) -> Any:
    if right == 0:
        return UNDEFINED
    return math.fmod(left, right) if isinstance(left, float) or isinstance(right, float) else _int_rem(left, right)


def _int_rem(left: int, right: int) -> int:
    remainder = abs(left) % abs(right)
    return remainder if left >= 0 else -remainder


_ARITHMETIC = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _java_divide,
    "%": _java_modulo,
}
_ORDERING = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


# -- AST -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    value: Any

    def eval(self, ctx: Context) -> Any:
        return self.value


@dataclass(frozen=True)
class Path:
    steps: tuple[str | int, ...]

    def eval(self, ctx: Context) -> Any:
        value: Any = ctx.document
        for step in self.steps:
            in_object = isinstance(step, str) and isinstance(value, dict) and step in value
            in_array = isinstance(step, int) and isinstance(value, list) and 0 <= step < len(value)
            if not (in_object or in_array):
                return UNDEFINED
            value = value[step]
        return value


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]

    def eval(self, ctx: Context) -> Any:
        if self.name == "topic":
            if not self.args:
                return ctx.message.topic
            index = self.args[0].eval(ctx)
            if isinstance(index, int) and not isinstance(index, bool) and 1 <= index <= len(ctx.topic_levels):
                return ctx.topic_levels[index - 1]
            return UNDEFINED
        if self.name == "timestamp":
            return ctx.message.received_at_ms
        if self.name == "clientid":
            return ctx.message.client_id if ctx.message.client_id is not None else UNDEFINED
        return str(uuid.uuid4())  # newuuid(), the only other function the parser accepts


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Any

    def eval(self, ctx: Context) -> Any:
        value = self.operand.eval(ctx)
        if self.op == "NOT":
            truth = to_bool(value)
            return UNDEFINED if truth is UNDEFINED else not truth
        number = _to_number(value)
        return UNDEFINED if number is UNDEFINED else -number


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any

    def eval(self, ctx: Context) -> Any:
        if self.op in {"AND", "OR"}:
            left, right = to_bool(self.left.eval(ctx)), to_bool(self.right.eval(ctx))
            if left is UNDEFINED or right is UNDEFINED:
                return UNDEFINED
            return (left and right) if self.op == "AND" else (left or right)
        left, right = self.left.eval(ctx), self.right.eval(ctx)
        if self.op in {"=", "<>", "!="}:
            same = _equal(left, right)
            return same if same is UNDEFINED or self.op == "=" else not same
        left, right = _to_number(left), _to_number(right)
        if left is UNDEFINED or right is UNDEFINED:
            return UNDEFINED
        if self.op in _ORDERING:
            return _ORDERING[self.op](left, right)
        try:
            result = _ARITHMETIC[self.op](left, right)
        except OverflowError:
            return UNDEFINED
        return UNDEFINED if isinstance(result, float) and not math.isfinite(result) else result


@dataclass(frozen=True)
class IsCheck:
    operand: Any
    kind: str  # "NULL" or "UNDEFINED"
    negated: bool

    def eval(self, ctx: Context) -> bool:
        value = self.operand.eval(ctx)
        matches = value is None if self.kind == "NULL" else value is UNDEFINED
        return matches != self.negated


@dataclass(frozen=True)
class SelectItem:
    expr: Any | None  # None is `*`
    alias: str | None


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON text, but no JSON document can carry the value on
        raise ValueError(f"{text} overflows a double")
    return value


def parse_payload(payload: bytes) -> Any:
    """The payload as JSON, or UNDEFINED when it is not JSON (binary). An empty payload is `{}`.

    NaN/Infinity are not JSON (Python's json module accepts them): such a payload is binary, as for AWS."""
    if not payload:
        return {}
    try:
        return json.loads(payload, parse_constant=_not_json, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return UNDEFINED
