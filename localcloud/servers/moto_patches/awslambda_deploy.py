"""Lambda patches for deploying: LocalStack's hot-reload code location, DeadLetterConfig kept, mappings listed by
function name or ARN and reported with Lambda's defaults.

Each patch targets moto 5.2.5 (pinned) and says why it exists.

Hot reload is LocalStack's convention (the one `tflocal` users know): a function whose code is
`S3Bucket="hot-reload", S3Key=<absolute folder>` runs that folder as its zip root, no zip uploaded. Both of the
local cloud's deployers (boto3 and Terraform) deploy that way, and GetFunction reports the folder back as
`Code.Location = file://<folder>` (`RepositoryType` "S3"), which is where the runtime's invoker finds the code.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path, PurePosixPath
from typing import Any

from localcloud.servers.moto_patches.install import install

HOT_RELOAD_BUCKET = "hot-reload"


def hot_reload_code(folder: Path) -> dict[str, str]:
    """CreateFunction's `Code` (UpdateFunctionCode takes the same keys) that makes `folder` the zip root."""
    return {"S3Bucket": HOT_RELOAD_BUCKET, "S3Key": str(folder.absolute())}


def apply() -> None:
    _hot_reload_code()
    _keep_dead_letter_config()
    _list_mappings_by_name_or_arn()
    _stream_mapping_defaults()


def _is_hot_reload(code: dict[str, Any]) -> bool:
    return code.get("S3Bucket") == HOT_RELOAD_BUCKET and "ZipFile" not in code


def _hot_reload_code() -> None:
    """moto looks the code up in its own S3 and refuses a bucket that does not exist (`hot-reload` never does).
    For the hot-reload bucket the key must be an absolute folder path; the code hash is the path's, so a function
    moved to another folder counts as new code."""
    from moto.awslambda.exceptions import InvalidParameterValueException
    from moto.awslambda.models import LambdaFunction

    set_function_code = LambdaFunction._set_function_code
    get_code = LambdaFunction.get_code

    def set_hot_reload_code(self: LambdaFunction, updated_spec: dict[str, Any]) -> None:
        from_update = updated_spec is not self.code
        if updated_spec.get("S3Bucket") != HOT_RELOAD_BUCKET or updated_spec.get("DryRun"):
            if from_update and _is_hot_reload(self.code):
                self.code.pop("S3Bucket")  # moto keeps the old keys it does not overwrite
            set_function_code(self, updated_spec)
            return
        folder = str(updated_spec.get("S3Key") or "")
        if not PurePosixPath(folder).is_absolute():
            raise InvalidParameterValueException(
                f"Code.S3Key {folder!r}: with S3Bucket {HOT_RELOAD_BUCKET!r} the key is the absolute path of the "
                "folder that plays the zip root"
            )
        digest = hashlib.sha256(folder.encode())
        self.code = {"S3Bucket": HOT_RELOAD_BUCKET, "S3Key": folder}
        self.code_bytes, self.code_size = b"", 0
        self.code_sha_256, self.code_digest = base64.b64encode(digest.digest()).decode(), digest.hexdigest()

    def get_hot_reload_code(self: LambdaFunction) -> dict[str, Any]:
        response = get_code(self)
        if _is_hot_reload(self.code):
            response["Code"] = {"RepositoryType": "S3", "Location": PurePosixPath(self.code["S3Key"]).as_uri()}
        return response

    install(LambdaFunction, "_set_function_code", set_hot_reload_code)
    install(LambdaFunction, "get_code", get_hot_reload_code)


def _keep_dead_letter_config() -> None:
    """moto drops DeadLetterConfig, so GetFunction never shows it and Terraform plans to add it again after every
    apply. Kept from CreateFunction and UpdateFunctionConfiguration, reported as Lambda does."""
    from moto.awslambda.models import LambdaFunction

    init = LambdaFunction.__init__
    get_configuration = LambdaFunction.get_configuration
    update_configuration = LambdaFunction.update_configuration

    def init_with_dead_letter_config(self: LambdaFunction, account_id: str, spec: dict[str, Any], *args, **kwargs):
        init(self, account_id, spec, *args, **kwargs)
        self._iotkpi_dead_letter_config = spec.get("DeadLetterConfig") or {}

    def configuration_with_dead_letter_config(self: LambdaFunction, *args: Any, **kwargs: Any) -> dict[str, Any]:
        configuration = get_configuration(self, *args, **kwargs)
        target = getattr(self, "_iotkpi_dead_letter_config", {}).get("TargetArn")
        if target:
            configuration["DeadLetterConfig"] = {"TargetArn": target}
        return configuration

    def update_dead_letter_config(self: LambdaFunction, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "DeadLetterConfig" in config_updates:
            self._iotkpi_dead_letter_config = config_updates["DeadLetterConfig"] or {}
        return update_configuration(self, config_updates)

    install(LambdaFunction, "__init__", init_with_dead_letter_config)
    install(LambdaFunction, "get_configuration", configuration_with_dead_letter_config)
    install(LambdaFunction, "update_configuration", update_dead_letter_config)


def _function_name(name_or_arn: str) -> str:
    """`arn:aws:lambda:<region>:<account>:function:<name>[:qualifier]` or a plain name → the name."""
    parts = name_or_arn.split(":")
    return parts[6] if name_or_arn.startswith("arn:") and len(parts) >= 7 else name_or_arn


def _list_mappings_by_name_or_arn() -> None:
    """moto compares ListEventSourceMappings' FunctionName with the string the mapping was created with, so a
    mapping Terraform created with the function's ARN was not found by its name (and the reverse). Lambda
    accepts either for both."""
    from moto.awslambda.models import LambdaBackend

    list_event_source_mappings = LambdaBackend.list_event_source_mappings

    def list_by_name_or_arn(self: LambdaBackend, event_source_arn: str, function_name: str) -> Any:
        mappings = list_event_source_mappings(self, event_source_arn, "")
        if not function_name:
            return mappings
        return [m for m in mappings if _function_name(m.function_name) == _function_name(function_name)]

    install(LambdaBackend, "list_event_source_mappings", list_by_name_or_arn)


# What Lambda reports for a stream (Kinesis, DynamoDB) mapping created without these settings.
_STREAM_MAPPING_DEFAULTS = {
    "BatchSize": 100,
    "MaximumBatchingWindowInSeconds": 0,
    "ParallelizationFactor": 1,
    "BisectBatchOnFunctionError": False,
    "MaximumRetryAttempts": -1,
    "MaximumRecordAgeInSeconds": -1,
    "FunctionResponseTypes": [],
    "TumblingWindowInSeconds": 0,
}


def _stream_mapping_defaults() -> None:
    """moto leaves out every setting the create call did not send; Terraform does not send false or zero values
    (bisect off, say), so the mapping read back lacked them where Lambda reports its defaults."""
    from moto.awslambda.models import EventSourceMapping

    get_configuration = EventSourceMapping.get_configuration

    def configuration_with_defaults(self: EventSourceMapping) -> dict[str, Any]:
        configuration = get_configuration(self)
        if ":kinesis:" in self.event_source_arn or ":dynamodb:" in self.event_source_arn:
            configuration = {**_STREAM_MAPPING_DEFAULTS, **configuration}
        return configuration

    install(EventSourceMapping, "get_configuration", configuration_with_defaults)
