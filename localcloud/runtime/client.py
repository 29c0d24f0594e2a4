"""The runtime's control API, seen from the CLI, the demo and the tests: requests, firing schedules, waiting
for it to answer."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from localcloud.config import Settings
from localcloud.errors import LocalCloudError

INVOKE_TIMEOUT_S = 930  # above the longest function timeout (900 s), so an invocation is never cut by us


def control_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.control_port}"


def runtime_request(settings: Settings, method: str, path: str, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(
            method, control_url(settings) + path, timeout=kwargs.pop("timeout", INVOKE_TIMEOUT_S), **kwargs
        )
    except requests.ConnectionError as exc:
        raise LocalCloudError(f"the runtime is not answering on {control_url(settings)}: run `localcloud up`") from exc


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
            if requests.get(control_url(settings) + "/status", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise LocalCloudError(f"the runtime did not answer within {timeout:.0f}s; see {log_file}")


def invoke(settings: Settings, function_name: str, event: bytes) -> tuple[bool, Any, str]:
    """Invoke a function synchronously: (succeeded, result or Lambda-shaped error, log tail)."""
    response = runtime_request(settings, "POST", f"/invoke/{function_name}", data=event)
    if response.status_code != 200:
        raise LocalCloudError(f"invoke {function_name}: HTTP {response.status_code}: {response.text}")
    tail = base64.b64decode(response.headers.get("X-Amz-Log-Result", "")).decode(errors="replace")
    return "X-Amz-Function-Error" not in response.headers, response.json(), tail
