"""AWS IoT SQL (versions 2015-10-08 and 2016-03-23), parsed once into an AST and evaluated per message.

The reference this follows, page by page (https://docs.aws.amazon.com/iot/latest/developerguide/...):
iot-sql-reference.html, iot-sql-select.html (`*`, aliases, VALUE), iot-sql-from.html, iot-sql-where.html,
iot-sql-data-types.html (values.py, conversions.py), iot-sql-operators.html (operators.py),
iot-sql-functions.html (functions/), iot-sql-literals.html (`{...}`, `[...]`), iot-sql-case.html,
iot-sql-json.html (`.`, `*`), iot-sql-nested-queries.html (`(SELECT ... FROM field ...)`),
iot-rule-sql-version.html (what 2016-03-23 adds), binary-payloads.html.

Anything this engine cannot run exactly as IoT Core does is refused when the rule loads (`UnsupportedSql`, naming
the construct): SQL version 'beta', the SET clause and @variables, searched CASE (`CASE WHEN cond ...`, not in the
reference), IN/LIKE/BETWEEN/JOIN/... (not IoT SQL), machinelearning_predict(), decode(..., 'proto', ...), a select
item that is neither a field nor aliased (IoT Core's generated key names are not documented), a dotted alias
(`AS a.b`, output undocumented), and with 2015-10-08: the functions, literals, nested queries and cast types the
reference marks 2016-03-23, and select items reaching into nested objects or arrays (2016-03-23 lists "fixes for
selecting nested JSON objects" and "for array queries" without saying what 2015-10-08 does instead).

Payloads that are not JSON (binary): field references are Undefined; a lone `SELECT *` forwards the payload bytes
unchanged, as IoT Core does; `*` with other items fails the rule for that message. An empty payload counts as `{}`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from localcloud.runtime.iot.conversions import CAST_TYPES, CAST_TYPES_SINCE_2016
from localcloud.runtime.iot.functions import lookup
from localcloud.runtime.iot.operators import negate
from localcloud.runtime.iot.sql_ast import (
    DROPPED,
    And,
    Arithmetic,
    ArrayLiteral,
    Call,
    Case,
    Cast,
    Context,
    Environment,
    Equality,
    IsCheck,
    Literal,
    Member,
    Message,
    MqttProperties,
    Negate,
    NestedSelect,
    Not,
    ObjectLiteral,
    Or,
    Path,
    Select,
    SelectItem,
    SqlEvaluationError,
    Star,
    UnsupportedSql,
)
from localcloud.runtime.iot.topics import InvalidTopicFilter, validate_filter
from localcloud.runtime.iot.values import SQL_2015, SQL_2016, SQL_VERSIONS, UNDEFINED, Numbers, parse_payload, to_json

__all__ = [
    "UNDEFINED",
    "Environment",
    "Message",
    "MqttProperties",
    "Rule",
    "SqlEvaluationError",
    "Template",
    "UnsupportedSql",
    "parse_rule",
    "parse_template",
]

_NUMBERS = {version: Numbers(version) for version in SQL_VERSIONS}


@dataclass(frozen=True)
class Rule:
    """A parsed statement. `evaluate` gives the output payload, or None when WHERE drops the message."""

    sql: str
    select: Select
    topic_filter: str
    numbers: Numbers

    @property
    def version(self) -> str:
        return self.numbers.version

    def context(self, message: Message, environment: Environment | None = None) -> Context:
        """What one message's evaluation (and the action's substitution templates) read."""
        return Context(message, parse_payload(message.payload, self.numbers), environment or Environment(self.numbers))

    def evaluate(self, message: Message, environment: Environment | None = None) -> bytes | None:
        return self.output(self.context(message, environment))

    def output(self, ctx: Context) -> bytes | None:
        value = self.select.project(ctx)
        if value is DROPPED:
            return None
        if self.select.star_only:
            return to_json(value) if type(value) is dict else ctx.message.payload
        if not self.select.value:
            return to_json(value)
        if value is UNDEFINED:
            return b""  # "Undefined is converted to an empty string when serialized by itself"
        if type(value) is list and not self.numbers.whole_is_int:
            raise SqlEvaluationError("SELECT VALUE cannot output an array with SQL 2015-10-08")
        return to_json(value)


# -- tokens --------------------------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<str>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<var>@[A-Za-z_]\w*)"
    r"|(?P<op><>|!=|<=|>=|[=<>+\-*/%(),.\[\]{}:]))"
)
_KEYWORDS = {
    "SELECT", "VALUE", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "IS", "NULL", "UNDEFINED", "TRUE", "FALSE",
    "CASE", "WHEN", "THEN", "ELSE", "END",
}  # fmt: skip
_RESERVED = _KEYWORDS - {"VALUE"}  # VALUE is also a field name or alias (the WHERE page's example: `AS value`)
# Keywords of fuller SQL dialects, not of IoT SQL: named in the error, not parsed.
_NOT_IOT_SQL = {"IN", "LIKE", "BETWEEN", "JOIN", "UNION", "GROUP", "ORDER", "LIMIT", "HAVING", "DISTINCT", "EXISTS"}
_COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}


def _unquote(text: str) -> str:
    quote = text[0]
    return text[1:-1].replace(quote * 2, quote)


class _Parser:
    def __init__(self, text: str, numbers: Numbers) -> None:
        self.text = text
        self.numbers = numbers
        self.tokens: list[tuple[str, str, int]] = []
        position = 0
        while text[position:].strip():
            match = _TOKEN.match(text, position)
            if match is None or match.lastgroup is None:
                offset = len(text) - len(text[position:].lstrip())
                raise UnsupportedSql(f"unexpected character {text[offset]!r} at offset {offset} in {text!r}")
            self.tokens.append((match.lastgroup, match.group(match.lastgroup), match.start(match.lastgroup)))
            position = match.end()
        self.tokens.append(("eof", "", len(text)))
        self.index = 0

    # -- token helpers
    def _peek(self, ahead: int = 0) -> tuple[str, str, int]:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def _is(self, *words: str, ahead: int = 0) -> bool:
        kind, text, _ = self._peek(ahead)
        return (kind == "op" and text in words) or (kind == "ident" and text.upper() in words)

    def _take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _fail(self, expected: str) -> UnsupportedSql:
        kind, text, offset = self._peek()
        if kind == "ident" and text.upper() in _NOT_IOT_SQL:
            return UnsupportedSql(f"{text.upper()} is not supported by the local rules engine (in {self.text!r})")
        if kind == "var":
            return UnsupportedSql(f"variables ({text}) and the SET clause are not supported by the local rules engine")
        found = "end of statement" if kind == "eof" else repr(text)
        return UnsupportedSql(f"expected {expected} but found {found} at offset {offset} in {self.text!r}")

    def _expect(self, word: str) -> None:
        if not self._is(word):
            raise self._fail(repr(word))
        self._take()

    def _since_2016(self, construct: str) -> None:
        if not self.numbers.whole_is_int:
            raise UnsupportedSql(f"{construct} needs awsIotSqlVersion {SQL_2016!r} (the rule uses {SQL_2015!r})")

    # -- statements
    def statement(self) -> tuple[Select, str]:
        if self._is("SET"):
            raise UnsupportedSql("the SET clause (variables) is not supported by the local rules engine")
        self._expect("SELECT")
        select = self._select_list()
        self._expect("FROM")
        kind, text, _ = self._peek()
        if kind != "str" or not text.startswith("'"):
            raise self._fail("a single-quoted topic filter after FROM")
        self._take()
        select = self._where(select)
        if self._peek()[0] != "eof":
            raise self._fail("end of statement (only SELECT ... FROM '<topic filter>' [WHERE ...] is supported)")
        return select, _unquote(text)

    def _select_list(self) -> Select:
        value = self._is("VALUE") and not self._is("FROM", ",", "AS", ".", "[", ahead=1)
        if value:
            self._take()
            return Select(items=(SelectItem(self._expression(), None),), value=True, where=None)
        items = [self._select_item()]
        while self._is(","):
            self._take()
            items.append(self._select_item())
        return Select(items=tuple(items), value=False, where=None)

    def _where(self, select: Select) -> Select:
        if not self._is("WHERE"):
            return select
        self._take()
        return Select(items=select.items, value=select.value, where=self._expression())

    def lone_expression(self) -> Any:
        expr = self._expression()
        if self._peek()[0] != "eof":
            raise self._fail("end of expression")
        return expr

    def _select_item(self) -> SelectItem:
        if self._is("*"):
            self._take()
            return SelectItem(expr=None, alias=None)
        expr = self._expression()
        if not self.numbers.whole_is_int and isinstance(expr, Path) and len(expr.steps) > 1:
            self._since_2016("selecting a nested field or array element")
        if self._is("AS"):
            self._take()
            kind, text, _ = self._peek()
            if kind != "ident" or text.upper() in _RESERVED:
                raise self._fail("an alias name after AS")
            self._take()
            if self._is("."):
                raise UnsupportedSql(f"a dotted alias (AS {text}.…) is not supported by the local rules engine")
            return SelectItem(expr=expr, alias=text)
        if isinstance(expr, Path) and isinstance(expr.steps[-1], str):
            return SelectItem(expr=expr, alias=expr.steps[-1])
        raise UnsupportedSql(f"give every select item that is not a field an alias (expr AS name) in {self.text!r}")

    # -- expressions, lowest precedence first
    def _expression(self) -> Any:
        left = self._and()
        while self._is("OR"):
            self._take()
            left = Or(left, self._and())
        return left

    def _and(self) -> Any:
        left = self._not()
        while self._is("AND"):
            self._take()
            left = And(left, self._not())
        return left

    def _not(self) -> Any:
        if self._is("NOT"):
            self._take()
            return Not(self._not())
        return self._comparison()

    def _comparison(self) -> Any:
        left = self._additive()
        if self._is(*_COMPARISONS):
            op = self._take()[1]
            right = self._additive()
            if op in {"=", "<>", "!="}:
                return Equality(op != "=", left, right)
            return Arithmetic(op, left, right)
        if self._is("IS"):
            self._take()
            negated = self._is("NOT")
            if negated:
                self._take()
            if not self._is("NULL", "UNDEFINED"):
                raise self._fail("NULL or UNDEFINED after IS")
            return IsCheck(left, self._take()[1].upper(), negated)
        return left

    def _additive(self) -> Any:
        left = self._multiplicative()
        while self._is("+", "-"):
            left = Arithmetic(self._take()[1], left, self._multiplicative())
        return left

    def _multiplicative(self) -> Any:
        left = self._unary()
        while self._is("*", "/", "%"):
            left = Arithmetic(self._take()[1], left, self._unary())
        return left

    def _unary(self) -> Any:
        if self._is("-"):
            self._take()
            operand = self._unary()
            if isinstance(operand, Literal) and type(operand.value) in (int, Decimal):
                return Literal(negate(operand.value, self.numbers))  # a negative number literal
            return Negate(operand)
        return self._postfix(self._primary())

    def _postfix(self, base: Any) -> Any:
        steps: list[str | int] = []
        while self._is(".", "["):
            if self._take()[1] == ".":
                kind, text, _ = self._peek()
                if kind != "ident" or text.upper() in _RESERVED:
                    raise self._fail("a field name after '.'")
                steps.append(self._take()[1])
            else:
                kind, text, _ = self._peek()
                if kind != "num" or not text.isdigit():
                    raise self._fail("an array index")
                steps.append(int(self._take()[1]))
                self._expect("]")
        if not steps:
            return base
        if isinstance(base, Path):
            return Path(base.steps + tuple(steps))
        return Member(base, tuple(steps))

    def _primary(self) -> Any:
        kind, text, _ = self._peek()
        if kind == "num":
            self._take()
            if not any(c in text for c in ".eE"):
                return Literal(self.numbers.int(int(text)))
            try:
                return Literal(self.numbers.parse(text))
            except ValueError as exc:
                raise UnsupportedSql(f"{exc} (in {self.text!r})") from exc
        if kind == "str":
            self._take()
            return Literal(_unquote(text))
        if self._is("("):
            return self._parenthesised()
        if self._is("{"):
            return self._object()
        if self._is("["):
            return self._array()
        if kind != "ident":
            raise self._fail("a value, field or function")
        upper = text.upper()
        if upper in {"TRUE", "FALSE", "NULL"}:
            self._take()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[upper])
        if upper == "CASE":
            return self._case()
        if upper in _RESERVED or upper in _NOT_IOT_SQL:
            raise self._fail("a value, field or function")
        self._take()
        if self._is("("):
            return self._cast() if upper == "CAST" else self._call(text)
        return Path((text,))

    def _parenthesised(self) -> Any:
        self._take()
        if self._is("SELECT"):
            return self._nested_select()
        expr = self._expression()
        self._expect(")")
        return expr

    def _nested_select(self) -> NestedSelect:
        self._since_2016("a nested SELECT")
        self._take()
        select = self._select_list()
        self._expect("FROM")
        if self._peek()[0] == "str":
            raise self._fail("a field of the message after a nested SELECT's FROM")
        source = self._postfix(self._primary())
        select = self._where(select)
        self._expect(")")
        return NestedSelect(select, source)

    def _object(self) -> ObjectLiteral:
        self._since_2016("an object literal")
        self._take()
        members: list[tuple[str, Any]] = []
        while not self._is("}"):
            kind, text, _ = self._peek()
            if kind != "str":
                raise self._fail("a quoted key in an object literal")
            self._take()
            self._expect(":")
            members.append((_unquote(text), self._expression()))
            if not self._is("}"):
                self._expect(",")
        self._take()
        return ObjectLiteral(tuple(members))

    def _array(self) -> ArrayLiteral:
        self._since_2016("an array literal")
        self._take()
        items: list[Any] = []
        while not self._is("]"):
            items.append(self._expression())
            if not self._is("]"):
                self._expect(",")
        self._take()
        return ArrayLiteral(tuple(items))

    def _case(self) -> Case:
        self._take()
        if self._is("WHEN"):
            raise UnsupportedSql("searched CASE (CASE WHEN condition THEN ...) is not in the AWS IoT SQL reference; "
                                 "use CASE value WHEN ... THEN ... END")  # fmt: skip
        subject = self._expression()
        branches = []
        while self._is("WHEN"):
            self._take()
            test = self._expression()
            self._expect("THEN")
            branches.append((test, self._expression()))
        if not branches:
            raise self._fail("WHEN after CASE's value")
        otherwise = None
        if self._is("ELSE"):
            self._take()
            otherwise = self._expression()
        self._expect("END")
        return Case(subject, tuple(branches), otherwise)

    def _cast(self) -> Cast:
        self._take()
        operand = self._expression()
        self._expect("AS")
        kind, text, _ = self._peek()
        if kind != "ident" or text.lower() not in CAST_TYPES:
            raise self._fail(f"a cast type ({', '.join(sorted(CAST_TYPES))})")
        if text.lower() in CAST_TYPES_SINCE_2016:
            self._since_2016(f"cast(... AS {text})")
        self._take()
        self._expect(")")
        return Cast(operand, CAST_TYPES[text.lower()])

    def _call(self, name: str) -> Call:
        function = lookup(name)
        if function.since_2016:
            self._since_2016(f"{function.name}()")
        self._take()
        args: list[Any] = []
        while not self._is(")"):
            if self._is("*") and self._is(",", ")", ahead=1):
                self._take()
                args.append(Star())
            else:
                args.append(self._expression())
            if not self._is(")"):
                self._expect(",")
        self._take()
        high = function.max_args
        if len(args) < function.min_args or (high is not None and len(args) > high):
            arity = f"{function.min_args}" + (
                "" if high == function.min_args else f" to {high if high is not None else 'any'}"
            )
            raise UnsupportedSql(f"{function.name}() takes {arity} arguments, got {len(args)}")
        if function.check is not None:
            function.check(tuple(args))
        return Call(function, tuple(args))


def parse_rule(sql: str, version: str = SQL_2016) -> Rule:
    """Parse a rule's SQL; raises UnsupportedSql with the reason and position for anything unsupported."""
    if version not in _NUMBERS:
        raise UnsupportedSql(f"awsIotSqlVersion {version!r} is not supported; use {SQL_2016!r} or {SQL_2015!r}")
    numbers = _NUMBERS[version]
    select, topic_filter = _Parser(sql, numbers).statement()
    try:
        validate_filter(topic_filter)
    except InvalidTopicFilter as exc:
        raise UnsupportedSql(f"FROM topic filter: {exc}") from exc
    return Rule(sql=sql, select=select, topic_filter=topic_filter, numbers=numbers)


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Template:
    """A substitution template such as `${topic(2)}` or `device-${device_id}`, parsed once; evaluated against
    the incoming message (not the rule's output), as IoT Core does."""

    parts: tuple[str | Any, ...]
    numbers: Numbers

    def render(self, message: Message, environment: Environment | None = None) -> str:
        payload = parse_payload(message.payload, self.numbers)
        return self.render_in(Context(message, payload, environment or Environment(self.numbers)))

    def render_in(self, ctx: Context) -> str:
        rendered = []
        for part in self.parts:
            if type(part) is str:
                rendered.append(part)
                continue
            value = part.eval(ctx)
            if value is UNDEFINED:  # IoT Core substitutes an empty string for Undefined
                continue
            rendered.append(value if type(value) is str else to_json(value).decode("utf-8", "surrogatepass"))
        return "".join(rendered)


def parse_template(text: str, version: str = SQL_2016) -> Template:
    numbers = _NUMBERS[version]
    parts: list[str | Any] = []
    position = 0
    for match in _TEMPLATE.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(_Parser(match.group(1), numbers).lone_expression())
        position = match.end()
    if "${" in text[position:]:
        raise UnsupportedSql(f"unterminated substitution template in {text!r}")
    if position < len(text):
        parts.append(text[position:])
    return Template(parts=tuple(parts), numbers=numbers)
