"""Kinesis event adapter: an event source mapping batch's records, as the ingest service takes them.

Read straight from the records' dicts, in one pass: powertools' data classes (and its BatchProcessor, which
wraps every record in one) cost a few microseconds a record, a large share of the ingest's budget. A
record's Source is built only when asked for (a reject). The batch's data is base64-decoded by msgspec in
one call, in half the instructions of binascii's decoder; msgspec takes only canonical base64, which it
decodes to the same bytes, so a batch it refuses is read again record by record with a2b_base64 (what
base64.b64decode runs, and as lenient).
"""

from __future__ import annotations

from binascii import a2b_base64

import msgspec

from ingest.batch import Source


class KinesisRecords:
    """`data[i]`: the decoded bytes of the i-th readable record, in stream order; `unreadable`: the sequence
    numbers of records whose data is not base64 (a record the handler cannot read fails on its own, as with
    powertools' BatchProcessor, so that the mapping's retries and OnFailure destination deal with it)."""

    def __init__(self, records: list[dict]) -> None:
        self._records = records
        self._readable: list[int] | None = None  # positions of the readable records, when not all are
        self.unreadable: list[str] = []
        try:
            self.data = msgspec.convert([record["kinesis"]["data"] for record in records], list[bytes])
        except (KeyError, msgspec.ValidationError):  # no data, or data not (canonical) base64
            self._read_one_by_one()

    def _read_one_by_one(self) -> None:
        self.data, self._readable = [], []
        for position, record in enumerate(self._records):
            kinesis = record["kinesis"]
            try:
                self.data.append(a2b_base64(kinesis["data"]))
            except (KeyError, TypeError, ValueError):  # no data, not a string, not base64 (binascii.Error)
                self.unreadable.append(kinesis["sequenceNumber"])
            else:
                self._readable.append(position)

    def source(self, position: int) -> Source:
        """Where the record of `data[position]` came from."""
        record = self._records[position if self._readable is None else self._readable[position]]
        kinesis = record["kinesis"]
        return Source(
            shard_id=shard_of(record["eventID"]),
            sequence_number=kinesis["sequenceNumber"],
            raw=self.data[position],
            arrival_timestamp=kinesis.get("approximateArrivalTimestamp"),
            partition_key=kinesis.get("partitionKey", ""),
        )

    def partition_keys(self) -> list[str]:
        """The partition key of each record of `data`, in the same order."""
        records = self._records if self._readable is None else [self._records[i] for i in self._readable]
        return [record["kinesis"].get("partitionKey", "") for record in records]

    def sequence_numbers(self) -> list[str]:
        """Every record's, in stream order."""
        return [record["kinesis"]["sequenceNumber"] for record in self._records]

    def __len__(self) -> int:
        return len(self._records)


def shard_of(event_id: str) -> str:
    """Kinesis eventID is '<shardId>:<sequenceNumber>'."""
    return event_id.split(":", 1)[0]
