"""The runtime's control API, seen from the CLI, the demo and the tests: requests (with the bearer token `up`
keeps in the env file), firing schedules, waiting for it to answer."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any

import requests

from localcloud.config import CONTROL_TOKEN_ENV, Settings, control_token
from localcloud.errors import LocalCloudError

INVOKE_TIMEOUT_S = 930  # above the longest function timeout (900 s), so an invocation is never cut by us


def control_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.control_port}"


def auth_headers(settings: Settings) -> dict[str, str]:
    """The control API's Authorization header, with the token `up` keeps in the env file."""
    token = control_token(settings)
    if not token:
        raise LocalCloudError(
            f"no control token ({CONTROL_TOKEN_ENV}) in {settings.env_file} or the environment: run `localcloud up`"
        )
    return {"Authorization": f"Bearer {token}"}


def runtime_request(settings: Settings, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {**kwargs.pop("headers", {}), **auth_headers(settings)}
    timeout = kwargs.pop("timeout", INVOKE_TIMEOUT_S)
    try:
        response = requests.request(method, control_url(settings) + path, headers=headers, timeout=timeout, **kwargs)
    except requests.ConnectionError as exc:
        raise LocalCloudError(f"the runtime is not answering on {control_url(settings)}: run `localcloud up`") from exc
    _refuse_unauthorised(settings, response)
    return response


def _refuse_unauthorised(settings: Settings, response: requests.Response) -> None:
    if response.status_code == HTTPStatus.UNAUTHORIZED:
        raise LocalCloudError(
            f"the runtime on {control_url(settings)} refused our control token: it was started with another one "
            f"(was {settings.env_file} removed?); run `localcloud down`, then `localcloud up`"
        )


def fire_schedule(settings: Settings, schedule: str) -> dict[str, Any]:
    """Fire a schedule through the runtime and wait: {"ok", "payload" or "error", "log_tail"}."""
    response = runtime_request(settings, "POST", f"/schedules/{schedule}/fire")
    if response.status_code == 404:
        raise LocalCloudError(response.json()["error"])
    return response.json()


def wait_for_runtime(settings: Settings, alive: Callable[[], bool], log_file: Path, timeout: float = 60) -> None:
    """Until the control API answers; fail early when the process (`alive`) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise LocalCloudError(f"the runtime exited during start-up; see {log_file}")
        try:
            response = requests.get(control_url(settings) + "/status", headers=auth_headers(settings), timeout=2)
        except requests.RequestException:
            response = None
        if response is not None:
            _refuse_unauthorised(settings, response)
            if response.ok:
                return
        time.sleep(0.1)
    raise LocalCloudError(f"the runtime did not answer within {timeout:.0f}s; see {log_file}")


def invoke(settings: Settings, function_name: str, event: bytes) -> tuple[bool, Any, str]:
    """Invoke a function synchronously: (succeeded, result or Lambda-shaped error, log tail)."""
    response = runtime_request(settings, "POST", f"/invoke/{function_name}", data=event)
    if response.status_code != 200:
        raise LocalCloudError(f"invoke {function_name}: HTTP {response.status_code}: {response.text}")
    tail = base64.b64decode(response.headers.get("X-Amz-Log-Result", "")).decode(errors="replace")
    return "X-Amz-Function-Error" not in response.headers, response.json(), tail
