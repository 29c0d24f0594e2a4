"""The services IoT SQL functions read (get_secret, get_dynamodb, aws_lambda, get_thing_shadow,
get_registry_data), served by the AWS endpoint the rules engine already uses: boto3 clients on it, nothing else.

aws_lambda() goes through Lambda's Invoke on the endpoint, which the local cloud forwards to its runtime (as
IoT Core calls Lambda's Invoke); IoT Core stops waiting after 2 seconds ("Lambda function calls from rules
should be completed within 2000 milliseconds"), and so does this client.
"""

from __future__ import annotations

from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import aws_session
from localcloud.runtime.iot.functions.services import LookupFailed, NotFound, Secret

LAMBDA_TIMEOUT_S = 2
_NOT_FOUND = {"ResourceNotFoundException", "ResourceNotFound"}


def _failure(exc: Exception) -> LookupFailed:
    if isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
        return NotFound(str(exc))
    return LookupFailed(str(exc))


class EndpointLookups:
    def __init__(self, endpoint_url: str, region: str) -> None:
        session = aws_session(region)
        config = Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10, max_pool_connections=4)
        lambda_config = config.merge(Config(read_timeout=LAMBDA_TIMEOUT_S))
        self._secrets = session.client("secretsmanager", endpoint_url=endpoint_url, config=config)
        self._dynamodb = session.client("dynamodb", endpoint_url=endpoint_url, config=config)
        self._lambda = session.client("lambda", endpoint_url=endpoint_url, config=lambda_config)
        self._iot_data = session.client("iot-data", endpoint_url=endpoint_url, config=config)
        self._iot = session.client("iot", endpoint_url=endpoint_url, config=config)

    def secret(self, secret_id: str) -> Secret:
        try:
            answer = self._secrets.get_secret_value(SecretId=secret_id)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from exc
        return Secret(string=answer.get("SecretString"), binary=answer.get("SecretBinary"))

    def dynamodb_item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._dynamodb.get_item(TableName=table, Key=key).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from exc

    def invoke_lambda(self, function_arn: str, payload: bytes) -> bytes:
        try:
            answer = self._lambda.invoke(FunctionName=function_arn, Payload=payload)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from exc
        body = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise LookupFailed(f"{function_arn} failed ({answer['FunctionError']}): {body[:500]!r}")
        return body

    def thing_shadow(self, thing: str, shadow: str | None) -> bytes:
        try:
            named = {"shadowName": shadow} if shadow else {}
            return self._iot_data.get_thing_shadow(thingName=thing, **named)["payload"].read()
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from exc

    def registry(self, api: str, thing: str) -> dict[str, Any]:
        try:
            if api == "DescribeThing":
                answer = self._iot.describe_thing(thingName=thing)
            else:
                answer = self._iot.list_thing_groups_for_thing(thingName=thing)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(exc) from exc
        answer.pop("ResponseMetadata", None)
        return answer
