"""Installing a patch once: a patched attribute is marked and never wrapped twice."""

from __future__ import annotations

from collections.abc import Callable

_MARK = "_iotkpi_patch"


def install(owner: type, name: str, replacement: Callable) -> None:
    if getattr(owner.__dict__.get(name), _MARK, False):
        return
    setattr(replacement, _MARK, True)
    setattr(owner, name, replacement)
