"""One Lambda execution environment: a process that imports the handler once, then serves invocations.

Started by the invoker as `python -u -m localcloud.runtime.lambdas.worker FD` with exactly the function's environment.
It behaves like AWS's Python runtime client (awslambdaric): the handler module is imported at start-up (init);
each invocation gets a LambdaContext; unhandled errors are answered with Lambda's error shape and logged as
`[ERROR] Type: message` plus the traceback; the root logger writes `[LEVEL]\\ttime\\trequest id\\tmessage`.

Requests and replies travel over the socket FD (length-prefixed JSON) because stdout and stderr belong to
the function: they are its log. A request's event follows it as a frame of its own, the event's JSON as it
is: inside the request's JSON it would be escaped and unescaped again (a batch of 500 Kinesis records is
about 300 KB). After each phase (init, every invocation) the worker writes PHASE_END to
fd 1 before replying, so the invoker knows which output belongs to which invocation.
Standard library only, so that a cold start costs no more than the function's own imports.
"""

from __future__ import annotations

import decimal
import importlib
import importlib.util
import json
import logging
import math
import os
import resource
import socket
import struct
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from localcloud.runtime.lambdas.context import LambdaContext

PHASE_END = b"\x00\x1elocalcloud:phase-end\x1e\x00\n"
_HEADER = struct.Struct("!I")
# Lambda's text log format marks the line breaks inside one log event with \r; the invoker restores them.
_EVENT_LINE_BREAK = "\r"
_TRACE_INDENT = "\u00a0"

_request_id = ""


def send_message(sock: socket.socket, message: dict[str, Any], *frames: bytes) -> None:
    """The message, then each of `frames` as it is (the receiver reads them with recv_frame)."""
    body = json.dumps(message).encode()
    sock.sendall(b"".join(part for frame in (body, *frames) for part in (_HEADER.pack(len(frame)), frame)))


def recv_message(sock: socket.socket, deadline: float | None = None) -> dict[str, Any] | None:
    """The next message, None once the peer is gone; TimeoutError past `deadline` (time.monotonic())."""
    body = recv_frame(sock, deadline)
    return None if body is None else json.loads(body)


def recv_frame(sock: socket.socket, deadline: float | None = None) -> bytes | None:
    """The next frame's bytes, None once the peer is gone; TimeoutError past `deadline`."""
    header = _recv_exact(sock, _HEADER.size, deadline)
    if header is None:
        return None
    return _recv_exact(sock, _HEADER.unpack(header)[0], deadline)


def _recv_exact(sock: socket.socket, size: int, deadline: float | None) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return bytes(data)


