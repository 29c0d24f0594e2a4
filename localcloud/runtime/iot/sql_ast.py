"""Expression nodes of the IoT SQL evaluator and what they evaluate against (a message in a `Context`).

Values and their JSON form are in values.py, operator semantics in operators.py, functions in functions/.
Field references, `.name` and `[n]` on a value of the wrong shape give Undefined, as on IoT Core.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from localcloud.runtime.iot import operators
from localcloud.runtime.iot.conversions import to_bool
from localcloud.runtime.iot.values import UNDEFINED, Numbers

if TYPE_CHECKING:
    from localcloud.runtime.iot.functions import Function
    from localcloud.runtime.iot.functions.services import Lookups


class _Dropped:
    __slots__ = ()

    def __repr__(self) -> str:
        return "Dropped"


DROPPED: Any = _Dropped()  # what a SELECT gives when its WHERE is not true


class UnsupportedSql(ValueError):
    """The statement uses syntax or a feature this engine does not implement (raised at load time)."""


class SqlEvaluationError(ValueError):
    """A message the rule cannot be evaluated on (IoT Core performs no action for it)."""


@dataclass(frozen=True)
class MqttProperties:
    """The MQTT 5 properties of the PUBLISH, as the publisher sent them (get_mqtt_property, get_user_properties)."""

    content_type: str | None = None
    format_indicator: int | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Message:
    """One MQTT message and what the broker told us about its publisher."""

    topic: str
    payload: bytes
    received_at_ms: int
    client_id: str | None = None
    principal: str | None = None
    source_ip: str | None = None
    trace_id: str | None = None  # given (tests, replays); else made on first use by `trace`
    properties: MqttProperties | None = None

    @functools.cached_property
    def trace(self) -> str:
        """The message's trace id (traceid(), the error action's cloudwatchTraceId): one per message, made only
        when asked for, since few messages need one and a uuid4 per message was a tenth of the engine's cost."""
        return self.trace_id or str(uuid.uuid4())


@dataclass
class Environment:
    """What a rule runs in: its account, the endpoint's services for get_secret() & co, and its SQL version."""

    numbers: Numbers
    account_id: str | None = None
    lookups: Lookups | None = None


class Context:
    """What expressions see: the message, the value `*` stands for, and the object fields are read from
    (the payload at the top level, an element of the FROM array in a nested SELECT)."""

    __slots__ = ("calls", "document", "environment", "message", "numbers", "payload")

    def __init__(self, message: Message, payload: Any, environment: Environment) -> None:
        self.message = message
        self.payload = payload
        self.document = payload if type(payload) is dict else {}
        self.environment = environment
        self.numbers = environment.numbers
        self.calls: dict[str, int] = {}  # service function calls of this evaluation, for their per-statement limits

    def nested(self, document: Any) -> Context:
        inner = Context(self.message, document, self.environment)
        inner.calls = self.calls
        return inner


# -- nodes -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Literal:
    value: Any

    def eval(self, ctx: Context) -> Any:
        return self.value


@dataclass(frozen=True)
class Star:
    """`*` as a function argument: the whole payload (JSON value, or Undefined when it is binary)."""

    def eval(self, ctx: Context) -> Any:
        return ctx.payload


def access(value: Any, step: str | int) -> Any:
    """`value.step` or `value[step]`: Undefined when the value has no such member."""
    if type(step) is str:
        if type(value) is dict:
            return value.get(step, UNDEFINED)
        return UNDEFINED
    if type(value) is list and 0 <= step < len(value):
        return value[step]
    return UNDEFINED


@dataclass(frozen=True)
class Path:
    """A field of the current object, with `.name` and `[n]` steps: `state.reported.color`, `readings[0]`."""

    steps: tuple[str | int, ...]

    def eval(self, ctx: Context) -> Any:
        value: Any = ctx.document
        for step in self.steps:
            value = access(value, step)
            if value is UNDEFINED:
                return UNDEFINED
        return value


@dataclass(frozen=True)
class Member:
    """`.name` / `[n]` steps on any expression's value: `decode(x, 'base64').temperature`, `get(a, 0).v`."""

    base: Any
    steps: tuple[str | int, ...]

    def eval(self, ctx: Context) -> Any:
        value = self.base.eval(ctx)
        for step in self.steps:
            value = access(value, step)
            if value is UNDEFINED:
                return UNDEFINED
        return value


@dataclass(frozen=True)
class Call:
    function: Function
    args: tuple[Any, ...]

    def eval(self, ctx: Context) -> Any:
        if self.function.lazy:
            return self.function.impl(ctx, *self.args)
        return self.function.impl(ctx, *[arg.eval(ctx) for arg in self.args])


@dataclass(frozen=True)
class Cast:
    operand: Any
    convert: Any  # conversions.CAST_TYPES[...]

    def eval(self, ctx: Context) -> Any:
        return self.convert(self.operand.eval(ctx), ctx.numbers)


