"""The invoker against a real moto server runs code only from trusted folders, whatever a function's settings
say: each attack below is shown to work when its folder is trusted, and to be refused otherwise."""

from __future__ import annotations

import contextlib
import re
import uuid
from pathlib import Path

import pytest

from localcloud.config import REPO_ROOT
from localcloud.runtime.lambdas.code_roots import CodeLocationError
from localcloud.runtime.lambdas.function import CODE_ROOT_SETTING
from localcloud.runtime.lambdas.invoker import LambdaInvoker
from localcloud.servers.moto_patches.awslambda_deploy import hot_reload_code
from tests.fixtures.aws import REGION

PROBE_ROOT = "tests/probe_lambdas"


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A folder of someone else's code: a handler and a sitecustomize that leave a marker when they run."""
    folder = tmp_path / "planted"
    folder.mkdir()
    marker = tmp_path / "ran"
    (folder / "evil.py").write_text(f"def handler(event, context):\n    open({str(marker)!r}, 'w').close()\n")
    (folder / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    return folder


def marker_of(planted: Path) -> Path:
    return planted.parent / "ran"


@pytest.fixture
def create_function(aws_endpoint):
    lambda_client = aws_endpoint.client("lambda")
    iam = aws_endpoint.client("iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="code-location-tests", AssumeRolePolicyDocument="{}")

    def create(code_root: str, handler: str, environment: dict[str, str] | None = None) -> str:
        name = f"located-{uuid.uuid4().hex[:12]}"
        lambda_client.create_function(
            FunctionName=name, Runtime="python3.12", Role="arn:aws:iam::123456789012:role/code-location-tests",
            Handler=handler, Code=hot_reload_code(REPO_ROOT / code_root), Environment={"Variables": environment or {}},
        )  # fmt: skip
        return name

    return create


@pytest.fixture
def invoker_trusting(aws_endpoint, tmp_path):
    """An invoker whose trusted folders are the checkout plus `extra`."""
    invokers = []

    def make(*extra: Path) -> LambdaInvoker:
        invoker = LambdaInvoker(
            aws_endpoint.url, REGION, code_roots=(REPO_ROOT, *extra), config_refresh_s=0, log_dir=tmp_path / "logs"
        )
        invokers.append(invoker)
        return invoker

    yield make
    for invoker in invokers:
        invoker.close()


def test_a_code_folder_outside_the_trusted_ones_is_refused(create_function, invoker_trusting, planted):
    name = create_function(str(planted), "evil.handler")

    with pytest.raises(CodeLocationError, match=re.escape(CODE_ROOT_SETTING)):
        invoker_trusting().invoke(name, {})
    assert not marker_of(planted).exists()

    assert invoker_trusting(planted.parent).invoke(name, {}).ok  # the same function, its folder trusted
    assert marker_of(planted).exists()


def test_a_search_path_into_an_untrusted_folder_is_refused(create_function, invoker_trusting, planted):
    name = create_function(PROBE_ROOT, "probe.handler.lambda_handler", {"PYTHONPATH": str(planted)})

    with pytest.raises(CodeLocationError, match="PYTHONPATH"):
        invoker_trusting().invoke(name, {})
    assert not marker_of(planted).exists()

    assert invoker_trusting(planted).invoke(name, {}).ok  # trusted: its sitecustomize runs at start-up
    assert marker_of(planted).exists()


def test_a_preloaded_library_is_refused(create_function, invoker_trusting, planted):
    name = create_function(PROBE_ROOT, "probe.handler.lambda_handler", {"LD_PRELOAD": str(planted / "x.so")})

    with pytest.raises(CodeLocationError, match="LD_PRELOAD"):
        invoker_trusting(planted).invoke(name, {})


def test_a_handler_outside_the_code_folder_is_not_imported(create_function, invoker_trusting, tmp_path):
    # cProfile.run(event, context) would execute the event as Python code.
    marker = tmp_path / "profiled"
    name = create_function(PROBE_ROOT, "cProfile.run")

    result = invoker_trusting().invoke(name, f"open({str(marker)!r}, 'w').close()")

    assert result.error["errorType"] == "Runtime.ImportModuleError"
    assert "runs handlers only from the function's code folder" in result.error["errorMessage"]
    assert not marker.exists()
