"""regexp_matches, regexp_replace, regexp_substr
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html#iot-func-regex-matches).

IoT Core uses Java regular expressions; Python's `re` runs them after a translation of the syntax that differs:
named groups `(?<name>...)` and back references `\\k<name>`, `\\Q...\\E` quoting, `\\z`/`\\Z`, and ASCII-only
`\\d \\w \\s` and case folding (Java's defaults). Java constructs Python has no equivalent for (`\\p{...}` classes,
class intersections `&&`, nested classes, ...) make the pattern invalid: a literal pattern is refused when the
rule loads, a computed one gives Undefined, as an invalid pattern does on IoT Core. Replacements use Java's
syntax: `$n`, `${name}`, `\\` escapes the next character.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

from localcloud.runtime.iot.conversions import to_string
from localcloud.runtime.iot.functions.base import Function, literal_string
from localcloud.runtime.iot.sql_ast import Context, UnsupportedSql
from localcloud.runtime.iot.values import UNDEFINED

_JAVA_ONLY = re.compile(r"\\[pPhHvVRX]|&&|\(\?[a-zA-Z]*[dU]")


class InvalidPattern(ValueError):
    """A pattern or replacement Java would reject (or Python cannot run the same way)."""


def _translate(pattern: str) -> str:
    """The Java pattern in Python's syntax."""
    java_only = _JAVA_ONLY.search(pattern)
    if java_only:
        raise InvalidPattern(f"Java regex construct {java_only.group()!r} has no Python equivalent")
    out, index, in_class = [], 0, False
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("\\Q", index):
            end = pattern.find("\\E", index + 2)
            end = len(pattern) if end < 0 else end
            out.append(re.escape(pattern[index + 2 : end]))
            index = end + 2
            continue
        if pattern.startswith("\\k<", index) and ">" in pattern[index:]:
            end = pattern.index(">", index)
            out.append(f"(?P={pattern[index + 3 : end]})")  # a named back reference
            index = end + 1
            continue
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            out.append({"z": r"\Z", "Z": r"(?=\n?\Z)"}.get(escaped, pattern[index : index + 2]))
            index += 2
            continue
        if in_class and char == "[":
            raise InvalidPattern("nested character classes (a union in Java) have no Python equivalent")
        if char == "[" and not in_class:
            in_class = True
            # A ']' right after '[' or '[^' is a literal in both dialects, not the end of the class.
            opening = 2 if pattern.startswith("[^", index) else 1
            if pattern.startswith("]", index + opening):
                opening += 1
            out.append(pattern[index : index + opening])
            index += opening
            continue
        if char == "]":
            in_class = False
        if not in_class and pattern.startswith("(?<", index) and not pattern.startswith(("(?<=", "(?<!"), index):
            out.append("(?P<")
            index += 3
            continue
        out.append(char)
        index += 1
    return "".join(out)


@functools.lru_cache(maxsize=256)
def compile_java(pattern: str) -> re.Pattern[str]:
    with warnings.catch_warnings():
        # Python warns where its syntax will change (nested sets `[a[b]]`, which Java unions): refuse those too.
        warnings.simplefilter("error", FutureWarning)
        try:
            return re.compile(_translate(pattern), re.ASCII)
        except (re.error, FutureWarning) as exc:
            raise InvalidPattern(str(exc)) from exc


@functools.lru_cache(maxsize=256)
def _replacement(template: str, group_count: int, names: frozenset[str]) -> Callable[[re.Match[str]], str]:
    """Java's Matcher.replaceAll template as a function of the match: literal text and group references."""
    parts: list[tuple[bool, str | int]] = []  # (is a group reference, text or group)
    index = 0
    while index < len(template):
        char = template[index]
        if char == "\\":
            if index + 1 >= len(template):
                raise InvalidPattern("character to be escaped is missing")
            parts.append((False, template[index + 1]))
            index += 2
        elif char != "$":
            parts.append((False, char))
            index += 1
        elif template.startswith("${", index):
            end = template.find("}", index)
            name = template[index + 2 : end] if end > 0 else ""
            if name not in names:
                raise InvalidPattern(f"no group named {name!r}")
            parts.append((True, name))
            index = end + 1
        else:
            index += 1
            if index >= len(template) or not template[index].isdigit():
                raise InvalidPattern("illegal group reference")
            number = int(template[index])
            index += 1
            # Java keeps taking digits while the number still names a group.
            while index < len(template) and template[index].isdigit():
                longer = number * 10 + int(template[index])
                if longer > group_count:
                    break
                number, index = longer, index + 1
            if number > group_count:
                raise InvalidPattern(f"no group {number}")
            parts.append((True, number))

    def expand(match: re.Match[str]) -> str:
        return "".join((match.group(part) or "") if is_group else part for is_group, part in parts)  # type: ignore[misc]

    return expand


def _pattern_of(value: Any) -> re.Pattern[str] | None:
    text = to_string(value)
    if text is UNDEFINED:
        return None
    try:
        return compile_java(text)
    except InvalidPattern:
        return None


def _matches(ctx: Context, value: Any, pattern: Any) -> Any:
    text, compiled = to_string(value), _pattern_of(pattern)
    if text is UNDEFINED or compiled is None:
        return UNDEFINED
    return compiled.search(text) is not None


def _substr(ctx: Context, value: Any, pattern: Any) -> Any:
    """The first match; no match gives Undefined (the reference does not say)."""
    text, compiled = to_string(value), _pattern_of(pattern)
    if text is UNDEFINED or compiled is None:
        return UNDEFINED
    found = compiled.search(text)
    return UNDEFINED if found is None else found.group()


def _replace(ctx: Context, value: Any, pattern: Any, replacement: Any) -> Any:
    text, compiled, template = to_string(value), _pattern_of(pattern), to_string(replacement)
    if text is UNDEFINED or compiled is None or template is UNDEFINED:
        return UNDEFINED
    try:
        expand = _replacement(template, compiled.groups, frozenset(compiled.groupindex))
    except InvalidPattern:
        return UNDEFINED
    return compiled.sub(expand, text)


def _check_pattern(args: tuple[Any, ...]) -> None:
    pattern = literal_string(args[1])
    if pattern is None:
        return
    try:
        compile_java(pattern)
    except InvalidPattern as exc:
        raise UnsupportedSql(f"regular expression {pattern!r} cannot be run locally: {exc}") from exc


FUNCTIONS = [
    Function("regexp_matches", _matches, 2, 2, check=_check_pattern),
    Function("regexp_replace", _replace, 3, 3, check=_check_pattern),
    Function("regexp_substr", _substr, 2, 2, check=_check_pattern),
]
