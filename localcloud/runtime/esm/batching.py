"""Pure decisions of the Kinesis event source mapping: batches, function responses, retries, checkpoints.

No I/O here: the shard worker (`localcloud.runtime.esm.shard`) feeds records in and performs what these functions decide.
The rules follow AWS's documentation of Lambda with Kinesis ("Reporting batch item failures", "Error handling").
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

# Synchronous invocation payload limit; a batch is cut before its event would exceed it.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
# Bytes of the event envelope `{"Records":[]}` around the records (events.event_json), and between two.
EVENT_ENVELOPE_BYTES = len('{"Records":[]}')
SEPARATOR_BYTES = len(",")
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 1.0


@dataclass(frozen=True)
class Record:
    """One Kinesis record as read from the shard, with its element of the invocation event built once."""

    sequence_number: str
    partition_key: str
    arrival: float  # ApproximateArrivalTimestamp, epoch seconds
    event: str = field(default="", compare=False, repr=False)  # its element of the event, JSON text
    event_bytes: int = 0  # its size inside the JSON event

    @property
    def position(self) -> int:
        # Kinesis sequence numbers are decimal strings that only compare correctly as integers.
        return int(self.sequence_number)


@dataclass(frozen=True)
class MappingConfig:
    """The settings of one Kinesis event source mapping, with AWS's defaults filled in."""

    uuid: str
    function_arn: str
    stream_arn: str
    batch_size: int = 100
    batching_window_s: float = 0.0
    starting_position: str = "TRIM_HORIZON"
    starting_timestamp: float | None = None
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    parallelization_factor: int = 1
    on_failure_destination: str = ""
    enabled: bool = True

    @property
    def function_name(self) -> str:
        # arn:aws:lambda:region:account:function:NAME[:qualifier]
        return self.function_arn.split(":")[6] if self.function_arn.startswith("arn:") else self.function_arn

    @property
    def stream_name(self) -> str:
        return self.stream_arn.split(":stream/", 1)[1]

    @classmethod
    def from_api(cls, mapping: dict[str, Any]) -> MappingConfig:
        """Build from one item of `ListEventSourceMappings`."""
        timestamp = mapping.get("StartingPositionTimestamp")
        if timestamp is not None and hasattr(timestamp, "timestamp"):
            timestamp = timestamp.timestamp()

        def setting(key: str, default: Any) -> Any:
            value = mapping.get(key)
            return default if value is None else value

        return cls(
            uuid=mapping["UUID"],
            function_arn=mapping["FunctionArn"],
            stream_arn=mapping["EventSourceArn"],
            batch_size=int(setting("BatchSize", 100)),
            batching_window_s=float(setting("MaximumBatchingWindowInSeconds", 0)),
            starting_position=setting("StartingPosition", "TRIM_HORIZON"),
            starting_timestamp=float(timestamp) if timestamp is not None else None,
            report_batch_item_failures="ReportBatchItemFailures" in (mapping.get("FunctionResponseTypes") or []),
            bisect_on_error=bool(setting("BisectBatchOnFunctionError", False)),
            max_retry_attempts=int(setting("MaximumRetryAttempts", -1)),
            max_record_age_s=int(setting("MaximumRecordAgeInSeconds", -1)),
            parallelization_factor=max(1, int(setting("ParallelizationFactor", 1))),
            on_failure_destination=((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination", ""
            ),
            enabled=mapping.get("State", "Enabled") not in ("Disabled", "Disabling", "Deleting"),
        )


def lane_for(partition_key: str, lanes: int) -> int:
    """The concurrent lane of a shard that carries every record of this partition key (ParallelizationFactor)."""
    return zlib.crc32(partition_key.encode()) % lanes


def batch_length(records: Sequence[Record], batch_size: int, max_bytes: int = MAX_PAYLOAD_BYTES) -> int:
    """How many leading records form the next batch: at most batch_size, and the event stays under max_bytes.

    Always at least one record when there are any (a single Kinesis record is far below the cap).
    """
    total = EVENT_ENVELOPE_BYTES
    count = 0
    for record in records[:batch_size]:
        extra = record.event_bytes + (SEPARATOR_BYTES if count else 0)
        if count and total + extra > max_bytes:
            break
        total += extra
        count += 1
    return count


class Verdict(Enum):
    SUCCESS = "success"
    PARTIAL = "partial"  # records before `failed_index` succeeded
    FUNCTION_ERROR = "function_error"  # unhandled error or timeout
    INVALID_RESPONSE = "invalid_response"  # a batchItemFailures answer Lambda cannot use: whole batch failed


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    failed_index: int = 0  # index in the batch of the first record to retry (0 = whole batch)

    @property
    def succeeded(self) -> bool:
        return self.verdict is Verdict.SUCCESS


def judge_response(
    error: dict | None, payload: Any, batch: Sequence[Record], report_batch_item_failures: bool
) -> Outcome:
    """What an invocation's result means for the batch (AWS "Success and failure conditions")."""
    if error is not None:
        return Outcome(Verdict.FUNCTION_ERROR)
    if not report_batch_item_failures or payload is None:
        return Outcome(Verdict.SUCCESS)
    if not isinstance(payload, dict):
        return Outcome(Verdict.INVALID_RESPONSE)
    failures = payload.get("batchItemFailures")
    if not failures:  # missing key, null or empty list
        return Outcome(Verdict.SUCCESS)
    if not isinstance(failures, list):
        return Outcome(Verdict.INVALID_RESPONSE)
    index_of = {record.sequence_number: index for index, record in enumerate(batch)}
    failed: list[int] = []
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in index_of:
            return Outcome(Verdict.INVALID_RESPONSE)
        failed.append(index_of[identifier])
    # Checkpoint at the lowest failed sequence number; retry everything from there.
    return Outcome(Verdict.PARTIAL, failed_index=min(failed))


@dataclass
class PendingBatch:
    """A batch being worked on: its records, the retries it has used and the invocations it has had."""

    records: list[Record]
    retries: int = 0
    invocations: int = 0
    last_request_id: str = ""
    last_function_error: str | None = None


class Step(Enum):
    RETRY = "retry"
    BISECT = "bisect"
    DISCARD = "discard"  # retries exhausted: report to OnFailure and move on


def next_step(batch: PendingBatch, outcome: Outcome, bisect_on_error: bool, max_retry_attempts: int) -> Step:
    """After a failed invocation whose successful prefix was already removed from `batch.records`.

    Splitting a batch does not count towards the retry quota (AWS "Error handling"); a batch that cannot be
    split any more (one record) uses retries. Bisect applies to function errors only.
    """
    if outcome.verdict is Verdict.FUNCTION_ERROR and bisect_on_error and len(batch.records) > 1:
        return Step.BISECT
    if max_retry_attempts != -1 and batch.retries >= max_retry_attempts:
        return Step.DISCARD
    return Step.RETRY


def bisect(batch: PendingBatch) -> tuple[PendingBatch, PendingBatch]:
    middle = len(batch.records) // 2
    return PendingBatch(batch.records[:middle]), PendingBatch(batch.records[middle:])


def split_expired(records: Sequence[Record], now: float, max_record_age_s: int) -> tuple[list[Record], list[Record]]:
    """(records older than MaximumRecordAgeInSeconds, the rest); -1 means records never expire."""
    if max_record_age_s == -1:
        return [], list(records)
    expired = [r for r in records if now - r.arrival > max_record_age_s]
    live = [r for r in records if now - r.arrival <= max_record_age_s]
    return expired, live


def backoff_seconds(retries: int) -> float:
    """Pause before retry number `retries` (1-based): short and growing, so local tests stay quick."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, retries - 1))


@dataclass
class CheckpointTracker:
    """Which sequence number a shard may be checkpointed at when batches finish out of order.

    Records are `add`ed in shard order; lanes `complete` them in any order. The checkpoint is the last record
    of the longest fully completed prefix, so a restart never skips a record that is still in flight.
    """

    _order: list[int] = field(default_factory=list)  # positions in shard order, not yet behind the checkpoint
    _done: set[int] = field(default_factory=set)
    _head: int = 0  # index in _order of the first record not yet completed
    checkpoint: str | None = None

    def add(self, records: Sequence[Record]) -> None:
        self._order.extend(record.position for record in records)

    def complete(self, records: Sequence[Record]) -> bool:
        """Mark records done; True when the checkpoint moved."""
        self._done.update(record.position for record in records)
        moved = False
        while self._head < len(self._order) and self._order[self._head] in self._done:
            self._done.discard(self._order[self._head])
            self.checkpoint = str(self._order[self._head])
            self._head += 1
            moved = True
        if self._head > 4096:  # drop the completed prefix now and then instead of on every call
            del self._order[: self._head]
            self._head = 0
        return moved

    @property
    def outstanding(self) -> int:
        """Records read from the shard and not yet completed."""
        return len(self._order) - self._head
