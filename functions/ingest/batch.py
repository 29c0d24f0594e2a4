"""What the ingest decides about a batch, without I/O: each record becomes a reading row or a reject.

The ingest handles thousands of records a second, so the usual record costs its bytes and its row and no
object more. Readings are kept as rows (tuples in common.telemetry.READING_COLUMNS order), the form COPY
writes. Where a record came from (its Source) is built only for the few records that need it: a reject, or
a reading the database refuses.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import NamedTuple

from common.telemetry import InvalidReading, RowParser

logger = logging.getLogger("ingest")

DEVICE_ID, TS = 0, 1  # positions in a reading row
_DEVICE_OF_ROW = itemgetter(DEVICE_ID)
HOUR = timedelta(hours=1)


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


# The Source of the record at a position of the batch (the event adapter's: it knows the records' envelope).
SourceOf = Callable[[int], Source]


@dataclass(frozen=True, slots=True)
class Reject:
    source: Source
    code: str
    reason: str
    device_id: str | None = None


@dataclass
class Batch:
    """The readings to store and the records refused, in stream order."""

    source_of: SourceOf
    rows: list[tuple] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # positions[i]: the record that carried rows[i]
    rejects: list[Reject] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows and not self.rejects

    @property
    def shard_id(self) -> str | None:
        """An event source mapping batch comes from one shard (Lambda reads each shard on its own)."""
        return None if self.empty else self.source_of(0).shard_id

    def source_of_row(self, index: int) -> Source:
        return self.source_of(self.positions[index])


def partition_days(rows: list[tuple]) -> list[date]:
    """The UTC days the readings fall in (ts is in UTC): each needs its telemetry partition before the insert."""
    return sorted({row[TS].date() for row in rows})


class DeviceSpans(NamedTuple):
    """A batch's readings as the bookkeeping needs them, summed up so that the database does not have to group
    them: each device's earliest and latest reading (the device registry's first_seen/last_seen), and a reading
    in each (device, UTC hour) that has one (the KPI job's dirty hours)."""

    device_ids: list[str]  # sorted (str order: COLLATE "C"), the order the registry's rows are locked in
    first: list[datetime]
    last: list[datetime]
    hour_device_ids: list[str]  # with hour_timestamps: one reading per (device, UTC hour), except...
    hour_timestamps: list[datetime]  # ...for a device whose readings span an hour or more: all of them


def device_spans(rows: list[tuple]) -> DeviceSpans:
    """The readings' DeviceSpans, devices sorted by device_id.

    A device whose readings span less than an hour has readings in the hours of its first and its last reading
    only, both of which are readings: those two (or one, when they share the hour) stand for all of them. Its
    first and last reading share the UTC hour when they are less than an hour apart and show the same hour in
    UTC (the parser gives every ts in UTC; another time zone gives both readings, which is never wrong).
    Comparing datetimes is cheap, where truncating them to the hour here would cost more than the rest."""
    spans: dict[str, list[datetime]] = {}
    for row in rows:
        device_id, ts = row[DEVICE_ID], row[TS]
        span = spans.get(device_id)
        if span is None:
            spans[device_id] = [ts, ts]
        elif ts < span[0]:
            span[0] = ts
        elif ts > span[1]:
            span[1] = ts
    hour_device_ids, hour_timestamps, spread = [], [], set()
    for device_id, (first, last) in spans.items():
        if last - first >= HOUR:
            spread.add(device_id)
            continue
        hour_device_ids.append(device_id)
        hour_timestamps.append(first)
        if first.hour != last.hour or first.tzinfo is not UTC:
            hour_device_ids.append(device_id)
            hour_timestamps.append(last)
    if spread:
        for row in rows:
            if row[DEVICE_ID] in spread:
                hour_device_ids.append(row[DEVICE_ID])
                hour_timestamps.append(row[TS])
    device_ids = sorted(spans)
    return DeviceSpans(
        device_ids,
        [spans[device_id][0] for device_id in device_ids],
        [spans[device_id][1] for device_id in device_ids],
        hour_device_ids,
        hour_timestamps,
    )


def classify(data: Sequence[bytes], partition_keys: Sequence[str], source_of: SourceOf, parser: RowParser) -> Batch:
    """Every record's verdict, in stream order (`data`: the records' bytes; `partition_keys`: theirs). Anything
    that is not a valid reading is a reject, never a failure, so that no record blocks the shard.

    The partition key is the device the record's topic names (the topic rule's `${topic(2)}`), which the
    broker's policy binds to the certificate's thing. The payload's `device_id` is only trusted when it
    agrees: AWS does not document which one the rule's output keeps when the device sends its own.

    The usual batch, every record a reading of the common shape from its topic's device, is decided in one pass
    (RowParser.common_rows). In any other, the records that pass could not accept go the checked way, one by one."""
    try:
        rows = parser.common_rows(data)  # None where a record needs the checked way
    except Exception:  # a defect of the shortcut must not block the shard: the checked way decides every record
        logger.exception("the batch's shortcut failed (a defect): every record goes the checked way")
        rows = [None] * len(data)
    if None not in rows and list(map(_DEVICE_OF_ROW, rows)) == list(partition_keys):
        return Batch(source_of, rows, list(range(len(rows))))  # the usual batch: every record a reading of its device
    batch = Batch(source_of)
    for position, (raw, row) in enumerate(zip(data, rows, strict=True)):
        try:
            if row is None:
                row = parser.checked_row(raw)
        except InvalidReading as invalid:
            source = source_of(position)
            # Records refused before their device_id is read (oversize, invalid JSON) still belong to a device.
            batch.rejects.append(Reject(source, invalid.code, invalid.reason, invalid.device_id or _device_of(source)))
        except Exception as exc:  # a defect of ours must not block the shard either: the raw bytes are kept
            source = source_of(position)
            reason = f"internal_error: {type(exc).__name__}: {exc}"[:1000]
            batch.rejects.append(Reject(source, "internal_error", reason, _device_of(source)))
        else:
            if row[DEVICE_ID] == partition_keys[position]:
                batch.rows.append(row)
                batch.positions.append(position)
            else:
                batch.rejects.append(_not_its_device(row[DEVICE_ID], source_of(position)))
    return batch


def _not_its_device(device_id: str, source: Source) -> Reject:
    reason = f"device_id {device_id!r:.80} is not the device of its topic (partition key {source.partition_key!r:.80})"
    return Reject(source, "device_id_mismatch", reason, _device_of(source))


def _device_of(source: Source) -> str | None:
    return source.partition_key[:128] or None
