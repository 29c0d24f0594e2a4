"""Installing a patch once: a patched attribute records which patches it chains, and none is installed twice.

Several patches may wrap one method (each calls the one before); installing the same patch again is a no-op.
"""

from __future__ import annotations

from collections.abc import Callable

_MARK = "_iotkpi_patch"


def install(owner: type, name: str, replacement: Callable) -> None:
    applied = getattr(owner.__dict__.get(name), _MARK, frozenset())
    patch = f"{replacement.__module__}.{replacement.__qualname__}"
    if patch in applied:
        return
    setattr(replacement, _MARK, applied | {patch})
    setattr(owner, name, replacement)
