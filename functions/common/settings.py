"""Settings from environment variables: the one way the four functions read their configuration.

Each function has a frozen `<Function>Settings` dataclass in `<function>/settings.py` whose
`from_env(environ=os.environ)` reads its variables with these helpers; the handler calls it at the start of
every invocation (microseconds), so the environment in force is the one used. Numbers left unset or blank
take their default; a value that does not parse, or lies outside its range, raises ConfigError naming the
variable: a misconfigured function fails visibly instead of running on a guess.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

Number = TypeVar("Number", int, float)


class ConfigError(ValueError):
    """An environment variable is missing or not a valid value; the message names it."""


def env_str(environ: Mapping[str, str], name: str, default: str = "") -> str:
    """The variable as it is (an empty value stays empty), or `default` when it is unset."""
    return environ.get(name, default)


def env_required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is not set")
    return value


def env_float(
    environ: Mapping[str, str], name: str, default: float, *, minimum: float | None = None, maximum: float | None = None
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    return _in_range(name, value, minimum, maximum)


def env_int(
    environ: Mapping[str, str], name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    return _in_range(name, value, minimum, maximum)


def _in_range(name: str, value: Number, minimum: Number | None, maximum: Number | None) -> Number:
    if not math.isfinite(value):  # float() parses "nan" and "inf"
        raise ConfigError(f"{name}={value} is not a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below its minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value} is above its maximum {maximum}")
    return value
