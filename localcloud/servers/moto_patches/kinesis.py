"""Kinesis patches: requests serialised like a shard, O(1)/O(log n) shard reads, no Lambda call on puts.

Each patch targets moto 5.2.5 (pinned) and says why it exists.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from typing import Any

from localcloud.servers.moto_patches.install import install

# AWS GetRecords returns at most 10,000 records and that is also its default Limit.
_GET_RECORDS_DEFAULT_LIMIT = 10_000
_KINESIS_LOCK = threading.RLock()


def apply() -> None:
    _serialise_kinesis_requests()
    _constant_time_shard_reads()
    _no_lambda_invocation_from_kinesis()


def _serialise_kinesis_requests() -> None:
    """moto's Shard.put_record reads the last sequence number then inserts (its own comment: "not safe for
    concurrency"); the threaded server runs concurrent PutRecords to one shard in parallel and records
    overwrite each other. One lock around every Kinesis request makes each request atomic, like a shard."""
    from moto.kinesis.responses import KinesisResponse

    call_action = KinesisResponse.call_action

    def serialised_call_action(self: KinesisResponse) -> Any:
        with _KINESIS_LOCK:
            return call_action(self)

    install(KinesisResponse, "call_action", serialised_call_action)


def _sequence_index(shard: Any) -> list[int]:
    """The sequence numbers of `shard.records` in order, maintained incrementally.

    moto only appends to `records` with increasing numbers (last + 1) or replaces the dict wholesale
    (split_shard); anything else (a replaced dict, fewer records) rebuilds the index.
    """
    records = shard.records
    index = shard.__dict__.get("_iotkpi_index")
    if index is None or shard.__dict__.get("_iotkpi_indexed") is not records or len(index) > len(records):
        index = list(records)
        shard._iotkpi_index, shard._iotkpi_indexed = index, records
    elif len(index) < len(records):
        newest_first = itertools.islice(reversed(records), len(records) - len(index))
        index.extend(reversed(list(newest_first)))
    return index


def _constant_time_shard_reads() -> None:
    """Shard.get_max/min_sequence_number build `list(records)` (O(n)); put_record calls the max for every
    record, so PutRecords slowed from ~8k to ~1.9k records/s as a shard filled. The dict keeps insertion
    (= sequence) order, so its ends are O(1). GetRecords scanned the whole shard from the start on every
    call (the ESM poller calls it constantly); a bisect over a sorted index makes it O(log n + Limit)."""
    from moto.kinesis.models import Shard

    def get_max_sequence_number(self: Shard) -> int:
        return next(reversed(self.records), 0)

    def get_min_sequence_number(self: Shard) -> int:
        return next(iter(self.records), 0)

    def get_sequence_number_at(self: Shard, at_timestamp: float) -> int:
        oldest = next(iter(self.records.values()), None)
        if oldest is None or at_timestamp <= oldest.created_at:
            return 0
        # Newest first: iterators AT_TIMESTAMP are usually near the tip.
        older = (r for r in reversed(self.records.values()) if r.created_at < at_timestamp)
        return next(older).sequence_number

    def get_records(self: Shard, last_sequence_id: str, limit: int | None) -> tuple[list, int, int]:
        after = int(last_sequence_id)
        index = _sequence_index(self)
        start = bisect.bisect_right(index, after)
        numbers = index[start : start + int(limit or _GET_RECORDS_DEFAULT_LIMIT)]
        if not numbers:
            return [], after, 0
        records = [self.records[number] for number in numbers]
        newest = self.records[index[-1]]
        return records, numbers[-1], int((newest.created_at - records[-1].created_at) * 1000)

    install(Shard, "get_max_sequence_number", get_max_sequence_number)
    install(Shard, "get_min_sequence_number", get_min_sequence_number)
    install(Shard, "get_sequence_number_at", get_sequence_number_at)
    install(Shard, "get_records", get_records)


def _no_lambda_invocation_from_kinesis() -> None:
    """Stream.put_record invokes every mapped Lambda itself, per record, through Docker; the local cloud's
    own ESM poller delivers batches with AWS semantics instead. It also iterated the stream's mapping dict
    while Lambda requests (outside the Kinesis lock) insert into it. This is the same method without it."""
    from moto.kinesis.models import Stream

    def put_record(self: Stream, partition_key: str, explicit_hash_key: str, data: str) -> tuple[str, str]:
        shard = self.get_shard_for_key(partition_key, explicit_hash_key)
        return shard.put_record(partition_key, data, explicit_hash_key), shard.shard_id

    install(Stream, "put_record", put_record)
