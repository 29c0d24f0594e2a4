"""Runs deployed functions' handlers from the repo the way Lambda runs them.

A function is looked up on the AWS endpoint (GetFunction: handler, runtime, timeout, memory, environment,
reserved concurrency, code location); its code is the folder of its hot-reload code location, which must be
a trusted folder, as must whatever its environment adds to the search paths (see `code_roots`).
Each execution environment is a worker process (see `worker`); environments stay warm between invocations
and are reused, at most `reserved concurrency` (else `default_concurrency`) per function at a time: further
invocations wait for a free one. The configuration is re-read at most every `config_refresh_s`; when it
changed, warm environments retire and new invocations get environments built from the new configuration.

`invoke` (and `invoke_json`, for an event already in JSON) returns an InvocationResult for everything the
function does (result, unhandled error, timeout, crash); it raises only when there is nothing to run:
FunctionNotFoundError, FunctionConfigError (and its CodeLocationError), ThrottledError (reserved concurrency 0),
botocore errors when the endpoint cannot be reached at the first lookup, TypeError when the event is not
JSON-serialisable.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import REPO_ROOT, aws_session
from localcloud.runtime.lambdas.cloudwatch import LogShipper
from localcloud.runtime.lambdas.code_roots import CodeLocationError, allowed_roots, check_function
from localcloud.runtime.lambdas.environment import ExecutionEnvironment
from localcloud.runtime.lambdas.function import (
    FunctionConfig,
    FunctionConfigError,
    FunctionNotFoundError,
    ThrottledError,
    fetch_function_config,
)

__all__ = [
    "CodeLocationError",
    "FunctionConfigError",
    "FunctionNotFoundError",
    "InvocationResult",
    "LambdaInvoker",
    "ThrottledError",
]

log = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 4096


@dataclass(frozen=True)
class InvocationResult:
    function_name: str
    request_id: str
    payload: Any  # the handler's JSON-decoded return value (None if it returned None)
    error: dict | None  # {"errorType", "errorMessage", "stackTrace": [...]} for unhandled errors and timeouts
    duration_ms: float
    log_tail: str  # this invocation's log lines (last 4 KB)

    @property
    def ok(self) -> bool:
        return self.error is None


class _FunctionPool:
    """The warm environments of one function and the count of those in use."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self.checked_at = time.monotonic()
        self.refresh_lock = threading.Lock()
        self.cond = threading.Condition()
        self.idle: list[ExecutionEnvironment] = []
        self.busy = 0
        self.retired = False

    def limit(self, default_concurrency: int) -> int:
        reserved = self.config.reserved_concurrency
        return default_concurrency if reserved is None else reserved

    def replace_config(self, config: FunctionConfig) -> list[ExecutionEnvironment]:
        """Adopt `config`; return the idle environments it made stale (the caller closes them)."""
        with self.cond:
            self.config = config
            stale = [env for env in self.idle if env.config.environment_key != config.environment_key]
            self.idle = [env for env in self.idle if env not in stale]
            self.cond.notify_all()
        return stale

    def retire(self) -> list[ExecutionEnvironment]:
        """No environment comes back to this pool; return the idle ones (the caller closes them)."""
        with self.cond:
            self.retired = True
            idle, self.idle = self.idle, []
        return idle

    def acquire(self, default_concurrency: int) -> tuple[FunctionConfig, ExecutionEnvironment | None]:
        with self.cond:
            if self.limit(default_concurrency) == 0:
                raise ThrottledError(f"{self.config.name}: reserved concurrency is 0 (Rate Exceeded)")
            self.cond.wait_for(lambda: self.busy < self.limit(default_concurrency))
            self.busy += 1
            return self.config, (self.idle.pop() if self.idle else None)

    def release(self, env: ExecutionEnvironment, default_concurrency: int) -> bool:
        """Return `env` to the warm set if it may serve again; False when the caller must close it."""
        with self.cond:
            self.busy -= 1
            self.cond.notify()
            keep = (
                not self.retired
                and env.usable
                and env.config.environment_key == self.config.environment_key
                and len(self.idle) + self.busy < self.limit(default_concurrency)
            )
            if keep:
                self.idle.append(env)
            return keep


