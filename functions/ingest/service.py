"""The ingest's use case: a Kinesis batch's records -> readings and rejects -> one write -> rejects to their queue.

The event adapter hands over the records' bytes and partition keys in stream order (`classify_records`):
every record becomes a reading or a reject, never a failure, so a poison record cannot block the shard. Records are validated
against one clock per batch (a RowParser) and kept as COPY rows, not objects: at thousands of records a
second the per-record microseconds are the ingest's cost.

The batch is then written once (`store_batch`; the TelemetryStore port stores readings, rejects, dirty hours,
devices and the ingest_stats counters in one transaction). A write that fails raises BatchNotStored: the
handler then reports every record of the batch failed, so that the event source mapping checkpoints before
the first one and delivers the batch again, and the idempotent write stores each reading exactly once. Only
a stored batch's rejects are copied to the rejects queue (not the mapping's on-failure queue: a reject is
no lost reading, and nothing needs to consume the copies).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from common.telemetry import Limits, RowParser

from ingest.batch import Batch, Reject, SourceOf, classify
from ingest.ports import RejectQueue, TelemetryStore

logger = logging.getLogger("ingest")


def classify_records(
    data: Sequence[bytes], partition_keys: Sequence[str], source_of: SourceOf, now: datetime, limits: Limits
) -> Batch:
    """A batch's records (`data`, `partition_keys`: theirs in stream order; `source_of`: where the one at a
    position came from) as readings and rejects, against one clock."""
    return classify(data, partition_keys, source_of, RowParser(now, limits))


@dataclass(frozen=True)
class Stored:
    """What became of a stored batch's records."""

    inserted: int
    duplicates: int
    rejected: int
    reject_send_failures: int  # rejects stored but not copied to the rejects queue


def store_batch(batch: Batch, store: TelemetryStore, queue: RejectQueue | None) -> Stored:
    """Write the batch once, then copy its rejects to their queue (if any). Raises BatchNotStored when
    the write fails: the caller must then have every record of the batch delivered again."""
    result = store.write(batch)
    failures = publish_rejects(result.rejects, queue)
    return Stored(result.inserted, result.duplicates, len(result.rejects), failures)


def publish_rejects(rejects: list[Reject], queue: RejectQueue | None) -> int:
    """Log the rejects, already committed to ingest_rejects, and copy them to the queue; returns the failed sends.

    A failed send does not fail the record: the rejects table already holds its raw bytes and reason, and
    failing it would hold back every reading behind it on the shard for as long as SQS is unreachable (a
    reject must never block the shard). The failure is logged and counted (RejectSendFailures) for alarms.
    """
    failures = 0
    for reject in rejects:
        logger.warning(
            "record rejected",
            extra={"reason": reject.reason, "device_id": reject.device_id,
                   "shard_id": reject.source.shard_id, "sequence_number": reject.source.sequence_number},
        )  # fmt: skip
        if queue is None:
            continue
        try:
            queue.send(reject)
        except Exception:
            logger.exception("reject not sent to its queue", extra={"sequence_number": reject.source.sequence_number})
            failures += 1
    return failures
