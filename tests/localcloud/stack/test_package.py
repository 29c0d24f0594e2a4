"""`python -m localcloud.stack.package` (make package): deployable zips whose handlers import in a fresh virtualenv.

The zips are built for the Lambda platform with the runtime's Python (3.12). When no python3.12 is on this
machine, they are built for this interpreter's version instead, which still proves the layout and the
platform wheels but not the exact runtime version; the test says so in its id.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from localcloud.config import REPO_ROOT
from localcloud.stack.model import load_stack
from localcloud.stack.package import PackageError, build_all, handler_module_path

STACK_FILE = REPO_ROOT / "infrastructure" / "stack.yaml"
STACK = load_stack(STACK_FILE)
PACKAGED = [key for key, spec in STACK.functions.items() if all(package.is_dir() for package in spec.packages)]


def runtime_python(version: str) -> str | None:
    """An interpreter of `version` that actually runs (pyenv shims exist without working)."""
    candidates = [
        shutil.which(f"python{version}"),
        *glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}")),
    ]
    for candidate in filter(None, candidates):
        if subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


LAMBDA_VERSION = "3.12"
INTERPRETER = runtime_python(LAMBDA_VERSION)
BUILD_VERSION = LAMBDA_VERSION if INTERPRETER else f"{sys.version_info.major}.{sys.version_info.minor}"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    if not PACKAGED:
        pytest.skip("no function of stack.yaml has its packages yet")
    out = tmp_path_factory.mktemp("lambda")
    result = subprocess.run(
        [sys.executable, "-m", "localcloud.stack.package", "--out", str(out), "--python-version", BUILD_VERSION]
        + [arg for key in PACKAGED for arg in ("--function", key)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {key: out / f"{key}.zip" for key in PACKAGED}


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new virtualenv with nothing installed: only what the zip carries can be imported."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([INTERPRETER or sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


def run_isolated(python: Path, code: str, cwd: Path, extra_env: dict[str, str] | None = None):
    env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", **(extra_env or {})}
    return subprocess.run(
        [str(python), "-I", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("key", PACKAGED)
def test_zip_root_holds_the_function_packages_and_its_dependencies(built, key):
    spec = STACK.functions[key]
    names = set(zipfile.ZipFile(built[key]).namelist())
    for package in spec.packages:
        sources = {
            p.relative_to(spec.code_root).as_posix() for p in package.rglob("*.py") if "__pycache__" not in p.parts
        }
        assert sources and sources <= names, f"{package.name} is not at the zip root"
    assert handler_module_path(spec) in names
    assert {"aws_lambda_powertools/__init__.py", "psycopg/__init__.py", "boto3/__init__.py"} <= names
    assert any(name.startswith("psycopg_binary/") for name in names), "psycopg's compiled implementation is missing"
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc") or name.startswith("bin/")]


@pytest.mark.parametrize("key", PACKAGED, ids=lambda key: f"{key}-python{BUILD_VERSION}")
def test_handler_imports_cleanly_in_a_fresh_virtualenv(built, fresh_venv, tmp_path, key):
    spec = STACK.functions[key]
    root = tmp_path / "task"  # Lambda unpacks the zip into /var/task, which is on sys.path
    zipfile.ZipFile(built[key]).extractall(root)
    module, _, function = spec.handler.rpartition(".")
    code = (
        f"import sys; sys.path.insert(0, {str(root)!r})\n"
        f"import importlib; handler = getattr(importlib.import_module({module!r}), {function!r})\n"
        "assert callable(handler)\n"
        "import psycopg; assert psycopg.pq.__impl__ in ('binary', 'c'), psycopg.pq.__impl__\n"
        f"assert all(m.__file__.startswith({str(root)!r}) for m in [importlib.import_module({module!r}), psycopg])\n"
    )
    contract = {
        name: "unused" for name in ("DB_SECRET_ARN", "TELEMETRY_STREAM_NAME", "INGEST_DLQ_URL", "ARCHIVE_BUCKET")
    }
    result = run_isolated(fresh_venv, code, tmp_path, {**contract, **spec.environment})
    assert result.returncode == 0, result.stderr[-3000:]


def test_the_fresh_virtualenv_has_none_of_the_dependencies(fresh_venv, tmp_path):
    result = run_isolated(fresh_venv, "import aws_lambda_powertools", tmp_path)
    assert result.returncode != 0 and "No module named 'aws_lambda_powertools'" in result.stderr


def test_rebuilding_gives_byte_identical_zips(built, tmp_path):
    """Reproducible zips: Terraform's source_code_hash changes only when the content does."""
    out = next(iter(built.values())).parent
    before = {key: hashlib.sha256(path.read_bytes()).hexdigest() for key, path in built.items()}
    rebuilt = build_all(STACK_FILE, out, only=tuple(built), python_version=BUILD_VERSION)
    assert {item.function: hashlib.sha256(item.path.read_bytes()).hexdigest() for item in rebuilt} == before


def test_a_handler_outside_the_packages_is_refused(built, tmp_path):
    code_root = tmp_path / "functions"
    (code_root / "probe").mkdir(parents=True)
    (code_root / "probe" / "__init__.py").write_text("")
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(
        STACK_FILE.read_text().split("\nfunctions:", 1)[0]
        + "\nfunctions:\n  probe:\n    packages: [functions/probe]\n    handler: probe.missing.lambda_handler\n"
        "    runtime: python3.12\n    memory_mb: 128\n    timeout_s: 3\n"
    )
    (tmp_path / "requirements.lock").write_text((REPO_ROOT / "requirements.lock").read_text())
    out = next(iter(built.values())).parent
    with pytest.raises(PackageError, match=r"probe/missing\.py"):
        build_all(stack_file, out, root=tmp_path, python_version=BUILD_VERSION)
