"""The Kinesis action of the rules engine: batched PutRecords off the MQTT thread, per-key order, error action.

Records queue per (stream, partition key). Each PutRecords call carries at most one record per partition key
(the oldest waiting one), so a partial failure (FailedRecordCount) can never let a later record of that key
overtake an earlier one: the failed head is retried, with backoff, before anything behind it. Keys are served
round robin, so one chatty device cannot starve the others.

Records gather for up to `linger_s` (50 ms) before a call, or until a call's worth (500) waits: a call costs
the endpoint and this process about as much as a hundred records (moto's HTTP layer; see the README's benchmark
notes), so at thousands of messages a second calls of a few records each spent most of the pipeline's CPU.

After `max_attempts` failed tries (stream missing, throttling) the record goes to the rule's errorAction (SQS,
AWS's message shape); if there is none, or it fails too, the record is dropped and logged, as AWS does. Either
way `on_done` is called exactly once per record, which is when the MQTT message may be acked. An endpoint that
cannot be reached at all (killed, restarting) is no failed try: IoT Core would be down with it, so the records
wait, unacked, and are sent when it answers again (its Kinesis store kept everything it had acknowledged).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as EndpointUnreachable

from localcloud.runtime.iot.sql import Message

LOG = logging.getLogger(__name__)

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024
MAX_PARTITION_KEY_LENGTH = 256
ENDPOINT_RETRY_S = 0.5  # how often records wait on an unreachable endpoint are sent again


@dataclass
class Record:
    rule_name: str
    stream: str
    partition_key: str
    data: bytes
    message: Message
    error_queue_url: str | None
    on_done: Callable[[str], None]  # called once with "forwarded", "error_action" or "dropped"
    attempts: int = 0
    not_before: float = 0.0
    errors: list[str] = field(default_factory=list)


def error_action_body(record: Record) -> str:
    """AWS IoT's error action message for a failed Kinesis action."""
    return json.dumps(
        {
            "ruleName": record.rule_name,
            "topic": record.message.topic,
            "cloudwatchTraceId": record.message.trace,
            "clientId": record.message.client_id or "",
            "base64OriginalPayload": base64.b64encode(record.message.payload).decode(),
            "failures": [
                {
                    "failedAction": "KinesisAction",
                    "failedResource": record.stream,
                    "errorMessage": f"Failed to send message to Kinesis. The error received was {record.errors[-1]}. "
                    f"Message arrived on: {record.message.topic}, Action: kinesis, Stream: {record.stream}",
                }
            ],
        }
    )


