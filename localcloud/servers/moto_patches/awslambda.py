"""Lambda patches: Invoke forwarded to the local cloud's runtime; mappings keep StartingPositionTimestamp.

Each patch targets moto 5.2.5 (pinned) and says why it exists.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from typing import Any

from moto.core.exceptions import JsonRESTError

from localcloud.config import CONTROL_TOKEN_ENV
from localcloud.servers.moto_patches.install import install

RUNTIME_URL_ENV = "LOCALCLOUD_RUNTIME_URL"


def apply() -> None:
    _forward_lambda_invoke_to_runtime()
    _return_starting_position_timestamp()


class _LambdaServiceError(JsonRESTError):
    """An error answered in Lambda's shape; `code` is the HTTP status."""

    def __init__(self, code: int, error_type: str, message: str) -> None:
        self.code = code
        super().__init__(error_type, message)


def _header(headers: Any, name: str) -> str | None:
    """Case-insensitive lookup: moto passes werkzeug headers from requests, plain dicts internally."""
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


def _lambda_error(body: bytes) -> tuple[str, str] | None:
    """(errorType, errorMessage) from a runtime error body, when it has that shape."""
    try:
        document = json.loads(body)
        return str(document["errorType"]), str(document.get("errorMessage", ""))
    except (ValueError, TypeError, KeyError):
        return None


def _call_runtime(
    runtime_url: str, function_name: str, payload: bytes, invocation_type: str, timeout: float
) -> tuple[http.client.HTTPMessage, bytes]:
    """POST the payload to the runtime; its failures become the errors Lambda itself would answer."""
    base = urllib.parse.urlsplit(runtime_url)
    path = f"{base.path.rstrip('/')}/invoke/{urllib.parse.quote(function_name, safe='')}"
    connection = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port or 80, timeout=timeout)
    headers = {"X-Invocation-Type": invocation_type, "Content-Type": "application/json"}
    if os.environ.get(CONTROL_TOKEN_ENV):  # `up` gives this process the runtime's control token
        headers["Authorization"] = f"Bearer {os.environ[CONTROL_TOKEN_ENV]}"
    try:
        connection.request("POST", path, body=payload, headers=headers)
        response = connection.getresponse()
        body = response.read()
    except OSError as error:  # refused, reset, timed out
        raise _LambdaServiceError(
            500, "ServiceException", f"local Lambda runtime at {runtime_url} is unreachable: {error!r}"
        ) from error
    finally:
        connection.close()
    if 400 <= response.status < 500:  # the runtime's own Lambda-shaped client errors (unknown function, throttled)
        error = _lambda_error(body)
        if error:
            raise _LambdaServiceError(response.status, *error)
    if not 200 <= response.status < 300:
        raise _LambdaServiceError(
            500,
            "ServiceException",
            f"local Lambda runtime answered {response.status} for {function_name}: {body[:500]!r}",
        )
    return response.headers, body


def _forward_lambda_invoke_to_runtime() -> None:
    """moto runs functions in Docker, which the local cloud does not have. When LOCALCLOUD_RUNTIME_URL is
    set, Invoke is forwarded to the local cloud's runtime (which runs the real handler); otherwise moto's
    own behaviour is untouched. The API layer (responses.invoke) still turns Event into 202, DryRun into
    204, and keeps X-Amz-Log-Result only for LogType=Tail, exactly as for moto's own result."""
    from moto.awslambda.models import LambdaBackend

    invoke = LambdaBackend.invoke

    def forwarding_invoke(
        self: LambdaBackend, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> str | bytes | None:
        runtime_url = os.environ.get(RUNTIME_URL_ENV, "")
        if not runtime_url:
            return invoke(self, function_name, qualifier, body, headers, response_headers)
        fn = self.get_function(function_name, qualifier)  # unknown function -> ResourceNotFoundException
        invocation_type = _header(headers, "X-Amz-Invocation-Type") or "RequestResponse"
        response_headers["x-amz-executed-version"] = str(fn.version)
        if invocation_type == "DryRun":
            return b""
        payload = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        # The runtime enforces the function's timeout; the margin covers start-up and queueing.
        result_headers, result = _call_runtime(
            runtime_url, fn.function_name, payload, invocation_type, timeout=float(fn.timeout or 3) + 30
        )
        for name in ("X-Amz-Function-Error", "X-Amz-Log-Result"):
            if result_headers.get(name):
                response_headers[name.lower()] = result_headers[name]
        payload = b"" if invocation_type == "Event" else result  # Lambda answers an Event with an empty 202
        response_headers["Content-Length"] = str(len(payload))
        return payload

    install(LambdaBackend, "invoke", forwarding_invoke)


def _return_starting_position_timestamp() -> None:
    """EventSourceMapping stores StartingPositionTimestamp but get_configuration drops it, so the ESM
    poller could not honour StartingPosition=AT_TIMESTAMP from a mapping read back over the API."""
    from moto.awslambda.models import EventSourceMapping

    get_configuration = EventSourceMapping.get_configuration

    def get_configuration_with_timestamp(self: EventSourceMapping) -> dict[str, Any]:
        configuration = get_configuration(self)
        if self.starting_position_timestamp is not None:
            configuration["StartingPositionTimestamp"] = self.starting_position_timestamp
        return configuration

    install(EventSourceMapping, "get_configuration", get_configuration_with_timestamp)
