"""Functions that read other services: get_secret, get_dynamodb, aws_lambda, get_thing_shadow, get_registry_data
(https://docs.aws.amazon.com/iot/latest/developerguide/iot-sql-functions.html).

They call the `Lookups` port; the runtime's adapter (localcloud/runtime/iot/lookups.py) serves it from the local
AWS endpoint (Secrets Manager, DynamoDB, Lambda Invoke, the IoT data plane and registry). The roleArn argument is
read but not assumed (IAM is not enforced locally). A failed call fails the rule for that message
(SqlEvaluationError: no action runs), as IoT Core documents for get_secret and a second get_dynamodb call; a
missing DynamoDB item or shadow gives Undefined. Secrets are read on every call (IoT Core caches them for up to
15 minutes, so it may return an older version after an update).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from localcloud.runtime.iot.functions.base import Function, literal_string, require_literal
from localcloud.runtime.iot.sql_ast import Context, SqlEvaluationError, UnsupportedSql
from localcloud.runtime.iot.values import UNDEFINED, Numbers, parse_json, to_json

REGISTRY_APIS = ("DescribeThing", "ListThingGroupsForThing")
SECRET_TYPES = ("SecretString", "SecretBinary")


class LookupFailed(Exception):
    """A service call failed (unreachable, denied, invalid request)."""


class NotFound(LookupFailed):
    """The item, shadow or thing does not exist."""


@dataclass(frozen=True)
class Secret:
    string: str | None = None
    binary: bytes | None = None


class Lookups(Protocol):
    def secret(self, secret_id: str) -> Secret: ...

    def dynamodb_item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        """The item as DynamoDB AttributeValues ({"S": ...}, {"N": ...}, ...), None when there is none."""

    def invoke_lambda(self, function_arn: str, payload: bytes) -> bytes: ...

    def thing_shadow(self, thing: str, shadow: str | None) -> bytes: ...

    def registry(self, api: str, thing: str) -> dict[str, Any]: ...


def _lookups(ctx: Context, function: str) -> Lookups:
    lookups = ctx.environment.lookups
    if lookups is None:
        raise SqlEvaluationError(f"{function}(): no AWS endpoint to call")
    return lookups


def _text(function: str, name: str, value: Any) -> str:
    if type(value) is not str:
        raise SqlEvaluationError(f"{function}(): {name} must be a string, not {value!r}")
    return value


# -- get_secret ----------------------------------------------------------------------------------------------------
def _get_secret(ctx: Context, secret_id: Any, secret_type: Any, *rest: Any) -> Any:
    key = rest[0] if len(rest) == 2 else None
    kind = _text("get_secret", "secretType", secret_type)
    if kind not in SECRET_TYPES:
        raise SqlEvaluationError(f"get_secret(): secretType must be SecretString or SecretBinary, not {kind!r}")
    try:
        secret = _lookups(ctx, "get_secret").secret(_text("get_secret", "secretId", secret_id))
    except LookupFailed as exc:
        raise SqlEvaluationError(f"get_secret(): {exc}") from exc
    if kind == "SecretBinary":
        if key is not None or secret.binary is None:
            raise SqlEvaluationError("get_secret(): SecretBinary takes no key and needs a binary secret")
        return base64.b64encode(secret.binary).decode("ascii")
    if secret.string is None:
        raise SqlEvaluationError("get_secret(): the secret has no SecretString")
    document = parse_json(secret.string, ctx.numbers)
    if key is None:
        return document if type(document) is dict else secret.string
    if type(document) is not dict:
        raise SqlEvaluationError("get_secret(): a key needs a secret that is a JSON object")
    return document.get(_text("get_secret", "key", key), UNDEFINED)


def _check_secret(args: tuple[Any, ...]) -> None:
    if literal_string(args[1]) is not None:
        require_literal("get_secret", "secretType", args[1], SECRET_TYPES)


# -- get_dynamodb --------------------------------------------------------------------------------------------------
def _key_attribute(value: Any) -> dict[str, str]:
    if type(value) is str:
        return {"S": value}
    if type(value) in (int, Decimal):
        return {"N": str(value)}
    raise SqlEvaluationError(f"get_dynamodb(): a key value must be a string or a number, not {value!r}")


def from_attribute_value(attribute: dict[str, Any], numbers: Numbers) -> Any:
    """A DynamoDB AttributeValue as an IoT SQL value (sets become arrays, binary becomes base64)."""
    (kind, value), *_ = attribute.items()
    if kind == "S":
        return value
    if kind == "N":
        return numbers.parse(value)
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "B":
        return base64.b64encode(value).decode("ascii")
    if kind == "M":
        return {name: from_attribute_value(item, numbers) for name, item in value.items()}
    if kind == "L":
        return [from_attribute_value(item, numbers) for item in value]
    if kind == "SS":
        return list(value)
    if kind == "NS":
        return [numbers.parse(item) for item in value]
    if kind == "BS":
        return [base64.b64encode(item).decode("ascii") for item in value]
    raise SqlEvaluationError(f"get_dynamodb(): unknown attribute type {kind}")


def _get_dynamodb(ctx: Context, table: Any, key_name: Any, key_value: Any, *rest: Any) -> Any:
    # "Calling get_dynamodb() multiple times in a single SQL statement causes the rule to terminate."
    ctx.calls["get_dynamodb"] = ctx.calls.get("get_dynamodb", 0) + 1
    if ctx.calls["get_dynamodb"] > 1:
        raise SqlEvaluationError("get_dynamodb() can be called once per SQL statement")
    key = {_text("get_dynamodb", "partitionKeyName", key_name): _key_attribute(key_value)}
    if len(rest) == 3:
        key[_text("get_dynamodb", "sortKeyName", rest[0])] = _key_attribute(rest[1])
    try:
        item = _lookups(ctx, "get_dynamodb").dynamodb_item(_text("get_dynamodb", "tableName", table), key)
    except LookupFailed as exc:
        raise SqlEvaluationError(f"get_dynamodb(): {exc}") from exc
    if item is None:
        return UNDEFINED
    return {name: from_attribute_value(attribute, ctx.numbers) for name, attribute in item.items()}


def _check_dynamodb(args: tuple[Any, ...]) -> None:
    if len(args) == 5:
        raise UnsupportedSql("get_dynamodb() takes 4 arguments, or 6 with a sort key name and value")


# -- aws_lambda, get_thing_shadow, get_registry_data ----------------------------------------------------------------
def _aws_lambda(ctx: Context, function_arn: Any, input_json: Any) -> Any:
    if input_json is UNDEFINED:
        raise SqlEvaluationError("aws_lambda(): the input is Undefined")
    arn = _text("aws_lambda", "functionArn", function_arn)
    try:
        answer = _lookups(ctx, "aws_lambda").invoke_lambda(arn, to_json(input_json))
    except LookupFailed as exc:
        raise SqlEvaluationError(f"aws_lambda(): {exc}") from exc
    parsed = parse_json(answer, ctx.numbers)
    if parsed is UNDEFINED:
        raise SqlEvaluationError("aws_lambda(): the function must return JSON")
    return parsed


def _get_thing_shadow(ctx: Context, thing: Any, *rest: Any) -> Any:
    shadow = _text("get_thing_shadow", "shadowName", rest[0]) if len(rest) == 2 else None
    try:
        document = _lookups(ctx, "get_thing_shadow").thing_shadow(_text("get_thing_shadow", "thingName", thing), shadow)
    except NotFound:
        return UNDEFINED
    except LookupFailed as exc:
        raise SqlEvaluationError(f"get_thing_shadow(): {exc}") from exc
    return parse_json(document, ctx.numbers)


def _get_registry_data(ctx: Context, api: Any, thing: Any, role_arn: Any) -> Any:
    try:
        answer = _lookups(ctx, "get_registry_data").registry(api, _text("get_registry_data", "thingName", thing))
    except LookupFailed as exc:
        raise SqlEvaluationError(f"get_registry_data(): {exc}") from exc
    return parse_json(to_json(answer), ctx.numbers)


def _check_registry(args: tuple[Any, ...]) -> None:
    # "These values must be constant strings."
    require_literal("get_registry_data", "registryAPI", args[0], REGISTRY_APIS)


FUNCTIONS = [
    Function("aws_lambda", _aws_lambda, 2, 2),
    Function("get_dynamodb", _get_dynamodb, 4, 6, since_2016=True, check=_check_dynamodb),
    Function("get_registry_data", _get_registry_data, 3, 3, since_2016=True, check=_check_registry),
    Function("get_secret", _get_secret, 3, 4, check=_check_secret),
    Function("get_thing_shadow", _get_thing_shadow, 2, 3, since_2016=True),
]