class LambdaInvoker:
    def __init__(
        self,
        endpoint_url: str,
        region: str,
        *,
        repo_root: Path = REPO_ROOT,
        code_roots: tuple[Path, ...] | None = None,
        default_concurrency: int = 4,
        log_dir: Path | None = None,
        config_refresh_s: float = 1.0,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self.repo_root = repo_root
        self.code_roots = allowed_roots(repo_root) if code_roots is None else code_roots
        self.default_concurrency = default_concurrency
        self.config_refresh_s = config_refresh_s
        self._lambda = aws_session(region).client(
            "lambda",
            endpoint_url=endpoint_url,
            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
        )
        self._logs = LogShipper(endpoint_url, region, log_dir=log_dir)
        self._lock = threading.Lock()
        self._pools: dict[str, _FunctionPool] = {}
        self._live: set[ExecutionEnvironment] = set()
        self._recent: deque[dict] = deque(maxlen=200)
        self._closed = False

    def invoke(self, function_name: str, event: Any) -> InvocationResult:
        """Run the function's handler on `event`; thread-safe; blocks for a free execution environment."""
        return self.invoke_json(function_name, json.dumps(event))

    def invoke_json(self, function_name: str, event_json: str) -> InvocationResult:
        """`invoke` with the event already in JSON (the event source mapping builds its events as text)."""
        if self._closed:
            raise RuntimeError("the Lambda invoker is closed")
        pool = self._pool(function_name)
        config, env = pool.acquire(self.default_concurrency)
        if env is None:
            env = ExecutionEnvironment(config, self.endpoint_url, self.region, self.repo_root)
            with self._lock:
                self._live.add(env)
        request_id = str(uuid.uuid4())
        started_at = datetime.now(UTC)
        try:
            outcome = env.invoke(request_id, event_json)
        finally:
            if not pool.release(env, self.default_concurrency) or self._closed:
                self._retire(env)
        self._logs.ship(config.name, env.log_stream, outcome.log_events)
        self._recent.append(
            {
                "function": config.name,
                "request_id": request_id,
                "start": started_at.isoformat(timespec="milliseconds"),
                "duration_ms": round(outcome.duration_ms, 2),
                "ok": outcome.error is None,
                "error_type": outcome.error["errorType"] if outcome.error else None,
                "cold_start": outcome.cold_start,
            }
        )
        return InvocationResult(
            function_name=config.name,
            request_id=request_id,
            payload=outcome.payload,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            log_tail=_tail("\n".join(message for _, message in outcome.log_events)),
        )

    def recent(self, limit: int = 20) -> list[dict]:
        """The latest invocations, newest first."""
        return list(self._recent)[-limit:][::-1]

    def flush_logs(self, timeout: float = 10.0) -> bool:
        """Wait until the logs of past invocations reached CloudWatch Logs (or were dropped)."""
        return self._logs.flush(timeout)

    def close(self) -> None:
        """Stop every worker process (busy ones are killed) and deliver the remaining logs."""
        self._closed = True
        with self._lock:
            pools = list(self._pools.values())
            live = list(self._live)
        for pool in pools:
            pool.retire()
        for env in live:
            self._retire(env)
        self._logs.close()

    def _retire(self, env: ExecutionEnvironment) -> None:
        env.close()
        with self._lock:
            self._live.discard(env)

    def _pool(self, function_name: str) -> _FunctionPool:
        with self._lock:
            pool = self._pools.get(function_name)
        if pool is None:
            config = self._runnable_config(function_name)
            with self._lock:
                return self._pools.setdefault(function_name, _FunctionPool(config))
        if time.monotonic() - pool.checked_at >= self.config_refresh_s:
            with pool.refresh_lock:
                if time.monotonic() - pool.checked_at >= self.config_refresh_s:
                    self._refresh(function_name, pool)
        return pool

    def _runnable_config(self, function_name: str) -> FunctionConfig:
        config = fetch_function_config(self._lambda, function_name)
        check_function(config, self.code_roots)
        return config

    def _refresh(self, function_name: str, pool: _FunctionPool) -> None:
        try:
            config = self._runnable_config(function_name)
        except (FunctionNotFoundError, FunctionConfigError):
            # Deleted or no longer runnable: forget it, so the next invocation looks it up afresh.
            with self._lock:
                self._pools.pop(function_name, None)
            for env in pool.retire():
                self._retire(env)
            raise
        except (BotoCoreError, ClientError) as exc:
            log.warning("cannot refresh %s, keeping its last configuration: %s", function_name, exc)
            config = pool.config
        pool.checked_at = time.monotonic()
        for env in pool.replace_config(config):
            self._retire(env)


def _tail(text: str) -> str:
    encoded = text.encode("utf-8")
    return encoded[-_LOG_TAIL_BYTES:].decode("utf-8", "ignore")
