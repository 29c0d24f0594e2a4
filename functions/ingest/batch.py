"""What the ingest decides about a batch, without I/O: each record becomes a reading row or a reject.

Readings are kept as rows (tuples in common.telemetry.READING_COLUMNS order), the form COPY writes: the
ingest handles thousands of records a second, and a row costs less to build than an object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import NamedTuple

from common.telemetry import InvalidReading, RowParser

DEVICE_ID, TS = 0, 1  # positions in a reading row


class Source(NamedTuple):
    """Where a record came from: enough to find it again and to store it as it was."""

    shard_id: str
    sequence_number: str
    raw: bytes
    arrival_timestamp: float | None  # Kinesis approximateArrivalTimestamp, epoch seconds
    partition_key: str = ""  # the topic rule sets it to the device id (from the topic)

    @property
    def arrived_at(self) -> datetime | None:
        return None if self.arrival_timestamp is None else datetime.fromtimestamp(self.arrival_timestamp, UTC)


@dataclass(frozen=True, slots=True)
class Reject:
    source: Source
    code: str
    reason: str
    device_id: str | None = None


@dataclass
class Batch:
    """The readings to store and the records refused, in stream order."""

    rows: list[tuple] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)  # sources[i] carried rows[i]
    rejects: list[Reject] = field(default_factory=list)
    # An event source mapping batch comes from one shard (Lambda reads each shard on its own).
    shard_id: str | None = None

    def add(self, outcome: tuple | Reject, source: Source) -> None:
        if self.shard_id is None:
            self.shard_id = source.shard_id
        if type(outcome) is tuple:
            self.rows.append(outcome)
            self.sources.append(source)
        else:
            self.rejects.append(outcome)

    @property
    def empty(self) -> bool:
        return not self.rows and not self.rejects


def partition_days(rows: list[tuple]) -> list[date]:
    """The UTC days the readings fall in (ts is in UTC): each needs its telemetry partition before the insert."""
    return sorted({row[TS].date() for row in rows})


def classify(source: Source, parser: RowParser) -> tuple | Reject:
    """A record's verdict. Anything that is not a valid reading is a reject, so it never blocks the shard."""
    try:
        return parser(source.raw)
    except InvalidReading as invalid:
        # Records refused before their device_id is read (oversize, invalid JSON) still belong to a device.
        return Reject(source, invalid.code, invalid.reason, invalid.device_id or _device_of(source))
    except Exception as exc:  # a defect of ours must not block the shard either: the raw bytes are kept
        reason = f"internal_error: {type(exc).__name__}: {exc}"[:1000]
        return Reject(source, "internal_error", reason, _device_of(source))


def _device_of(source: Source) -> str | None:
    return source.partition_key[:128] or None


def shard_of(event_id: str) -> str:
    """Kinesis eventID is '<shardId>:<sequenceNumber>'."""
    return event_id.split(":", 1)[0]
