"""The folders the invoker runs code from: the checkout and LOCALCLOUD_CODE_ROOTS, whatever a function says.

The AWS endpoint creates any function for anyone who can reach it (no authentication, as with moto and
LocalStack), and the runtime runs handlers as its own user, root in CI. So a function's code folder (its
hot-reload code location, `S3Key`) must lie in a trusted folder, and its environment may neither add interpreter or loader
search paths outside those folders nor preload anything. Two kinds of folder are never a code folder, even in
the checkout: the local cloud's own package and the Python library (a virtualenv's site-packages), or any of
their functions could be named as a handler. Refusals are CodeLocationError, which fails the invocation.
"""

from __future__ import annotations

import os
import re
import sysconfig
from collections.abc import Mapping
from pathlib import Path

from localcloud.config import REPO_ROOT
from localcloud.runtime.lambdas.function import FunctionConfig, FunctionConfigError

CODE_ROOTS_ENV = "LOCALCLOUD_CODE_ROOTS"
# Search paths Lambda lets a function extend (its own folders only, there as here).
SEARCH_PATH_VARIABLES = ("PYTHONPATH", "LD_LIBRARY_PATH")
# Variables that make the interpreter run other code or look for its own elsewhere. Every LD_* variable other
# than LD_LIBRARY_PATH (LD_PRELOAD, LD_AUDIT, ...) is refused as well: the dynamic loader acts on them.
FORBIDDEN_VARIABLES = frozenset(
    {
        "PYTHONHOME",
        "PYTHONSTARTUP",
        "PYTHONUSERBASE",
        "PYTHONINSPECT",
        "PYTHONPYCACHEPREFIX",
        "PYTHONPLATLIBDIR",
        "PYTHONEXECUTABLE",
        "GCONV_PATH",
    }
)
_NOT_FUNCTION_CODE = {
    Path(__file__).resolve().parents[2]: "the local cloud's own code",
    **{Path(sysconfig.get_path(key)).resolve(): "the Python library" for key in ("stdlib", "purelib", "platlib")},
}


class CodeLocationError(FunctionConfigError):
    """The function's code (or what its environment would load) lies outside the trusted folders."""

    error_type = "CodeVerificationFailedException"  # Lambda's refusal of code from an untrusted source


def allowed_roots(repo_root: Path = REPO_ROOT, environ: Mapping[str, str] = os.environ) -> tuple[Path, ...]:
    """The checkout and the LOCALCLOUD_CODE_ROOTS folders (os.pathsep-separated, relative to the checkout),
    symlinks resolved."""
    extra = [entry for entry in environ.get(CODE_ROOTS_ENV, "").split(os.pathsep) if entry.strip()]
    return tuple((repo_root / entry).resolve() for entry in [".", *extra])


def is_trusted(path: Path, roots: tuple[Path, ...]) -> bool:
    """Is `path`, symlinks resolved, inside one of `roots`?"""
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def check_function(config: FunctionConfig, roots: tuple[Path, ...]) -> None:
    """May the invoker run this function? CodeLocationError names the setting that points elsewhere."""
    code_root = config.code_root  # resolved: the worker runs in the very folder checked here
    if not is_trusted(code_root, roots):
        raise CodeLocationError(
            f"{config.name}: its code folder {code_root} ({config.code_root_setting}) is outside the folders the "
            f"local cloud runs code from ({', '.join(map(str, roots))}); add it to {CODE_ROOTS_ENV} if you trust it"
        )
    for tree, what in _NOT_FUNCTION_CODE.items():
        if code_root.is_relative_to(tree) or tree.is_relative_to(code_root):
            raise CodeLocationError(
                f"{config.name}: its code folder {code_root} ({config.code_root_setting}) is or holds {what} "
                f"({tree}); name the folder that plays the zip root (e.g. functions/)"
            )
    if not code_root.is_dir():
        raise FunctionConfigError(
            f"{config.name}: code folder {code_root} ({config.code_root_setting}) is not a folder"
        )
    _check_environment(config, code_root, roots)


def _check_environment(config: FunctionConfig, code_root: Path, roots: tuple[Path, ...]) -> None:
    for name, value in sorted(config.environment.items()):
        if name in FORBIDDEN_VARIABLES or (name.startswith("LD_") and name not in SEARCH_PATH_VARIABLES):
            raise CodeLocationError(
                f"{config.name}: environment variable {name} is refused by the local cloud: it would make the "
                "interpreter or the dynamic loader run code from outside the function's folders"
            )
        if name in SEARCH_PATH_VARIABLES:
            entries = re.split("[:;]", value) if name.startswith("LD_") else value.split(os.pathsep)  # ld.so: both
            for entry in entries:
                # Relative entries are relative to the worker's working directory, the code folder.
                if entry and not is_trusted(code_root / entry, roots):
                    raise CodeLocationError(
                        f"{config.name}: environment variable {name} names {entry}, outside the folders the local "
                        f"cloud runs code from ({', '.join(map(str, roots))}); add it to {CODE_ROOTS_ENV} if you "
                        "trust it"
                    )
