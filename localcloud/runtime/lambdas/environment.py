"""One execution environment seen from the invoker: a worker process, its log capture, its lifecycle.

The environment emits the platform's log lines (INIT_START, START, END, REPORT, timeouts, runtime exits)
around what the function itself wrote, in the wording Lambda uses, and enforces the timeout by killing the
worker's process group; the next invocation then starts a fresh (cold) environment, as on Lambda.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from localcloud.runtime.lambdas.function import FunctionConfig
from localcloud.runtime.lambdas.output import LogEvent, OutputCapture, epoch_ms
from localcloud.runtime.lambdas.worker import recv_message, send_message

# Lambda gives an on-demand environment's init phase 10 s, then retries it within the invocation's timeout.
INIT_LIMIT_S = 10.0
_OUTPUT_SETTLE_S = 5.0


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class Outcome:
    payload: Any
    error: dict[str, Any] | None
    duration_ms: float
    log_events: list[LogEvent]
    cold_start: bool


def lambda_environment(config: FunctionConfig, log_stream: str, endpoint_url: str, region: str) -> dict[str, str]:
    """The worker's complete environment: the function's variables plus what Lambda itself defines."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "AWS_ENDPOINT_URL": endpoint_url,
    }
    reserved = {
        "AWS_LAMBDA_FUNCTION_NAME": config.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(config.code_root),
        "TZ": ":UTC",
    }
    return {**base, **config.environment, **reserved}


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0"


def _exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "exit status unknown"
    if returncode < 0:
        # Lambda's runtime manager prints Go's signal names, which are strsignal's in lower case.
        return f"signal: {(signal.strsignal(-returncode) or str(-returncode)).lower()}"
    return f"exit status {returncode}"


