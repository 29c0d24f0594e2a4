"""Probe handler: `event["action"]` picks a behaviour; every answer says which environment served it.

Module-level state lives as long as the execution environment, so `invocations` counts warm reuse and
`pid` identifies the environment (a new pid means a cold start).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time

print("probe module imported")  # init-phase output

_invocations = 0


class ProbeError(Exception):
    """Raised on purpose by the `raise` action."""


def _environment() -> dict:
    return {"invocations": _invocations, "pid": os.getpid()}


def _echo(event, context):
    return {"event": event, **_environment()}


def _environ(event, context):
    return {"environ": dict(os.environ), "cwd": os.getcwd(), **_environment()}


def _context(event, context):
    first = context.get_remaining_time_in_millis()
    time.sleep(event.get("pause_s", 0.05))
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id, context.identity.cognito_identity_pool_id],
        "client_context": context.client_context,
        "remaining_ms": [first, context.get_remaining_time_in_millis()],
    }


def _sleep(event, context):
    started = time.time()
    time.sleep(event["seconds"])
    return {"started": started, "finished": time.time(), **_environment()}


def _raise(event, context):
    raise ProbeError(event["message"])


def _exit(event, context):
    os._exit(event.get("status", 1))


def _segfault(event, context):
    ctypes.string_at(0)


def _log(event, context):
    for line in event["lines"]:
        print(line)
    logging.getLogger().warning("logged through the root logger\nsecond line of the same record")
    return _environment()


def _unserialisable(event, context):
    return {"a set": {1, 2}}


def _powertools(event, context):
    from aws_lambda_powertools import Logger

    logger = Logger(service="probe")

    @logger.inject_lambda_context
    def handle(event, context):
        logger.info("powertools logger says hello")
        return _environment()

    return handle(event, context)


_ACTIONS = {
    "echo": _echo,
    "environ": _environ,
    "context": _context,
    "sleep": _sleep,
    "raise": _raise,
    "exit": _exit,
    "segfault": _segfault,
    "log": _log,
    "unserialisable": _unserialisable,
    "powertools": _powertools,
}


def lambda_handler(event, context):
    global _invocations
    _invocations += 1
    return _ACTIONS[event.get("action", "echo")](event, context)
