"""Which folders a function's code may come from: the checkout and LOCALCLOUD_CODE_ROOTS (folders in tmp_path
play them here), whatever the function's tag and environment say."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

from localcloud.config import REPO_ROOT
from localcloud.runtime.lambdas.code_roots import CodeLocationError, allowed_roots, check_function
from localcloud.runtime.lambdas.function import CODE_ROOT_SETTING, FunctionConfig, FunctionConfigError


def config(code_root: Path, **environment: str) -> FunctionConfig:
    return FunctionConfig(
        name="fn", arn="arn:aws:lambda:us-east-1:123456789012:function:fn", handler="app.handler", runtime="python3.12",
        timeout_s=3, memory_mb=128, environment=environment, code_root=code_root.resolve(),
        code_root_setting=CODE_ROOT_SETTING, code_sha256="", last_modified="", reserved_concurrency=None,
    )  # fmt: skip


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    """A trusted root with a function folder and a shared library folder, and a folder outside it."""
    layout = {"root": "trusted", "code": "trusted/fn", "libs": "trusted/libs", "outside": "elsewhere"}
    named = {name: tmp_path / path for name, path in layout.items()}
    for folder in named.values():
        folder.mkdir(parents=True, exist_ok=True)
    return named


def test_code_inside_a_trusted_root_runs(folders):
    check_function(config(folders["code"]), (folders["root"],))


def test_code_outside_is_refused_naming_the_setting_and_the_remedy(folders):
    with pytest.raises(CodeLocationError) as refused:
        check_function(config(folders["outside"]), (folders["root"],))

    message = str(refused.value)
    assert str(folders["outside"]) in message
    assert CODE_ROOT_SETTING in message
    assert "LOCALCLOUD_CODE_ROOTS" in message
    assert refused.value.error_type == "CodeVerificationFailedException"


def test_a_symlink_inside_a_root_that_leads_outside_is_refused(folders):
    link = folders["root"] / "link"
    link.symlink_to(folders["outside"])

    with pytest.raises(CodeLocationError):
        check_function(config(link), (folders["root"],))


def test_the_checkout_itself_and_the_python_library_are_no_code_folders():
    roots = allowed_roots(REPO_ROOT, {})
    for folder in (REPO_ROOT, REPO_ROOT / "localcloud" / "runtime", Path(sysconfig.get_path("purelib"))):
        if folder.resolve().is_relative_to(REPO_ROOT):
            with pytest.raises(CodeLocationError, match="is or holds"):
                check_function(config(folder), roots)
    check_function(config(REPO_ROOT / "functions"), roots)


def test_a_missing_folder_is_a_configuration_error(folders):
    with pytest.raises(FunctionConfigError, match="is not a folder") as raised:
        check_function(config(folders["root"] / "missing"), (folders["root"],))
    assert not isinstance(raised.value, CodeLocationError)


def test_extra_roots_come_from_the_setting_relative_to_the_checkout(tmp_path):
    roots = allowed_roots(tmp_path, {"LOCALCLOUD_CODE_ROOTS": f"/srv/lambdas{os.pathsep}{os.pathsep}sub/dir"})
    assert roots == (tmp_path.resolve(), Path("/srv/lambdas"), (tmp_path / "sub" / "dir").resolve())
    assert allowed_roots(tmp_path, {}) == (tmp_path.resolve(),)


@pytest.mark.parametrize("name", ["PYTHONPATH", "LD_LIBRARY_PATH"])
def test_search_paths_may_name_trusted_folders_only(folders, name):
    roots = (folders["root"],)
    check_function(config(folders["code"], **{name: f"{folders['libs']}:vendor:"}), roots)  # relative: in the code

    for outside in (str(folders["outside"]), "../../elsewhere", f"{folders['libs']}:{folders['outside']}"):
        with pytest.raises(CodeLocationError, match=name):
            check_function(config(folders["code"], **{name: outside}), roots)


def test_the_loader_path_is_split_where_the_loader_splits_it(folders):
    with pytest.raises(CodeLocationError, match="LD_LIBRARY_PATH"):
        check_function(config(folders["code"], LD_LIBRARY_PATH=f"{folders['libs']};{folders['outside']}"),
                       (folders["root"],))  # fmt: skip


@pytest.mark.parametrize(
    "name",
    ["LD_PRELOAD", "LD_AUDIT", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "PYTHONINSPECT", "PYTHONPYCACHEPREFIX",
     "PYTHONPLATLIBDIR", "GCONV_PATH"],
)  # fmt: skip
def test_variables_that_load_or_relocate_code_are_refused_wherever_they_point(folders, name):
    with pytest.raises(CodeLocationError, match=f"environment variable {name} is refused"):
        check_function(config(folders["code"], **{name: str(folders["libs"])}), (folders["root"],))


def test_ordinary_variables_pass(folders):
    check_function(
        config(folders["code"], PATH="/usr/bin", PYTHONUNBUFFERED="1", LOG_LEVEL="DEBUG", LANG="C.UTF-8"),
        (folders["root"],),
    )
