"""String functions, following their tables in https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html

Non-string arguments go through the standard string conversion (Null and Undefined give Undefined). IoT Core
runs on Java: lengths and indexes count UTF-16 code units (a character outside the Basic Multilingual Plane,
such as an emoji, counts 2), and trim() removes every character up to U+0020, as Java's String.trim() does.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from localcloud.runtime.iot.conversions import to_int, to_string
from localcloud.runtime.iot.functions.base import Function
from localcloud.runtime.iot.sql_ast import Context
from localcloud.runtime.iot.values import UNDEFINED

_ASTRAL = "\U00010000"
_JAVA_WHITESPACE = "".join(chr(code) for code in range(0x21))
MAX_PAD = 1000


# -- Java string indexing (UTF-16 code units) ---------------------------------------------------------------------
def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le", "surrogatepass")


def java_length(text: str) -> int:
    if text.isascii() or max(text) < _ASTRAL:
        return len(text)
    return len(_utf16(text)) // 2


def java_slice(text: str, start: int, end: int) -> str:
    """text[start:end] in UTF-16 code units, indexes already within 0..java_length(text)."""
    if text.isascii() or max(text) < _ASTRAL:
        return text[start:end]
    return _utf16(text)[2 * start : 2 * end].decode("utf-16-le", "surrogatepass")


def java_index_of(text: str, part: str) -> int:
    found = text.find(part)
    return found if found < 0 else java_length(text[:found])


# -- functions ----------------------------------------------------------------------------------------------------
def _texts(operation: Callable[..., Any]) -> Callable[..., Any]:
    """A function of string arguments: each converted, Undefined if any cannot be."""

    def impl(ctx: Context, *args: Any) -> Any:
        texts = [to_string(arg) for arg in args]
        if any(text is UNDEFINED for text in texts):
            return UNDEFINED
        return operation(*texts)

    return impl


def _concat(ctx: Context, *args: Any) -> Any:
    """0 arguments: Undefined. Any array among them: one array of all arguments (arrays spliced in). Else the
    concatenated string forms (the reference's example concat(1) = "1" converts a lone argument too)."""
    if not args:
        return UNDEFINED
    if any(type(arg) is list for arg in args):
        joined: list[Any] = []
        for arg in args:
            if type(arg) is list:
                joined.extend(arg)
            elif arg is not UNDEFINED:
                joined.append(arg)
        return joined
    return _texts(lambda *texts: "".join(texts))(ctx, *args)


def _pad(left: bool) -> Callable[[Context, Any, Any], Any]:
    def impl(ctx: Context, value: Any, count: Any) -> Any:
        text = to_string(value)
        if type(count) not in (int, Decimal, str):  # "Any value | Other value: Undefined"
            return UNDEFINED
        width = to_int(count, ctx.numbers)
        if text is UNDEFINED or width is UNDEFINED:
            return UNDEFINED
        spaces = " " * min(max(width, 0), MAX_PAD)
        return spaces + text if left else text + spaces

    return impl


def _substring(ctx: Context, value: Any, start: Any, end: Any = None) -> Any:
    text = to_string(value)
    first = to_int(start, ctx.numbers)
    if text is UNDEFINED or first is UNDEFINED:
        return UNDEFINED
    length = java_length(text)
    last = length if end is None else to_int(end, ctx.numbers)
    if last is UNDEFINED:
        return UNDEFINED
    first, last = min(max(first, 0), length), min(max(last, 0), length)
    return java_slice(text, first, last) if first < last else ""


def _chr(ctx: Context, value: Any) -> Any:
    code = to_int(value, ctx.numbers)
    if code is UNDEFINED or not 0 <= code <= 127:
        return UNDEFINED
    return chr(code)


FUNCTIONS = [
    Function("chr", _chr, 1, 1),
    Function("concat", _concat, 0, None),
    Function("endswith", _texts(lambda text, suffix: text.endswith(suffix)), 2, 2),
    Function("indexof", _texts(java_index_of), 2, 2, since_2016=True),
    Function("length", _texts(java_length), 1, 1, since_2016=True),
    Function("lower", _texts(str.lower), 1, 1),
    Function("lpad", _pad(left=True), 2, 2),
    Function("ltrim", _texts(lambda text: text.lstrip(_JAVA_WHITESPACE)), 1, 1),
    Function("numbytes", _texts(lambda text: len(text.encode("utf-8", "surrogatepass"))), 1, 1, since_2016=True),
    Function("replace", _texts(lambda text, old, new: text.replace(old, new)), 3, 3),
    Function("rpad", _pad(left=False), 2, 2),
    Function("rtrim", _texts(lambda text: text.rstrip(_JAVA_WHITESPACE)), 1, 1),
    Function("startswith", _texts(lambda text, prefix: text.startswith(prefix)), 2, 2),
    Function("substring", _substring, 2, 3),
    Function("trim", _texts(lambda text: text.strip(_JAVA_WHITESPACE)), 1, 1),
    Function("upper", _texts(str.upper), 1, 1),
]