class ExecutionEnvironment:
    """A worker process for one function configuration; serves one invocation at a time."""

    def __init__(self, config: FunctionConfig, endpoint_url: str, region: str, launch_dir: Path) -> None:
        self.config = config
        self.log_stream = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self._env = lambda_environment(config, self.log_stream, endpoint_url, region)
        self._launch_dir = launch_dir
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._output: OutputCapture | None = None
        self._marks = 0
        self._max_rss_kb = 0
        self.usable = True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        self._proc = subprocess.Popen(
            # -s: no user site-packages, which a function's HOME would otherwise choose.
            [sys.executable, "-u", "-s", "-m", "localcloud.runtime.lambdas.worker", str(child.fileno())],
            env=self._env,
            cwd=self._launch_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(child.fileno(),),
            start_new_session=True,
        )
        child.close()
        self._sock = parent
        self._output = OutputCapture(self._proc.stdout)

    def invoke(self, request_id: str, event_json: str) -> Outcome:
        """Run one invocation (starting the worker first on a cold start); never raises for the function's faults."""
        cold = self._proc is None
        events, init_ms, failure = self._init(request_id) if cold else ([], None, None)
        events.append((epoch_ms(), f"START RequestId: {request_id} Version: $LATEST"))
        started = time.monotonic()
        payload = None
        if failure is None:
            reply, failure = self._run(request_id, event_json, started + self.config.timeout_s)
            events += self._collect(failure is None)
            if failure is None:
                self._max_rss_kb = max(self._max_rss_kb, reply.get("max_rss_kb", 0))
                if reply["type"] == "error":
                    failure = (reply["error"], "")
                else:
                    payload = _decode(reply)
        duration_ms = (time.monotonic() - started) * 1000
        error, status = failure if failure else (None, "")
        if error and error["errorType"] in ("Sandbox.Timedout", "Runtime.ExitError"):
            events.append((epoch_ms(), self._failure_log_line(request_id, error, duration_ms)))
        events.append((epoch_ms(), f"END RequestId: {request_id}"))
        events.append((epoch_ms(), self._report(request_id, duration_ms, init_ms, status)))
        return Outcome(payload, error, duration_ms, events, cold)

    def _init(self, request_id: str) -> tuple[list[LogEvent], float, tuple | None]:
        """Start the worker and let it import the handler: the init phase of a cold start."""
        version = f"python:{sys.version_info[0]}.{sys.version_info[1]}"
        events = [(epoch_ms(), f"INIT_START Runtime Version: {version}")]
        started = time.monotonic()
        self._spawn()
        reply, failure = self._await(request_id, started + INIT_LIMIT_S + self.config.timeout_s)
        init_ms = (time.monotonic() - started) * 1000
        events += self._collect(failure is None)
        if reply is not None:
            self._max_rss_kb = reply.get("max_rss_kb", 0)
            if reply["type"] == "init_error":
                failure = (reply["error"], f"Status: error\tError Type: {reply['error']['errorType']}")
                self._stop()
        return events, init_ms, failure

    def _run(self, request_id: str, event_json: str, deadline: float) -> tuple[dict | None, tuple | None]:
        request = {
            "request_id": request_id,
            "deadline_ms": epoch_ms() + self.config.timeout_s * 1000,
            "invoked_function_arn": self.config.arn,
            "trace_id": _trace_id(),
        }
        try:
            send_message(self._sock, request, event_json.encode())
        except OSError:
            return None, self._exited(request_id)
        return self._await(request_id, deadline)

    def _await(self, request_id: str, deadline: float) -> tuple[dict | None, tuple | None]:
        """The worker's reply, or the failure: (error, REPORT status) for a timeout or a dead worker."""
        try:
            reply = recv_message(self._sock, deadline)
        except TimeoutError:
            self._read_peak_memory()
            self._stop()
            seconds = self.config.timeout_s
            error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"RequestId: {request_id} Error: Task timed out after {seconds:.2f} seconds",
            }
            return None, (error, "Status: timeout")
        except OSError:  # the socket was closed under us: the invoker is shutting down
            reply = None
        if reply is None:
            return None, self._exited(request_id)
        return reply, None

    def _exited(self, request_id: str) -> tuple[dict[str, Any], str]:
        returncode = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            returncode = self._proc.wait(timeout=_OUTPUT_SETTLE_S)
        self._stop()
        message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_reason(returncode)}"
        return {
            "errorType": "Runtime.ExitError",
            "errorMessage": message,
        }, "Status: error\tError Type: Runtime.ExitError"

    def _collect(self, healthy: bool) -> list[LogEvent]:
        if healthy:
            self._marks += 1
            return self._output.take(self._marks)
        return self._output.take(None)

    def _failure_log_line(self, request_id: str, error: dict[str, Any], duration_ms: float) -> str:
        if error["errorType"] == "Sandbox.Timedout":
            return f"{_iso_now()} {request_id} Task timed out after {duration_ms / 1000:.2f} seconds"
        return f"{error['errorMessage']}\n{error['errorType']}"

    def _report(self, request_id: str, duration_ms: float, init_ms: float | None, status: str) -> str:
        fields = [
            f"REPORT RequestId: {request_id}",
            f"Duration: {duration_ms:.2f} ms",
            f"Billed Duration: {math.ceil(duration_ms)} ms",
            f"Memory Size: {self.config.memory_mb} MB",
            f"Max Memory Used: {math.ceil(self._max_rss_kb / 1024)} MB",
        ]
        if init_ms is not None:
            fields.append(f"Init Duration: {init_ms:.2f} ms")
        if status:
            fields.append(status)
        return "\t".join(fields) + "\t"

    def _read_peak_memory(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self._proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self._max_rss_kb = max(self._max_rss_kb, int(line.split()[1]))

    def _stop(self) -> None:
        """Kill the worker's whole process group; the environment is gone for good."""
        self.usable = False
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=_OUTPUT_SETTLE_S)
        if self._sock is not None:
            self._sock.close()

    def close(self) -> None:
        """Shut down: an idle worker exits on its own when the socket closes; a busy or stuck one is killed."""
        self.usable = False
        if self._proc is None:
            return
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # also wakes an invocation waiting for its reply
            self._sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=1.0)
        self._stop()


def _decode(reply: dict[str, Any]) -> Any:
    if reply.get("raw"):
        try:
            return json.loads(reply["payload"])
        except ValueError:
            return reply["payload"]
    return json.loads(reply["payload"])
