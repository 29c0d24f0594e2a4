"""One shard of one Kinesis event source mapping: a reader thread and ParallelizationFactor lane threads.

The reader keeps a shard iterator and hands records to lanes by partition key (one key, one lane, so a key's
records are never in flight twice nor out of order). Each lane builds batches, invokes the function, applies the
retry rules of `localcloud.runtime.esm.batching`, and marks records complete; the shard's checkpoint advances only past a
fully completed prefix and is persisted after each batch.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from localcloud.runtime.esm import events
from localcloud.runtime.esm.batching import (
    CheckpointTracker,
    MappingConfig,
    Outcome,
    PendingBatch,
    Record,
    Step,
    Verdict,
    backoff_seconds,
    batch_length,
    bisect,
    judge_response,
    lane_for,
    next_step,
    split_expired,
)
from localcloud.runtime.esm.checkpoints import CheckpointStore

log = logging.getLogger(__name__)

EMPTY_SHARD_PAUSE_S = 0.2
# After a read that emptied the shard: a GetRecords call costs the endpoint and the poller as much as a hundred
# records (moto's HTTP layer), so the next read lets records gather, for at most this or a quarter of the
# mapping's batching window (none without one). A read that came back full (a backlog) is followed at once.
CAUGHT_UP_PAUSE_S = 0.1
ERROR_PAUSE_S = 1.0
GET_RECORDS_LIMIT = 10_000


@dataclass(frozen=True)
class ShardContext:
    """What a shard worker needs from its mapping and the poller."""

    config: MappingConfig
    shard_id: str
    region: str
    invoke_identity_arn: str
    kinesis: Any
    invoker: Any
    store: CheckpointStore
    deliver_failure: Callable[[str, dict], None]  # (destination ARN, invocation record)
    clock: Callable[[], float]
    starting_position: str  # the mapping's, or TRIM_HORIZON for a shard that appeared later


class ShardWorker:
    def __init__(self, ctx: ShardContext) -> None:
        self.ctx = ctx
        cfg = ctx.config
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._lanes: list[deque[Record]] = [deque() for _ in range(cfg.parallelization_factor)]
        self._tracker = CheckpointTracker(checkpoint=ctx.store.get(cfg.uuid, ctx.shard_id))
        # Enough read-ahead to fill every lane's next batch, bounded so a slow function does not load the shard.
        self._read_ahead = max(2 * cfg.batch_size * cfg.parallelization_factor, 1000)
        self._last_read: str | None = None
        self._threads: list[threading.Thread] = []
        self.state = "starting"
        self.closed = False
        self.millis_behind_latest: int | None = None
        self.last_batch_at: float | None = None
        self.last_error = ""
        self.batches = 0

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> None:
        name = f"esm-{self.ctx.config.uuid[:8]}-{self.ctx.shard_id}"
        self._threads = [threading.Thread(target=self._read_loop, name=f"{name}-reader", daemon=True)]
        self._threads += [
            threading.Thread(target=self._lane_loop, args=(lane,), name=f"{name}-lane{lane}", daemon=True)
            for lane in range(len(self._lanes))
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every thread to stop; an in-flight invocation finishes, nothing new starts."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.state = "stopped"

    def status(self) -> dict[str, Any]:
        cfg = self.ctx.config
        with self._cond:
            checkpoint, behind = self._tracker.checkpoint, self._tracker.outstanding
        return {
            "uuid": cfg.uuid,
            "function": cfg.function_name,
            "stream": cfg.stream_name,
            "shard_id": self.ctx.shard_id,
            "state": self.state,
            "checkpoint_sequence": checkpoint,
            "latest_sequence": self._last_read,
            "records_behind": behind,  # read from the shard but not yet processed
            "millis_behind_latest": self.millis_behind_latest,
            "last_batch_time": events.iso_millis(self.last_batch_at) if self.last_batch_at else None,
            "last_error": self.last_error,
            "batches": self.batches,
        }

    # ---- reading ---------------------------------------------------------------------------------------------
    def _iterator(self) -> str:
        ctx = self.ctx
        # By name: moto's iterators made from a StreamARN do not resolve the stream in GetRecords.
        args: dict[str, Any] = {"StreamName": ctx.config.stream_name, "ShardId": ctx.shard_id}
        resume_after = self._last_read or self._tracker.checkpoint
        if resume_after:
            args |= {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": resume_after}
        elif ctx.starting_position == "AT_TIMESTAMP":
            args |= {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": ctx.config.starting_timestamp or 0}
        else:
            args |= {"ShardIteratorType": ctx.starting_position}
        return ctx.kinesis.get_shard_iterator(**args)["ShardIterator"]

    def _read_loop(self) -> None:
        iterator: str | None = None
        while not self._stop.is_set():
            with self._cond:
                while self._tracker.outstanding >= self._read_ahead and not self._stop.is_set():
                    self._cond.wait(0.5)
                # Read only what fits the read-ahead, so reading the next records overlaps invoking these.
                limit = min(GET_RECORDS_LIMIT, self._read_ahead - self._tracker.outstanding)
            try:
                if iterator is None:
                    iterator = self._iterator()
                    self.state = "polling"
                response = self.ctx.kinesis.get_records(ShardIterator=iterator, Limit=max(1, limit))
            except ClientError as error:
                iterator = None  # ExpiredIteratorException and the like: re-acquire after the last record read
                if error.response["Error"]["Code"] != "ExpiredIteratorException":
                    self._note_error(f"GetRecords: {error}")
                    self._stop.wait(ERROR_PAUSE_S)
                continue
            except BotoCoreError as error:
                iterator = None
                self._note_error(f"GetRecords: {error}")
                self._stop.wait(ERROR_PAUSE_S)
                continue
            records = [self._record(raw) for raw in response["Records"]]
            self.millis_behind_latest = response.get("MillisBehindLatest")
            if records:
                self._dispatch(records)
            iterator = response.get("NextShardIterator")
            if iterator is None:  # the shard was closed by resharding and is fully read
                self.closed = True
                self.state = "closed"
                return
            if not records:
                self._stop.wait(EMPTY_SHARD_PAUSE_S)
            elif len(records) < limit and (pause := min(CAUGHT_UP_PAUSE_S, self.ctx.config.batching_window_s / 4)):
                self._stop.wait(pause)

    def _record(self, raw: dict[str, Any]) -> Record:
        """A GetRecords record, as the poller's client leaves it (Data in base64, the time in epoch seconds)."""
        return events.event_record(
            shard_id=self.ctx.shard_id,
            sequence_number=raw["SequenceNumber"],
            partition_key=raw["PartitionKey"],
            data_base64=raw["Data"],
            arrival=float(raw["ApproximateArrivalTimestamp"]),
            stream_arn=self.ctx.config.stream_arn,
            region=self.ctx.region,
            invoke_identity_arn=self.ctx.invoke_identity_arn,
        )

    def _dispatch(self, records: list[Record]) -> None:
        with self._cond:
            self._tracker.add(records)
            for record in records:
                self._lanes[lane_for(record.partition_key, len(self._lanes))].append(record)
            self._last_read = records[-1].sequence_number
            self._cond.notify_all()

    # ---- batches ---------------------------------------------------------------------------------------------
    def _next_batch(self, lane: deque[Record]) -> list[Record] | None:
        """Wait for records, then up to the batching window for a full batch; None when stopping."""
        cfg = self.ctx.config
        with self._cond:
            while not lane and not self._stop.is_set():
                self._cond.wait(0.5)
            deadline = time.monotonic() + cfg.batching_window_s
            while not self._stop.is_set():
                head = list(itertools.islice(lane, cfg.batch_size))
                count = batch_length(head, cfg.batch_size)
                remaining = deadline - time.monotonic()
                if count < len(head) or len(head) >= cfg.batch_size or remaining <= 0:
                    return [lane.popleft() for _ in range(count)]
                self._cond.wait(remaining)
        return None

    def _lane_loop(self, lane_index: int) -> None:
        lane = self._lanes[lane_index]
        while not self._stop.is_set():
            batch = self._next_batch(lane)
            if batch:
                self._process(PendingBatch(batch))

    def _process(self, first: PendingBatch) -> None:
        """Work one batch to the end: success, partial successes, bisects, retries, discards."""
        cfg = self.ctx.config
        work = [first]
        while work and not self._stop.is_set():
            current = work[0]
            expired, live = split_expired(current.records, self.ctx.clock(), cfg.max_record_age_s)
            if expired:
                self._discard(expired, "RecordAgeExceeded", current)
                current.records = live
                if not live:
                    work.pop(0)
                    continue
            outcome = self._invoke(current)
            if outcome is None:  # the function could not be invoked: retry without using the retry quota
                self._stop.wait(ERROR_PAUSE_S)
                continue
            if outcome.succeeded:
                self._complete(current.records)
                work.pop(0)
                continue
            if outcome.verdict is Verdict.PARTIAL:
                self._complete(current.records[: outcome.failed_index])
                current.records = current.records[outcome.failed_index :]
            step = next_step(current, outcome, cfg.bisect_on_error, cfg.max_retry_attempts)
            if step is Step.BISECT:
                work[0:1] = bisect(current)
            elif step is Step.DISCARD:
                self._discard(current.records, "RetryAttemptsExhausted", current)
                work.pop(0)
            else:
                current.retries += 1
                self.state = "retrying"
                self._stop.wait(backoff_seconds(current.retries))

    def _invoke(self, batch: PendingBatch) -> Outcome | None:
        cfg = self.ctx.config
        event = events.event_json([record.event for record in batch.records])
        try:
            result = self.ctx.invoker.invoke_json(cfg.function_name, event)
        except Exception as error:  # any failure to reach the function is retried the same way
            self._note_error(f"invoke {cfg.function_name}: {error!r}")
            return None
        batch.invocations += 1
        batch.last_request_id = result.request_id
        self.batches += 1
        self.last_batch_at = time.time()
        outcome = judge_response(result.error, result.payload, batch.records, cfg.report_batch_item_failures)
        batch.last_function_error = "Unhandled" if outcome.verdict is Verdict.FUNCTION_ERROR else None
        if outcome.verdict is Verdict.FUNCTION_ERROR:
            self._note_error(
                f"{(result.error or {}).get('errorType', 'Error')}: {result.error.get('errorMessage', '')}"
            )
        elif outcome.verdict is Verdict.INVALID_RESPONSE:
            self._note_error(f"invalid batchItemFailures response: {json.dumps(result.payload)[:200]}")
        elif outcome.verdict is Verdict.PARTIAL:
            self._note_error(f"batch item failure at {batch.records[outcome.failed_index].sequence_number}")
        else:
            self.state = "polling"
        return outcome

    def _complete(self, records: list[Record]) -> None:
        if not records:
            return
        cfg = self.ctx.config
        with self._cond:
            if self._tracker.complete(records):
                # Under the lock, so two lanes never write checkpoints out of order.
                self.ctx.store.put(cfg.uuid, self.ctx.shard_id, self._tracker.checkpoint)
            self._cond.notify_all()

    def _discard(self, records: list[Record], condition: str, batch: PendingBatch) -> None:
        """Skip records for good; tell the OnFailure destination first (retrying that until it works)."""
        cfg = self.ctx.config
        if cfg.on_failure_destination:
            document = events.failure_record(
                records=records,
                shard_id=self.ctx.shard_id,
                stream_arn=cfg.stream_arn,
                function_arn=cfg.function_arn,
                condition=condition,
                request_id=batch.last_request_id or str(uuid.uuid4()),
                invoke_count=batch.invocations,
                function_error=batch.last_function_error,
                now=self.ctx.clock(),
            )
            while not self._stop.is_set():
                try:
                    self.ctx.deliver_failure(cfg.on_failure_destination, document)
                    break
                except (ClientError, BotoCoreError) as error:
                    self._note_error(f"OnFailure {cfg.on_failure_destination}: {error}")
                    self._stop.wait(ERROR_PAUSE_S)
            else:
                return  # stopping before the failure record was delivered: leave the records unprocessed
        log.warning("%s %s: discarded %d records (%s)", cfg.uuid, self.ctx.shard_id, len(records), condition)
        self._complete(records)

    def _note_error(self, message: str) -> None:
        self.last_error = message
        log.warning("%s %s: %s", self.ctx.config.uuid, self.ctx.shard_id, message)
