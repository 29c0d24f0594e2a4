"""What every IoT SQL function is: its implementation, its arity, the SQL versions it exists in, and the checks
of its arguments that can be made when the rule loads (a literal that can never work is refused then)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from localcloud.runtime.iot.sql_ast import Call, Literal, UnsupportedSql


@dataclass(frozen=True)
class Function:
    name: str
    impl: Callable[..., Any]  # impl(ctx, *argument values), or impl(ctx, *argument nodes) when lazy
    min_args: int
    max_args: int | None  # None: any number
    since_2016: bool = False  # "Supported by SQL version 2016-03-23 and later"
    lazy: bool = False  # gets the argument nodes (to catch failures, or to see `*`)
    check: Callable[[tuple[Any, ...]], None] | None = None  # load-time check of the argument nodes


def literal_string(node: Any) -> str | None:
    """The text of a string literal argument; None when the argument is computed per message."""
    if isinstance(node, Literal) and type(node.value) is str:
        return node.value
    return None


def require_literal(function: str, position: str, node: Any, allowed: tuple[str, ...]) -> str:
    """A string argument the reference says must be one of `allowed`, given as a literal."""
    text = literal_string(node)
    if text is None or text not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed)
        raise UnsupportedSql(f"{function}(): the {position} argument must be one of the literal strings {choices}")
    return text


def calls_in(node: Any) -> Iterator[Call]:
    """Every function call inside an expression tree."""
    if isinstance(node, Call):
        yield node
        yield from _calls_in_value(node.args)
    elif dataclasses.is_dataclass(node) and not isinstance(node, type):
        for field in dataclasses.fields(node):
            yield from _calls_in_value(getattr(node, field.name))


def _calls_in_value(value: Any) -> Iterator[Call]:
    if isinstance(value, tuple | list):
        for item in value:
            yield from _calls_in_value(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        yield from calls_in(value)
