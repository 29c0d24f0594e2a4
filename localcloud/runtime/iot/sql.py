"""AWS IoT SQL (version 2016-03-23), the subset iotkpi uses: parsed once into an AST, evaluated per message.

Pure: no I/O; the caller gives each `Message` its receive time (`timestamp()`) and the publisher's client id.

Supported: `SELECT *`, `SELECT *, expr AS alias`, nested fields `a.b.c` and `a[0]`, string/number/boolean/null
literals, `+ - * / %`, unary `-`, `topic()`/`topic(n)` (1-based), `timestamp()`, `clientid()`, `newuuid()`,
`WHERE` with `= <> != < <= > >=`, `AND OR NOT`, parentheses, `IS [NOT] NULL`, `IS [NOT] UNDEFINED`; FROM takes
one single-quoted topic filter with `+`/`#`. Anything else (other functions, CASE, IN, LIKE, JOIN, nested SELECT,
another SQL version) raises `UnsupportedSql` when the rule is loaded, never silently at run time.

Value semantics (Undefined, type rules of the operators) are described in localcloud/runtime/iot/sql_ast.py.
Payloads that are not a JSON object (binary, or a JSON array/scalar): field references are Undefined; a lone
`SELECT *` forwards the payload bytes unchanged (as AWS does for binary payloads); `*` together with other items
raises `SqlEvaluationError` (AWS fails the rule for that message too). An empty payload counts as `{}`.
Select items other than plain field paths need `AS alias` (we do not guess AWS's generated key names).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from localcloud.runtime.iot.sql_ast import (
    UNDEFINED,
    Binary,
    Call,
    Context,
    IsCheck,
    Literal,
    Message,
    Path,
    SelectItem,
    SqlEvaluationError,
    Unary,
    UnsupportedSql,
    parse_payload,
    to_bool,
)
from localcloud.runtime.iot.topics import InvalidTopicFilter, validate_filter

__all__ = [
    "UNDEFINED",
    "Message",
    "Rule",
    "SqlEvaluationError",
    "Template",
    "UnsupportedSql",
    "parse_rule",
    "parse_template",
]

SUPPORTED_SQL_VERSION = "2016-03-23"


@dataclass(frozen=True)
class Rule:
    """A parsed statement. `evaluate` gives the output payload, or None when WHERE drops the message."""

    sql: str
    items: tuple[SelectItem, ...]
    topic_filter: str
    where: Any | None

    @property
    def select_star_only(self) -> bool:
        return len(self.items) == 1 and self.items[0].expr is None

    def evaluate(self, message: Message) -> bytes | None:
        parsed = parse_payload(message.payload)
        document = parsed if isinstance(parsed, dict) else {}
        ctx = Context(message, document)
        if self.where is not None and to_bool(self.where.eval(ctx)) is not True:
            return None
        if self.select_star_only and not isinstance(parsed, dict):
            return message.payload
        if not isinstance(parsed, dict) and any(item.expr is None for item in self.items):
            raise SqlEvaluationError("SELECT * with other items needs a JSON object payload")
        output: dict[str, Any] = {}
        for item in self.items:
            if item.expr is None:
                output.update(document)
                continue
            value = item.expr.eval(ctx)
            if value is not UNDEFINED:
                output[item.alias] = value  # type: ignore[index]
        return json.dumps(output, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# -- parser (recursive descent) ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)"
    r"|(?P<str>'(?:[^']|'')*')|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)|(?P<op><>|!=|<=|>=|[=<>+\-*/%(),.\[\]]))"
)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "IS", "NULL", "UNDEFINED", "TRUE", "FALSE"}
_FUNCTIONS = {"topic": (0, 1), "timestamp": (0, 0), "clientid": (0, 0), "newuuid": (0, 0)}
# Keywords of fuller SQL dialects (and of AWS IoT SQL features we leave out): named in the error, not parsed.
_UNSUPPORTED = {"CASE", "WHEN", "IN", "LIKE", "BETWEEN", "JOIN", "UNION", "GROUP", "ORDER", "LIMIT", "HAVING"}
_COMPARISONS = {"=", "<>", "!=", "<", "<=", ">", ">="}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
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
    def _peek(self) -> tuple[str, str, int]:
        return self.tokens[self.index]

    def _is(self, *words: str) -> bool:
        kind, text, _ = self._peek()
        return (kind == "op" and text in words) or (kind == "ident" and text.upper() in words)

    def _take(self) -> tuple[str, str, int]:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _fail(self, expected: str) -> UnsupportedSql:
        kind, text, offset = self._peek()
        if kind == "ident" and text.upper() in _UNSUPPORTED:
            return UnsupportedSql(f"{text.upper()} is not supported by the local rules engine (in {self.text!r})")
        found = "end of statement" if kind == "eof" else repr(text)
        return UnsupportedSql(f"expected {expected} but found {found} at offset {offset} in {self.text!r}")

    def _expect(self, word: str) -> None:
        if not self._is(word):
            raise self._fail(repr(word))
        self._take()

    # -- grammar
    def statement(self) -> tuple[tuple[SelectItem, ...], str, Any | None]:
        self._expect("SELECT")
        items = [self._select_item()]
        while self._is(","):
            self._take()
            items.append(self._select_item())
        self._expect("FROM")
        kind, text, _ = self._peek()
        if kind != "str":
            raise self._fail("a single-quoted topic filter after FROM")
        self._take()
        where = None
        if self._is("WHERE"):
            self._take()
            where = self._expression()
        if self._peek()[0] != "eof":
            raise self._fail("end of statement (only SELECT ... FROM '<topic filter>' [WHERE ...] is supported)")
        return tuple(items), text[1:-1].replace("''", "'"), where

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
        if self._is("AS"):
            self._take()
            kind, text, _ = self._peek()
            if kind != "ident" or text.upper() in _KEYWORDS:
                raise self._fail("an alias name after AS")
            self._take()
            return SelectItem(expr=expr, alias=text)
        if isinstance(expr, Path) and isinstance(expr.steps[-1], str):
            return SelectItem(expr=expr, alias=expr.steps[-1])
        raise UnsupportedSql(f"give every select item that is not a field an alias (expr AS name) in {self.text!r}")

    def _expression(self) -> Any:
        left = self._and()
        while self._is("OR"):
            self._take()
            left = Binary("OR", left, self._and())
        return left

    def _and(self) -> Any:
        left = self._not()
        while self._is("AND"):
            self._take()
            left = Binary("AND", left, self._not())
        return left

    def _not(self) -> Any:
        if self._is("NOT"):
            self._take()
            return Unary("NOT", self._not())
        return self._comparison()

    def _comparison(self) -> Any:
        left = self._additive()
        if self._is(*_COMPARISONS):
            op = self._take()[1]
            return Binary(op, left, self._additive())
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
            op = self._take()[1]
            left = Binary(op, left, self._multiplicative())
        return left

    def _multiplicative(self) -> Any:
        left = self._unary()
        while self._is("*", "/", "%"):
            op = self._take()[1]
            left = Binary(op, left, self._unary())
        return left

    def _unary(self) -> Any:
        if self._is("-"):
            self._take()
            return Unary("-", self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text, _ = self._peek()
        if kind == "num":
            self._take()
            return Literal(float(text) if any(c in text for c in ".eE") else int(text))
        if kind == "str":
            self._take()
            return Literal(text[1:-1].replace("''", "'"))
        if self._is("("):
            self._take()
            if self._is("SELECT"):
                raise UnsupportedSql(f"nested SELECT is not supported in {self.text!r}")
            expr = self._expression()
            self._expect(")")
            return expr
        if kind != "ident":
            raise self._fail("a value, field or function")
        upper = text.upper()
        if upper in {"TRUE", "FALSE", "NULL"}:
            self._take()
            return Literal({"TRUE": True, "FALSE": False, "NULL": None}[upper])
        if upper in _KEYWORDS or upper in _UNSUPPORTED:
            raise self._fail("a value, field or function")
        self._take()
        if self._is("("):
            return self._call(text)
        return self._path(text)

    def _call(self, name: str) -> Call:
        if name not in _FUNCTIONS:
            raise UnsupportedSql(f"function {name}() is not supported (supported: {', '.join(_FUNCTIONS)})")
        self._take()
        args = [] if self._is(")") else [self._expression()]
        while self._is(","):
            self._take()
            args.append(self._expression())
        self._expect(")")
        low, high = _FUNCTIONS[name]
        if not low <= len(args) <= high:
            raise UnsupportedSql(f"{name}() takes {low} to {high} arguments, got {len(args)}")
        return Call(name, tuple(args))

    def _path(self, first: str) -> Path:
        steps: list[str | int] = [first]
        while self._is(".", "["):
            if self._take()[1] == ".":
                kind, text, _ = self._peek()
                if kind != "ident" or text.upper() in _KEYWORDS:
                    raise self._fail("a field name after '.'")
                steps.append(self._take()[1])
            else:
                kind, text, _ = self._peek()
                if kind != "num" or not text.isdigit():
                    raise self._fail("an array index")
                steps.append(int(self._take()[1]))
                self._expect("]")
        return Path(tuple(steps))


def parse_rule(sql: str, version: str = SUPPORTED_SQL_VERSION) -> Rule:
    """Parse a rule's SQL; raises UnsupportedSql with the reason and position for anything unsupported."""
    if version != SUPPORTED_SQL_VERSION:
        raise UnsupportedSql(f"awsIotSqlVersion {version!r} is not supported; use {SUPPORTED_SQL_VERSION!r}")
    items, topic_filter, where = _Parser(sql).statement()
    try:
        validate_filter(topic_filter)
    except InvalidTopicFilter as exc:
        raise UnsupportedSql(f"FROM topic filter: {exc}") from exc
    return Rule(sql=sql, items=items, topic_filter=topic_filter, where=where)


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


@dataclass(frozen=True)
class Template:
    """A substitution template such as `${topic(2)}` or `device-${device_id}`, parsed once."""

    parts: tuple[str | Any, ...]

    def render(self, message: Message) -> str:
        parsed = parse_payload(message.payload)
        ctx = Context(message, parsed if isinstance(parsed, dict) else {})
        rendered = []
        for part in self.parts:
            if isinstance(part, str):
                rendered.append(part)
                continue
            value = part.eval(ctx)
            # AWS substitutes an empty string for Undefined.
            if value is not UNDEFINED:
                rendered.append(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
        return "".join(rendered)


def parse_template(text: str) -> Template:
    parts: list[str | Any] = []
    position = 0
    for match in _TEMPLATE.finditer(text):
        if match.start() > position:
            parts.append(text[position : match.start()])
        parts.append(_Parser(match.group(1)).lone_expression())
        position = match.end()
    if "${" in text[position:]:
        raise UnsupportedSql(f"unterminated substitution template in {text!r}")
    if position < len(text):
        parts.append(text[position:])
    return Template(parts=tuple(parts))
