"""The runtime: one long-running process hosting the parts of the local cloud that *execute* things.

LambdaInvoker (runs handlers), EventSourceMappingPoller (Kinesis → Lambda), RulesEngine (MQTT → IoT SQL →
Kinesis, in a child process of its own: RulesEngineProcess; RuleWatcher makes rule changes on the endpoint live
within seconds), Scheduler (EventBridge rules / Scheduler schedules → Lambda), and a control HTTP server on
127.0.0.1:<control_port>. Every request needs `Authorization: Bearer <LOCALCLOUD_CONTROL_TOKEN>` (401 otherwise;
`up` keeps the token in the env file, readable by its owner only) and a loopback `Host`, and a browser's
`Origin`/`Referer` must be loopback (403 otherwise: no web page, even one rebinding its name to 127.0.0.1):

  GET  /status                  components, ESM positions/lag, schedules, recent invocations, rule counters
  POST /invoke/{function}       body = the event; X-Invocation-Type RequestResponse (default) | Event | DryRun
                                (the contract moto's patched Invoke forwards to; see moto_patches)
  POST /schedules/{name}/fire   fire a rule or schedule now
  POST /reload                  re-read topic rules and schedules now (each also re-reads them on its own
                                within seconds)

Run in the foreground with `python -m localcloud runtime`; `localcloud up` starts it detached.
SIGTERM/SIGINT stop every component and exit.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from localcloud.config import CONTROL_TOKEN_ENV, Settings, aws_session, control_token
from localcloud.errors import LocalCloudError
from localcloud.runtime.esm import EventSourceMappingPoller
from localcloud.runtime.iot.engine_process import RulesEngineProcess
from localcloud.runtime.iot.rule_watcher import RuleWatcher
from localcloud.runtime.lambdas.invoker import FunctionConfigError, FunctionNotFoundError, LambdaInvoker, ThrottledError
from localcloud.runtime.scheduler.scheduler import Scheduler, UnknownScheduleError, function_name_from_arn
from localcloud.servers.request_guard import has_bearer_token, refusal

log = logging.getLogger("localcloud.runtime.process")
# Stopping waits for the pollers to catch up: idle for a few polls in a row (longer than a poller's pause on
# an empty shard, so it has looked again), at most DRAIN_TIMEOUT_S (a failing batch may never finish).
DRAIN_TIMEOUT_S = 30.0
DRAIN_POLL_S = 0.25
DRAIN_IDLE_POLLS = 4


def invocation_response(result: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of Lambda's Invoke for one InvocationResult."""
    headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
    if result.log_tail:
        headers["X-Amz-Log-Result"] = base64.b64encode(result.log_tail.encode()[-4096:]).decode()
    if not result.ok:
        headers["X-Amz-Function-Error"] = "Unhandled"
        return HTTPStatus.OK, headers, json.dumps(result.error).encode()
    return HTTPStatus.OK, headers, json.dumps(result.payload).encode()


def result_summary(result: Any) -> dict[str, Any]:
    return {
        "function": result.function_name,
        "request_id": result.request_id,
        "ok": result.ok,
        "payload": result.payload,
        "error": result.error,
        "duration_ms": result.duration_ms,
        "log_tail": result.log_tail,
    }


class Runtime:
    def __init__(self, settings: Settings, control_token: str) -> None:
        self.settings = settings
        endpoint, region = settings.endpoint_url, settings.region
        self.invoker = LambdaInvoker(endpoint, region, log_dir=settings.logs_dir / "lambda")
        self.poller = EventSourceMappingPoller(
            endpoint, region, self.invoker, settings.state_dir / "esm-checkpoints.json"
        )
        self.rules_engine = RulesEngineProcess(endpoint, region, settings.mqtt_host, settings.mqtt_port)
        iot = aws_session(region).client("iot", endpoint_url=endpoint)
        self._rules_reloading = threading.Lock()  # the watcher's thread and POST /reload
        self.rule_watcher = RuleWatcher(iot, self.reload_rules)
        self.scheduler = Scheduler(endpoint, region, self.invoker)
        self._async_invocations = ThreadPoolExecutor(8, thread_name_prefix="invoke-event")
        self._server = ThreadingHTTPServer(("127.0.0.1", settings.control_port), _handler_for(self, control_token))
        self._server.daemon_threads = True
        self._stopped = threading.Event()
        self._finished = threading.Event()

    def start(self) -> None:
        self.poller.start()
        self.rule_watcher.start()  # before the engine loads the rules: a change in between is not missed
        self.rules_engine.start()
        self.scheduler.start()

    def serve_forever(self) -> None:
        log.info("control server on http://127.0.0.1:%d", self.settings.control_port)
        self._server.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        """Stop taking requests, then every component (each bounded by its own timeout). A second caller
        (the main thread, once serve_forever returns) waits until the first has finished."""
        if self._stopped.is_set():
            self._finished.wait()
            return
        self._stopped.set()
        try:
            self._server.shutdown()
            for name, stop in (
                ("scheduler", self.scheduler.stop),
                ("rule watcher", self.rule_watcher.stop),
                ("rules engine", self.rules_engine.stop),
                ("stream drain", self.drain),
                ("event source mapping poller", self.poller.stop),
            ):
                try:
                    stop()
                except Exception:
                    log.exception("stopping the %s failed", name)
            self._async_invocations.shutdown(wait=False, cancel_futures=True)
            self.invoker.close()
            self._server.server_close()
        finally:
            self._finished.set()

    def drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Let the pollers process what the stream holds (new records stopped with the rules engine; messages
        still queued in the broker wait in its persistent session). An optimisation: the endpoint keeps its
        streams on disk, so what is left is processed after the next `up`, from the mappings' checkpoints."""
        deadline = time.monotonic() + timeout
        idle_polls = 0
        while idle_polls < DRAIN_IDLE_POLLS:
            rows = self.poller.status()
            busy = [row for row in rows if row["records_behind"] or row["millis_behind_latest"]
                    or row["checkpoint_sequence"] != row["latest_sequence"]]  # fmt: skip
            idle_polls = 0 if busy else idle_polls + 1
            if time.monotonic() > deadline:
                log.warning("stopping with records in flight after %.0fs of draining: %s", timeout, busy)
                return
            time.sleep(DRAIN_POLL_S)
        log.info("streams drained")

    def reload_rules(self) -> None:
        with self._rules_reloading:
            self.rules_engine.reload()

    def reload(self) -> None:
        self.reload_rules()
        self.scheduler.refresh()

    def status(self) -> dict[str, Any]:
        return {
            "control_port": self.settings.control_port,
            "endpoint_url": self.settings.endpoint_url,
            "event_source_mappings": self.poller.status(),
            "rules_engine": self.rules_engine.status(),
            "schedules": self.scheduler.status(),
            "recent_invocations": self.invoker.recent(20),
        }

    def invoke(self, function_name: str, event: Any, invocation_type: str) -> tuple[int, dict[str, str], bytes]:
        if invocation_type == "DryRun":
            return HTTPStatus.NO_CONTENT, {}, b""
        if invocation_type == "Event":
            self._async_invocations.submit(self.invoker.invoke, function_name, event)
            return HTTPStatus.ACCEPTED, {}, b""
        return invocation_response(self.invoker.invoke(function_name, event))