@dataclass(frozen=True)
class Negate:
    operand: Any

    def eval(self, ctx: Context) -> Any:
        return operators.negate(self.operand.eval(ctx), ctx.numbers)


@dataclass(frozen=True)
class Not:
    operand: Any

    def eval(self, ctx: Context) -> Any:
        return operators.logical_not(self.operand.eval(ctx))


@dataclass(frozen=True)
class And:
    left: Any
    right: Any

    def eval(self, ctx: Context) -> Any:
        return operators.logical_and(self.left.eval(ctx), self.right.eval(ctx))


@dataclass(frozen=True)
class Or:
    left: Any
    right: Any

    def eval(self, ctx: Context) -> Any:
        return operators.logical_or(self.left.eval(ctx), self.right.eval(ctx))


@dataclass(frozen=True)
class Equality:
    negated: bool  # `<>` / `!=`
    left: Any
    right: Any

    def eval(self, ctx: Context) -> Any:
        compare = operators.not_equal if self.negated else operators.equal
        return compare(self.left.eval(ctx), self.right.eval(ctx))


@dataclass(frozen=True)
class Arithmetic:
    """Arithmetic and ordering operators: both take the SQL version's number rules."""

    op: str
    left: Any
    right: Any
    operation: Any = field(compare=False, repr=False, default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", operators.BINARY[self.op])

    def eval(self, ctx: Context) -> Any:
        return self.operation(self.left.eval(ctx), self.right.eval(ctx), ctx.numbers)


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
class Case:
    """`CASE v WHEN t THEN r ... [ELSE e] END`: the first t equal to v (as `=` decides) picks its r; Undefined v,
    or no match and no ELSE, gives Undefined."""

    subject: Any
    branches: tuple[tuple[Any, Any], ...]
    otherwise: Any | None

    def eval(self, ctx: Context) -> Any:
        value = self.subject.eval(ctx)
        if value is UNDEFINED:
            return UNDEFINED
        for test, result in self.branches:
            if operators.equal(value, test.eval(ctx)) is True:
                return result.eval(ctx)
        return UNDEFINED if self.otherwise is None else self.otherwise.eval(ctx)


@dataclass(frozen=True)
class ObjectLiteral:
    """`{'key': expr, ...}`; a member whose value is Undefined is left out, as in a SELECT's output."""

    members: tuple[tuple[str, Any], ...]

    def eval(self, ctx: Context) -> dict[str, Any]:
        built = {}
        for key, expr in self.members:
            value = expr.eval(ctx)
            if value is not UNDEFINED:
                built[key] = value
        return built


@dataclass(frozen=True)
class ArrayLiteral:
    """`[expr, ...]`; Undefined items are left out (JSON cannot carry them)."""

    items: tuple[Any, ...]

    def eval(self, ctx: Context) -> list[Any]:
        return [value for value in (item.eval(ctx) for item in self.items) if value is not UNDEFINED]


@dataclass(frozen=True)
class SelectItem:
    expr: Any | None  # None is `*`
    alias: str | None


@dataclass(frozen=True)
class Select:
    """SELECT [VALUE] items [FROM source] [WHERE condition], top-level or nested."""

    items: tuple[SelectItem, ...]
    value: bool
    where: Any | None

    @property
    def star_only(self) -> bool:
        return len(self.items) == 1 and self.items[0].expr is None

    def project(self, ctx: Context) -> Any:
        """The selected value for one document: an object, the VALUE, or DROPPED when WHERE is not true."""
        if self.where is not None and to_bool(self.where.eval(ctx)) is not True:
            return DROPPED
        if self.value:
            return self.items[0].expr.eval(ctx)  # type: ignore[union-attr]
        if self.star_only:
            return ctx.payload
        output: dict[str, Any] = {}
        for item in self.items:
            if item.expr is None:
                if type(ctx.payload) is not dict:
                    raise SqlEvaluationError("SELECT * with other items needs a JSON object payload")
                output.update(ctx.payload)
                continue
            value = item.expr.eval(ctx)
            if value is not UNDEFINED:
                output[item.alias] = value  # type: ignore[index]
        return output


@dataclass(frozen=True)
class NestedSelect:
    """`(SELECT ... FROM field ...)` (nested object queries): over an array, one result per element that WHERE
    keeps (Undefined VALUEs left out); over an object, that object's result; anything else is Undefined."""

    select: Select
    source: Any

    def eval(self, ctx: Context) -> Any:
        source = self.source.eval(ctx)
        if type(source) is dict:
            result = self.select.project(ctx.nested(source))
            return UNDEFINED if result is DROPPED else result
        if type(source) is not list:
            return UNDEFINED
        results = []
        for element in source:
            result = self.select.project(ctx.nested(element))
            if result is not DROPPED and result is not UNDEFINED:
                results.append(result)
        return results
