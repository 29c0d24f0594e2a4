"""Ships Lambda log events to CloudWatch Logs on the endpoint, off the invocation path.

`ship` only enqueues: a background thread writes the optional local log file and calls PutLogEvents,
creating the group `/aws/lambda/<name>` and the stream on first use. When the endpoint is down the events are
counted as dropped (and still written to the local file): logging never slows or fails an invocation.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localcloud.config import aws_session
from localcloud.servers.log_pump import RotatingLog, limits

log = logging.getLogger(__name__)

# PutLogEvents limits: 10,000 events and 1,048,576 bytes per call, each event counting 26 bytes of overhead.
_MAX_BATCH_EVENTS = 10_000
_MAX_BATCH_BYTES = 1_048_576
_EVENT_OVERHEAD = 26
_MAX_EVENT_BYTES = 256 * 1024 - _EVENT_OVERHEAD

LogEvent = tuple[int, str]  # (epoch ms, message)


def log_group_name(function_name: str) -> str:
    return f"/aws/lambda/{function_name}"


class LogShipper:
    def __init__(self, endpoint_url: str, region: str, *, log_dir: Path | None = None, max_queued: int = 10_000):
        self._client = aws_session(region).client(
            "logs",
            endpoint_url=endpoint_url,
            config=Config(connect_timeout=2, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
        )
        self._log_dir = log_dir
        self._queue: queue.Queue[tuple[str, str, list[LogEvent]] | None] = queue.Queue(maxsize=max_queued)
        self._failing = False
        self.dropped_events = 0
        self._thread = threading.Thread(target=self._run, name="lambda-log-shipper", daemon=True)
        self._thread.start()

    def ship(self, function_name: str, log_stream: str, events: Sequence[LogEvent]) -> None:
        """Queue one invocation's events; never blocks (when the queue is full, the events are dropped)."""
        try:
            self._queue.put_nowait((function_name, log_stream, list(events)))
        except queue.Full:
            self.dropped_events += len(events)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was delivered (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            items = [self._queue.get()]
            with contextlib.suppress(queue.Empty):
                while len(items) < 100:
                    items.append(self._queue.get_nowait())
            stopping = None in items
            try:
                self._deliver([item for item in items if item is not None])
            except Exception:  # the shipper must outlive any surprise; the events are lost, not the thread
                log.exception("shipping Lambda logs failed")
            finally:
                for _ in items:
                    self._queue.task_done()

    def _deliver(self, items: list[tuple[str, str, list[LogEvent]]]) -> None:
        by_stream: dict[tuple[str, str], list[LogEvent]] = {}
        for function_name, stream, events in items:
            by_stream.setdefault((function_name, stream), []).extend(events)
        for (function_name, stream), events in by_stream.items():
            ordered = _chronological(events)
            if self._log_dir is not None:
                self._append_file(function_name, ordered)
            for batch in _batches(ordered):
                self._put(log_group_name(function_name), stream, batch)

    def _append_file(self, function_name: str, events: list[LogEvent]) -> None:
        lines = "".join(
            f"{datetime.fromtimestamp(timestamp / 1000, UTC).isoformat(timespec='milliseconds')}\t{message}\n"
            for timestamp, message in events
        )
        try:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            file = RotatingLog(self._log_dir / f"lambda-{function_name}.log", *limits())  # size-bounded, as every log
            try:
                file.write(lines.encode("utf-8"))
            finally:
                file.close()
        except OSError:
            log.exception("cannot append to the Lambda log file in %s", self._log_dir)

    def _put(self, group: str, stream: str, batch: list[dict]) -> None:
        try:
            try:
                self._client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
                self._create(group, stream)
                self._client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
        except (BotoCoreError, ClientError) as exc:
            self.dropped_events += len(batch)
            if not self._failing:
                log.warning("CloudWatch Logs unavailable, Lambda log events dropped: %s", exc)
            self._failing = True
        else:
            self._failing = False

    def _create(self, group: str, stream: str) -> None:
        for create, kwargs in (
            (self._client.create_log_group, {"logGroupName": group}),
            (self._client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
        ):
            try:
                create(**kwargs)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
                    raise


def _chronological(events: list[LogEvent]) -> list[LogEvent]:
    """PutLogEvents wants non-decreasing timestamps; keep the order the lines were written in."""
    ordered, latest = [], 0
    for timestamp, message in events:
        latest = max(latest, timestamp)
        ordered.append((latest, message))
    return ordered


def _batches(events: list[LogEvent]) -> list[list[dict]]:
    batches: list[list[dict]] = [[]]
    size = 0
    for timestamp, message in events:
        encoded = message.encode("utf-8")[:_MAX_EVENT_BYTES]
        text = encoded.decode("utf-8", "ignore") or " "  # CloudWatch rejects empty messages
        cost = len(encoded) + _EVENT_OVERHEAD
        if len(batches[-1]) >= _MAX_BATCH_EVENTS or size + cost > _MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append({"timestamp": timestamp, "message": text})
        size += cost
    return [batch for batch in batches if batch]
