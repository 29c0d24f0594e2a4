"""What the ingest needs from the outside: a store for its batches and a queue for its rejects.

The adapters are postgres.PostgresTelemetryStore and sqs.SqsRejectQueue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ingest.batch import Batch, Reject


class BatchNotStored(Exception):
    """The batch's write failed (database down, connection lost, deadlock): every record must be delivered
    again. Writes are idempotent, so whatever part of the batch was stored is not stored twice."""


@dataclass(frozen=True)
class WriteResult:
    inserted: int
    duplicates: int
    rejects: list[Reject] = field(default_factory=list)  # the batch's, plus readings the database refused


class TelemetryStore(Protocol):
    def write(self, batch: Batch) -> WriteResult:
        """Store the batch's readings and rejects at once and idempotently; raises BatchNotStored."""
        ...


class RejectQueue(Protocol):
    def send(self, reject: Reject) -> None:
        """Copy a reject, already stored, to the rejects queue; raises when the queue refused it."""
        ...
