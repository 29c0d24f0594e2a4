"""Rules engine: messages per CPU-second through IoT SQL evaluation, in this process (no broker, no Kinesis).

Per message the engine evaluates the rule (JSON in, SELECT/WHERE, JSON out) and renders the Kinesis partition
key template; both are timed here, for the project's own rule (infrastructure/stack.yaml) and for a rule that
uses several functions, CASE and a WHERE clause. The loop is timed in this process's CPU time (it is single
threaded and does no I/O), best of `REPEATS`: other work on the machine does not distort the comparison.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from benchmarks import Figure
from localcloud.config import STACK_FILE
from localcloud.runtime.iot.sql import Message, parse_rule, parse_template
from localcloud.stack.model import load_stack

MESSAGES = 20_000
DISTINCT_PAYLOADS = 1_000
REPEATS = 7
FUNCTIONS_RULE = (
    "SELECT upper(topic(2)) AS device, round(temperature * 1.8 + 32) AS temp_f, cast(rss AS String) AS rss_text,"
    " CASE firmware WHEN '1.4.2' THEN 'current' ELSE 'outdated' END AS firmware_state,"
    " substring(firmware, 0, 1) AS major, abs(rss) AS rss_abs, timestamp() AS received_at"
    " FROM 'devices/+/telemetry' WHERE startswith(topic(2), 'dev-') AND battery > 10"
)
FUNCTIONS_PARTITION_KEY = "${lower(topic(2))}"


def telemetry(count: int) -> list[tuple[str, bytes]]:
    """Readings shaped like the simulator's: (topic, payload)."""
    rng = random.Random(14)
    readings = []
    for seq in range(count):
        document = {
            "ts": 1_764_000_000_000 + seq * 1000,
            "seq": seq,
            "rss": round(rng.uniform(-110, -50), 1),
            "battery": round(rng.uniform(5, 100), 2),
            "temperature": round(rng.uniform(-5, 35), 2),
            "humidity": round(rng.uniform(20, 90), 1),
            "firmware": rng.choice(["1.4.2", "1.3.9"]),
        }
        readings.append((f"devices/dev-{seq % 50:04d}/telemetry", json.dumps(document).encode()))
    return readings


def evaluation(sql: str, partition_key: str) -> Callable[[Message], Any]:
    """What the engine does per message for one rule: one parse of the payload for the SQL and the key."""
    rule, key = parse_rule(sql), parse_template(partition_key)

    def step(message: Message) -> Any:
        ctx = rule.context(message)
        return rule.output(ctx) is not None and key.render_in(ctx)

    return step


def rate(step: Callable[[Any], Any], message: Callable[..., Any] = Message) -> float:
    """Messages per CPU-second through `step`, best of REPEATS. `step` and `message` are parameters so that a
    copy of an older engine can be measured with the same loop (how the before/after figures were taken)."""
    readings = telemetry(DISTINCT_PAYLOADS)
    messages = [
        message(topic=topic, payload=payload, received_at_ms=1_764_000_000_000, client_id="dev")
        for topic, payload in (readings[n % DISTINCT_PAYLOADS] for n in range(MESSAGES))
    ]
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for msg in messages:
            step(msg)
        best = min(best, time.process_time() - started)
    return MESSAGES / best


def run() -> list[Figure]:
    [project_rule] = load_stack(STACK_FILE).topic_rules.values()
    volume = f"{MESSAGES:,} messages of ~150 B, {DISTINCT_PAYLOADS:,} distinct readings, best of {REPEATS}"
    return [
        Figure(
            f"rules engine, project rule ({project_rule.sql})",
            "messages/CPU-s",
            rate(evaluation(project_rule.sql, project_rule.kinesis_partition_key)),
            volume,
        ),
        Figure(
            "rules engine, rule with 8 functions, CASE and WHERE",
            "messages/CPU-s",
            rate(evaluation(FUNCTIONS_RULE, FUNCTIONS_PARTITION_KEY)),
            volume,
        ),
    ]
