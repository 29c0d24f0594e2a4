"""Build the Lambda deployment zips: `python -m localcloud.stack.package [--out build/lambda]` (`make package`).

One zip per function of infrastructure/stack.yaml, named `<function>.zip`, which Terraform uploads. The zip
root holds the function's packages (e.g. `ingest/`, `common/`, exactly as under functions/) plus the runtime
dependencies installed for the Lambda platform (manylinux x86_64, CPython of the function's runtime), so
the handler `ingest.handler.lambda_handler` imports the same way as in the tests.

boto3 is packaged too, pinned to the version the tests run against, rather than relying on the one the
Lambda runtime ships (older and changing without notice): the functions run the code that was tested.
Zips are reproducible (sorted entries, fixed timestamps and modes), so Terraform's source_code_hash changes
only when the content does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from localcloud.config import REPO_ROOT
from localcloud.stack.model import FunctionSpec, load_stack

# What the functions import at run time, by distribution name. Versions come from requirements.lock (the
# same pins the tests use); the lock also constrains every transitive dependency.
RUNTIME_REQUIREMENTS = ("aws-lambda-powertools[tracer,parser]", "psycopg[binary]", "boto3", "msgspec", "orjson")
# Lambda's python3.12 runs on Amazon Linux 2023 (glibc 2.34): any of these wheel tags loads there.
LAMBDA_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageError(RuntimeError):
    """A function cannot be packaged (missing package folder or handler module)."""


@dataclass(frozen=True)
class BuiltZip:
    function: str
    path: Path
    size: int
    code_sha256: str  # base64 of SHA-256, as Lambda reports CodeSha256 and Terraform filebase64sha256


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned_requirements(lock_file: Path, requirements: tuple[str, ...] = RUNTIME_REQUIREMENTS) -> list[str]:
    """`name[extras]==version` for each requirement, the version taken from the lock file."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==", 1)
            pins[_normalise(name.strip())] = version.strip()
    pinned = []
    for requirement in requirements:
        name = requirement.split("[", 1)[0]
        if _normalise(name) not in pins:
            raise PackageError(f"{name} is not pinned in {lock_file}")
        pinned.append(f"{requirement}=={pins[_normalise(name)]}")
    return pinned


def python_version_of(runtime: str) -> str:
    """`python3.12` → `3.12`."""
    match = re.fullmatch(r"python(\d+\.\d+)", runtime)
    if not match:
        raise PackageError(f"runtime {runtime!r} is not a Python runtime")
    return match.group(1)


def install_dependencies(target: Path, python_version: str, lock_file: Path) -> Path:
    """pip-install the runtime requirements for Lambda into `target/<key>`; reused while inputs are unchanged."""
    requirements = pinned_requirements(lock_file)
    key_source = "\n".join([python_version, *LAMBDA_PLATFORMS, *requirements, lock_file.read_text()])
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    site = target / f"deps-py{python_version}-{key}"
    if (site / ".complete").exists():
        return site
    shutil.rmtree(site, ignore_errors=True)
    platforms = [arg for platform in LAMBDA_PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
        "--target", str(site), "--implementation", "cp", "--python-version", python_version,
        "--only-binary=:all:", *platforms, "--constraint", str(lock_file), *requirements,
    ]  # fmt: skip
    subprocess.run(command, check=True)
    (site / ".complete").write_text("\n".join(requirements) + "\n")
    return site


def _files(root: Path, start: Path) -> list[tuple[str, Path]]:
    """(archive name, path) for every file under `start`, relative to `root`, without bytecode caches and
    without pip's console scripts (top-level `bin/`), which Lambda never runs."""
    entries = []
    for path in start.rglob("*"):
        relative = path.relative_to(root)
        if not path.is_file() or "__pycache__" in relative.parts or path.suffix == ".pyc" or relative.parts[0] == "bin":
            continue
        entries.append((relative.as_posix(), path))
    return entries


def _zip(target: BinaryIO, entries: list[tuple[str, Path]]) -> None:
    """A reproducible zip of `entries`: sorted, fixed timestamps and modes."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


def _write_zip(destination: Path, entries: list[tuple[str, Path]]) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_suffix(".zip.partial")
    with partial.open("wb") as target:
        _zip(target, entries)
    partial.replace(destination)


def _code_entries(spec: FunctionSpec) -> list[tuple[str, Path]]:
    """The function's own code: every file of its packages, named as under its code root (the zip root)."""
    return [entry for package in spec.packages for entry in _files(spec.code_root, package)]


def handler_module_path(spec: FunctionSpec) -> str:
    """`ingest.handler.lambda_handler` → `ingest/handler.py`, as it must appear in the zip."""
    module, _, function = spec.handler.rpartition(".")
    if not module or not function:
        raise PackageError(f"functions.{spec.key}.handler {spec.handler!r} is not module.function")
    return module.replace(".", "/") + ".py"


def build_function_zip(spec: FunctionSpec, dependencies: Path, out_dir: Path) -> BuiltZip:
    missing = [str(package) for package in spec.packages if not (package / "__init__.py").is_file()]
    if missing:
        raise PackageError(f"functions.{spec.key}: package folders missing: {', '.join(missing)}")
    entries = [(name, path) for name, path in _files(dependencies, dependencies) if name != ".complete"]
    entries += _code_entries(spec)
    names = {name for name, _ in entries}
    if handler_module_path(spec) not in names:
        raise PackageError(f"functions.{spec.key}: {handler_module_path(spec)} is in none of its packages")
    destination = out_dir / f"{spec.key}.zip"
    _write_zip(destination, entries)
    digest = base64.b64encode(hashlib.sha256(destination.read_bytes()).digest()).decode()
    return BuiltZip(spec.key, destination, destination.stat().st_size, digest)


def build_all(
    stack_file: Path,
    out_dir: Path,
    *,
    root: Path = REPO_ROOT,
    only: tuple[str, ...] = (),
    python_version: str | None = None,
) -> list[BuiltZip]:
    """Build `<function>.zip` in `out_dir` for every function of the stack (or those in `only`).

    `python_version` overrides the runtime's Python for the dependency wheels (to test the zips with an
    interpreter other than the runtime's); AWS deployments leave it None.
    """
    stack = load_stack(stack_file, root)
    unknown = set(only) - set(stack.functions)
    if unknown:
        raise PackageError(f"no such function in {stack_file}: {', '.join(sorted(unknown))}")
    lock_file = root / "requirements.lock"
    built = []
    for key, spec in stack.functions.items():
        if only and key not in only:
            continue
        version = python_version or python_version_of(spec.runtime)
        dependencies = install_dependencies(out_dir / ".deps", version, lock_file)
        built.append(build_function_zip(spec, dependencies, out_dir))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.stack.package", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "lambda", help="output folder")
    parser.add_argument("--stack", type=Path, default=REPO_ROOT / "infrastructure" / "stack.yaml")
    parser.add_argument("--function", action="append", default=[], help="only this function (repeatable)")
    parser.add_argument("--python-version", help="wheels for this Python instead of the runtime's (testing)")
    args = parser.parse_args(argv)
    try:
        built = build_all(args.stack, args.out, only=tuple(args.function), python_version=args.python_version)
    except (PackageError, subprocess.CalledProcessError) as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for item in built:
        print(f"{item.path}  {item.size / 1_048_576:6.1f} MiB  CodeSha256={item.code_sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