class _Fault(Exception):
    """A failure of the runtime's own making (Runtime.*), as opposed to an exception the handler raised."""

    def __init__(self, error_type: str, message: str, trace: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.trace = trace or []


def _error(message: str, error_type: str, trace: list[str], request_id: str) -> dict[str, Any]:
    return {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": trace}


def _error_from_exception(exc: BaseException, request_id: str) -> dict[str, Any]:
    frames = list(traceback.extract_tb(exc.__traceback__))
    # The user sees their own frames only, as awslambdaric drops its bootstrap frames.
    while frames and frames[0].filename == __file__:
        frames.pop(0)
    trace = traceback.format_list([(f.filename, f.lineno, f.name, f.line) for f in frames])
    return _error(str(exc), type(exc).__name__, trace, request_id)


def _log_error(error: dict[str, Any]) -> None:
    lines = [f"[ERROR] {error['errorType']}: {error['errorMessage']}", "Traceback (most recent call last):"]
    for element in error["stackTrace"]:
        for line in element.splitlines():
            stripped = line.lstrip(" ")
            lines.append(_TRACE_INDENT * (len(line) - len(stripped)) + stripped)
    sys.stdout.write(_EVENT_LINE_BREAK.join(lines) + "\n")


def _load_handler(spec: str, task_root: str) -> Callable[[Any, LambdaContext], Any]:
    """Import the handler the way awslambdaric does, with its error types and messages."""
    try:
        module_name, function_name = spec.rsplit(".", 1)
    except ValueError as exc:
        raise _Fault("Runtime.MalformedHandlerName", f"Bad handler '{spec}': {exc}") from exc
    if module_name.split(".")[0] in sys.builtin_module_names:
        raise _Fault("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module")
    _refuse_outside(module_name.replace("/", ".").split(".")[0], task_root)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except ImportError as exc:
        raise _Fault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from exc
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise _Fault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace) from exc
    try:
        return getattr(module, function_name)
    except AttributeError as exc:
        raise _Fault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'") from exc


def _refuse_outside(top_level: str, task_root: str) -> None:
    """The handler's module must be the function's own code. On Lambda any importable module would do, but here
    the functions run as the runtime's user: a library function as the handler (`cProfile.run` executes its
    event) would let anyone who can create a function run anything."""
    spec = importlib.util.find_spec(top_level)  # a top-level name: finds, imports nothing
    if spec is None:
        return  # the import below fails with Lambda's own message
    locations = list(spec.submodule_search_locations or []) or [spec.origin or ""]
    root = os.path.realpath(task_root)
    inside = [os.path.isabs(path) and os.path.realpath(path).startswith(root + os.sep) for path in locations]
    if not all(inside):  # frozen and built-in modules have no path ("frozen", "built-in"): outside too
        raise _Fault(
            "Runtime.ImportModuleError",
            f"Unable to import module '{top_level}': the local cloud runs handlers only from the function's code "
            f"folder {task_root}, not from {', '.join(locations)}",
        )


class _ResponseEncoder(json.JSONEncoder):
    """Decimals become JSON numbers, as the Lambda runtime's encoder makes them."""

    def default(self, o: Any) -> Any:
        if isinstance(o, decimal.Decimal):
            if o.is_nan():
                return math.nan
            return int(o) if o.is_finite() and o.as_tuple().exponent >= 0 else float(o)
        return super().default(o)


def _marshal(result: Any) -> dict[str, Any]:
    if isinstance(result, bytes):
        return {"payload": result.decode("utf-8", "replace"), "raw": True}
    try:
        return {"payload": json.dumps(result, cls=_ResponseEncoder, ensure_ascii=False)}
    except (TypeError, ValueError) as exc:
        raise _Fault("Runtime.MarshalError", f"Unable to marshal response: {exc}") from exc


class _LambdaLogHandler(logging.Handler):
    """The runtime's root-logger handler: one record is one log event, whatever line breaks it holds."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record).rstrip("\n").replace("\n", _EVENT_LINE_BREAK) + "\n")
        except Exception:
            self.handleError(record)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _request_id
        return True


def _setup_logging() -> None:
    logging.Formatter.converter = time.gmtime
    handler = _LambdaLogHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"
        )
    )
    handler.addFilter(_RequestIdFilter())
    logging.getLogger().addHandler(handler)


def _max_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _end_phase() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            continue
    os.write(1, PHASE_END)


def _invoke(handler: Callable[[Any, LambdaContext], Any], request: dict[str, Any], event: bytes) -> dict[str, Any]:
    global _request_id
    _request_id = request_id = request["request_id"]
    os.environ["_X_AMZN_TRACE_ID"] = request["trace_id"]
    context = LambdaContext(
        request_id,
        request["invoked_function_arn"],
        request["deadline_ms"],
        request.get("client_context"),
        request.get("cognito_identity"),
    )
    try:
        reply = {"type": "result", **_marshal(handler(json.loads(event), context))}
    except _Fault as fault:
        reply = {"type": "error", "error": _error(fault.message, fault.error_type, fault.trace, request_id)}
    except Exception as exc:
        reply = {"type": "error", "error": _error_from_exception(exc, request_id)}
    if reply["type"] == "error":
        _log_error(reply["error"])
    _end_phase()
    return {**reply, "max_rss_kb": _max_rss_kb()}


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    task_root = os.environ["LAMBDA_TASK_ROOT"]
    os.chdir(task_root)
    # `-m` put the launch directory first on sys.path; on Lambda the task root comes first.
    sys.path[0] = task_root
    _setup_logging()
    try:
        handler = _load_handler(os.environ["_HANDLER"], task_root)
    except _Fault as fault:
        init_error = _error(fault.message, fault.error_type, fault.trace, "")
    except Exception as exc:
        init_error = _error_from_exception(exc, "")
    else:
        init_error = None
    if init_error is not None:
        _log_error(init_error)
        _end_phase()
        send_message(sock, {"type": "init_error", "error": init_error, "max_rss_kb": _max_rss_kb()})
        sys.exit(1)
    _end_phase()
    send_message(sock, {"type": "ready", "max_rss_kb": _max_rss_kb()})
    while (request := recv_message(sock)) is not None and (event := recv_frame(sock)) is not None:
        send_message(sock, _invoke(handler, request, event))


if __name__ == "__main__":
    main()
