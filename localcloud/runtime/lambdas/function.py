"""A deployed function's configuration, read from the AWS endpoint, and where its code lives in the repo.

The local cloud does not unpack deployment zips: functions are deployed with LocalStack's hot-reload convention
(`S3Bucket="hot-reload"`, `S3Key=<absolute folder that plays the zip root>`; both local deployers do), which the
endpoint reports back as `Code.Location = file://<folder>`, and the worker imports the handler from that folder
(once `code_roots` has checked that the folder is a trusted one).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from localcloud.servers.moto_patches.awslambda_deploy import HOT_RELOAD_BUCKET

CODE_ROOT_SETTING = f"Code.S3Key (S3Bucket {HOT_RELOAD_BUCKET})"


class FunctionNotFoundError(LookupError):
    """The endpoint has no function of that name."""


class FunctionConfigError(ValueError):
    """The function exists but cannot run locally (no hot-reload code folder, not a Python runtime, no such folder)."""

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


def code_folder(function_name: str, code: dict[str, Any]) -> Path:
    """The folder of a hot-reload function, from GetFunction's `Code`."""
    location = urllib.parse.urlsplit(code.get("Location", ""))
    if location.scheme != "file":
        raise FunctionConfigError(
            f"{function_name}: its code is not a folder the local cloud can run: deploy it with LocalStack's hot-reload "
            f'convention, Code S3Bucket "{HOT_RELOAD_BUCKET}" and S3Key the absolute folder that plays the zip root '
            "(`localcloud deploy` and Terraform with infrastructure/terraform/local/local.tfvars do)"
        )
    return Path(urllib.request.url2pathname(location.path))


def fetch_function_config(lambda_client: Any, function_name: str) -> FunctionConfig:
    """GetFunction (configuration, code location and reserved concurrency in one call)."""
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
    code_root = code_folder(function_name, response.get("Code", {}))
    return FunctionConfig(
        name=config["FunctionName"],
        arn=config["FunctionArn"],
        handler=config["Handler"],
        runtime=runtime,
        timeout_s=int(config.get("Timeout", 3)),
        memory_mb=int(config.get("MemorySize", 128)),
        environment=dict(config.get("Environment", {}).get("Variables", {})),
        code_root=code_root.resolve(),
        code_root_setting=CODE_ROOT_SETTING,
        code_sha256=config.get("CodeSha256", ""),
        last_modified=config.get("LastModified", ""),
        reserved_concurrency=response.get("Concurrency", {}).get("ReservedConcurrentExecutions"),
    )
