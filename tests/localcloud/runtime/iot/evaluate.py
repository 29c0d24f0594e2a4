"""Evaluating one expression the way a rule does, for the table-driven tests."""

from __future__ import annotations

import json
from typing import Any

from localcloud.runtime.iot.sql import Environment, Message, parse_rule

RECEIVED_AT_MS = 1_496_000_000_000  # 2017-05-28T19:33:20Z


def message(payload: Any = None, topic: str = "topic/subtopic", **facts: Any) -> Message:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload if payload is not None else {}).encode()
    return Message(topic=topic, payload=raw, received_at_ms=RECEIVED_AT_MS, **facts)


def value_of(expression: str, msg: Message | None = None, version: str = "2016-03-23", lookups: Any = None) -> Any:
    """The expression's value as IoT Core writes it (JSON text), or None when it is Undefined."""
    rule = parse_rule(f"SELECT {expression} AS r FROM '#'", version)
    output = rule.evaluate(msg or message(), Environment(rule.numbers, "123456789012", lookups))
    assert output is not None
    text = output.decode()
    return text[len('{"r":') : -1] if text != "{}" else None