def _handler_for(runtime: Runtime, control_token: str) -> type[BaseHTTPRequestHandler]:
    class ControlHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("control: " + format, *args)

        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {"Content-Type": "application/json"}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: Any) -> None:
            self._send(status, json.dumps(document, default=str).encode())

        def _path(self) -> list[str]:
            return [urllib.parse.unquote(part) for part in urllib.parse.urlsplit(self.path).path.split("/") if part]

        def _refused(self) -> bool:
            """Answer 403 or 401 (and close: the body stays unread) when the request may not drive the runtime."""
            reason = refusal(self.headers.get("Host"), self.headers.get("Origin"), self.headers.get("Referer"))
            if reason:
                status, headers = HTTPStatus.FORBIDDEN, {}
            elif not has_bearer_token(self.headers.get("Authorization"), control_token):
                status, headers = HTTPStatus.UNAUTHORIZED, {"WWW-Authenticate": 'Bearer realm="localcloud"'}
                reason = f"missing or wrong bearer token: send Authorization: Bearer ${CONTROL_TOKEN_ENV} (env file)"
            else:
                return False
            self.close_connection = True
            body = json.dumps({"error": reason}).encode()
            self._send(status, body, {"Content-Type": "application/json", "Connection": "close", **headers})
            return True

        def do_GET(self) -> None:
            if self._refused():
                return
            if self._path() == ["status"]:
                self._json(HTTPStatus.OK, runtime.status())
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such resource: {self.path}"})

        def do_POST(self) -> None:
            if self._refused():
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self._path()
            try:
                if len(path) == 2 and path[0] == "invoke":
                    self._invoke(path[1], body)
                elif len(path) == 3 and path[0] == "schedules" and path[2] == "fire":
                    self._json(HTTPStatus.OK, result_summary(runtime.scheduler.fire(path[1])))
                elif path == ["reload"]:
                    runtime.reload()
                    self._json(HTTPStatus.OK, {"reloaded": True})
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such resource: {self.path}"})
            except FunctionNotFoundError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"errorType": "ResourceNotFoundException", "errorMessage": str(exc)})
            except FunctionConfigError as exc:  # nothing runnable (an untrusted code folder, not Python...)
                self._json(HTTPStatus.BAD_REQUEST, {"errorType": exc.error_type, "errorMessage": str(exc)})
            except ThrottledError as exc:
                self._json(
                    HTTPStatus.TOO_MANY_REQUESTS, {"errorType": "TooManyRequestsException", "errorMessage": str(exc)}
                )
            except UnknownScheduleError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no rule or schedule named {exc.args[0]!r}"})
            except Exception as exc:  # the control server must answer, whatever went wrong
                log.exception("control request %s failed", self.path)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

        def _invoke(self, function: str, body: bytes) -> None:
            name = function_name_from_arn(function) or function.split(":", 1)[0]
            try:
                event = json.loads(body) if body.strip() else {}
            except ValueError:
                self._json(HTTPStatus.BAD_REQUEST, {"errorType": "InvalidRequestContentException",
                                                    "errorMessage": "Could not parse request body into json"})  # fmt: skip
                return
            status, headers, payload = runtime.invoke(name, event, self.headers.get("X-Invocation-Type", ""))
            self._send(status, payload, headers)

    return ControlHandler


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    token = control_token(settings)
    if not token:
        raise LocalCloudError(f"no control token: start the runtime with `localcloud up`, or set {CONTROL_TOKEN_ENV}")
    runtime = Runtime(settings, token)
    runtime.start()

    def shutdown(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        # serve_forever() runs in this (main) thread: shut it down from another one.
        threading.Thread(target=runtime.stop, name="shutdown").start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        runtime.serve_forever()
    finally:
        runtime.stop()
    log.info("stopped")
