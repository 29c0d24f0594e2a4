"""A deployed function's configuration, read from the AWS endpoint, and where its code lives in the repo.

The local cloud does not unpack deployment zips: the function's tag `localcloud:code-root` names the folder
that plays the zip's root (relative to the repo root, or absolute), and the worker imports the handler from it
(once `code_roots` has checked that the folder is a trusted one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

CODE_ROOT_TAG = "localcloud:code-root"


class FunctionNotFoundError(LookupError):
    """The endpoint has no function of that name."""


class FunctionConfigError(ValueError):
    """The function exists but cannot run locally (no code-root tag, not a Python runtime, no such folder)."""

    error_type = "InvalidParameterValueException"  # how the control API names it, in Lambda's error shape


class ThrottledError(RuntimeError):
    """Reserved concurrency 0: Lambda throttles every invocation (TooManyRequestsException)."""


@dataclass(frozen=True)
class FunctionConfig:
    name: str
    arn: str
    handler: str
    runtime: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, str] = field(hash=False)
    code_root: Path
    code_root_setting: str  # which of the function's settings named code_root, for error messages
    code_sha256: str
    last_modified: str
    reserved_concurrency: int | None

    @property
    def environment_key(self) -> tuple:
        """Everything an execution environment is built from: when it changes, warm environments retire.

        moto keeps LastModified and RevisionId on UpdateFunctionConfiguration, so the settings themselves
        are compared (reserved concurrency is not among them: it only changes how many environments run).
        """
        return (
            self.arn,
            self.handler,
            self.runtime,
            self.timeout_s,
            self.memory_mb,
            tuple(sorted(self.environment.items())),
            self.code_root,
            self.code_sha256,
            self.last_modified,
        )


def fetch_function_config(lambda_client: Any, function_name: str, repo_root: Path) -> FunctionConfig:
    """GetFunction (configuration, tags and reserved concurrency in one call)."""
    try:
        response = lambda_client.get_function(FunctionName=function_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            raise FunctionNotFoundError(f"no Lambda function named {function_name!r} on the endpoint") from exc
        raise
    config = response["Configuration"]
    runtime = config.get("Runtime", "")
    if not runtime.startswith("python"):
        raise FunctionConfigError(f"{function_name}: runtime {runtime!r} cannot run locally (Python only)")
    code_root_tag = response.get("Tags", {}).get(CODE_ROOT_TAG)
    if not code_root_tag:
        raise FunctionConfigError(
            f"{function_name}: no {CODE_ROOT_TAG} tag naming the folder that plays the zip root "
            "(`localcloud deploy` sets it)"
        )
    code_root = Path(code_root_tag)
    return FunctionConfig(
        name=config["FunctionName"],
        arn=config["FunctionArn"],
        handler=config["Handler"],
        runtime=runtime,
        timeout_s=int(config.get("Timeout", 3)),
        memory_mb=int(config.get("MemorySize", 128)),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
        code_root=(code_root if code_root.is_absolute() else repo_root / code_root).resolve(),
        code_root_setting=f"tag {CODE_ROOT_TAG}",
        code_sha256=config.get("CodeSha256", ""),
        last_modified=config.get("LastModified", ""),
        reserved_concurrency=response.get("Concurrency", {}).get("ReservedConcurrentExecutions"),
    )