class KinesisForwarder:
    def __init__(
        self,
        kinesis: Any,
        sqs: Any,
        linger_s: float = 0.05,
        max_attempts: int = 5,
        backoff_s: float = 0.05,
        settling: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
    ) -> None:
        self._kinesis = kinesis
        self._settling = settling  # what a call's on_done run in (the engine's: their acks wake MQTT once)
        self._sqs = sqs
        self._linger_s = linger_s
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._queues: dict[str, OrderedDict[str, deque[Record]]] = {}
        self._pending = 0
        self._wakeup = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="kinesis-forwarder", daemon=True)
        self._thread.start()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Send what is queued (up to `drain_timeout`), then stop; records left are never acked (redelivered)."""
        deadline = time.monotonic() + drain_timeout
        with self._wakeup:
            while self._pending and time.monotonic() < deadline:
                self._wakeup.wait(0.05)
            self._stopping = True
            self._wakeup.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=drain_timeout)

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, record: Record) -> None:
        if not 1 <= len(record.partition_key) <= MAX_PARTITION_KEY_LENGTH:
            # Kinesis rejects the whole call for one bad key, so this record fails on its own, without retries.
            record.errors.append(f"partition key {record.partition_key!r} is not 1-256 characters")
            self._give_up(record)
            return
        with self._wakeup:
            keys = self._queues.setdefault(record.stream, OrderedDict())
            keys.setdefault(record.partition_key, deque()).append(record)
            self._pending += 1
            if self._pending in (1, MAX_RECORDS_PER_CALL):  # what the sender waits for (see _run)
                self._wakeup.notify()

    # -- sender thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
                # Let more records join this call: up to the linger, or until a call's worth waits.
                self._wakeup.wait_for(lambda: self._pending >= MAX_RECORDS_PER_CALL or self._stopping, self._linger_s)
            while True:
                stream, batch, wait_s = self._next_batch()
                if batch:
                    self._send(stream, batch)
                    if self._pending >= MAX_RECORDS_PER_CALL:
                        continue
                    break  # linger again: what arrived during the call is rarely a call's worth
                if wait_s:
                    with self._wakeup:
                        self._wakeup.wait(wait_s)
                break

    def _next_batch(self) -> tuple[str, list[Record], float]:
        """Heads of the ready keys of one stream; else how long until a backed-off record is due."""
        now = time.monotonic()
        soonest: float | None = None
        with self._wakeup:
            for stream, keys in self._queues.items():
                batch: list[Record] = []
                size = 0
                for queue in keys.values():
                    head = queue[0]
                    if head.not_before > now:
                        delay = head.not_before - now
                        soonest = delay if soonest is None else min(soonest, delay)
                        continue
                    size += len(head.data) + len(head.partition_key)
                    if batch and size > MAX_BYTES_PER_CALL:
                        break
                    batch.append(head)
                    if len(batch) == MAX_RECORDS_PER_CALL:
                        break
                if batch:
                    return stream, batch, 0.0
        return "", [], soonest or 0.0

    def _send(self, stream: str, batch: list[Record]) -> None:
        entries = [{"Data": record.data, "PartitionKey": record.partition_key} for record in batch]
        try:
            results = self._kinesis.put_records(StreamName=stream, Records=entries)["Records"]
        except (EndpointUnreachable, HTTPClientError) as exc:  # refused, reset, timed out: not an answer
            LOG.warning("Kinesis endpoint unreachable, %d records wait for it: %s", len(batch), exc)
            for record in batch:
                record.not_before = time.monotonic() + ENDPOINT_RETRY_S
            return
        except (ClientError, BotoCoreError) as exc:
            results = [{"ErrorCode": type(exc).__name__, "ErrorMessage": str(exc)}] * len(batch)
        now = time.monotonic()
        forwarded: list[Record] = []
        given_up: list[Record] = []
        with self._wakeup:  # once per call, not per record: the MQTT thread queues records under this lock
            for record, result in zip(batch, results, strict=True):
                if "ErrorCode" not in result:
                    self._dequeue(record)
                    forwarded.append(record)
                    continue
                record.attempts += 1
                record.errors.append(f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}")
                if record.attempts >= self._max_attempts:
                    self._dequeue(record)
                    given_up.append(record)
                else:
                    record.not_before = now + self._backoff_s * 2 ** (record.attempts - 1)
            self._wakeup.notify_all()
        with self._settling():
            for record in forwarded:
                record.on_done("forwarded")
        for record in given_up:
            self._give_up(record)

    def _dequeue(self, record: Record) -> None:
        """Under self._wakeup."""
        keys = self._queues[record.stream]
        queue = keys[record.partition_key]
        queue.popleft()
        # Round robin: a key that still has records goes behind the others.
        del keys[record.partition_key]
        if queue:
            keys[record.partition_key] = queue
        self._pending -= 1

    def _give_up(self, record: Record) -> None:
        LOG.warning("rule %s: Kinesis action failed for %s: %s", record.rule_name, record.stream, record.errors[-1])
        if record.error_queue_url is None:
            record.on_done("dropped")
            return
        try:
            self._sqs.send_message(QueueUrl=record.error_queue_url, MessageBody=error_action_body(record))
        except (ClientError, BotoCoreError) as exc:
            LOG.error("rule %s: error action to %s failed too, message dropped: %s", record.rule_name,
                      record.error_queue_url, exc)  # fmt: skip
            record.on_done("dropped")
            return
        record.on_done("error_action")
