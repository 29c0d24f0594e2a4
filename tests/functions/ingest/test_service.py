"""ingest/service.py on in-memory fakes of its ports: classification, one write per batch, rejects copied to
their queue only after the write, and a failed write or queue send. (The PostgreSQL store, SQS and the handler run
for real in test_handler.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from common.telemetry import DEFAULT_LIMITS, Limits, RowParser
from hypothesis import given
from hypothesis import strategies as st
from ingest.batch import Batch, Reject, Source, classify
from ingest.ports import BatchNotStored, WriteResult
from ingest.service import classify_records, store_batch

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)


def source(sequence: int, document: dict | bytes, partition_key: str = "dev-a") -> Source:
    """A record as the topic rule puts it: the partition key is the topic's device (that of `reading`)."""
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()
    return Source("shardId-000000000000", str(sequence), raw, NOW.timestamp(), partition_key=partition_key)


def reading(seq: int, **fields) -> dict:
    return {"device_id": "dev-a", "ts": NOW.isoformat(), "seq": seq, "rss": -70, **fields}


class MemoryStore:
    """The TelemetryStore port: keeps every batch it is given; `down` fails the write as the adapter does."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.down = False

    def write(self, batch: Batch) -> WriteResult:
        if self.down:
            raise BatchNotStored("OperationalError: server closed the connection")
        self.batches.append(batch)
        return WriteResult(inserted=len(batch.rows) - 1, duplicates=1, rejects=list(batch.rejects))


class MemoryQueue:
    """The RejectQueue port: keeps what it is sent, refusing the sequence numbers in `refuse`."""

    def __init__(self, events: list[str]) -> None:
        self.sent: list[Reject] = []
        self.refuse: set[str] = set()
        self._events = events

    def send(self, reject: Reject) -> None:
        if reject.source.sequence_number in self.refuse:
            raise ConnectionError("SQS unreachable")
        self._events.append(f"queue {reject.source.sequence_number}")
        self.sent.append(reject)


def classified(*sources: Source, limits: Limits = DEFAULT_LIMITS) -> Batch:
    keys = [s.partition_key for s in sources]
    return classify_records([s.raw for s in sources], keys, sources.__getitem__, NOW, limits)


def test_records_become_rows_or_rejects_in_stream_order_and_none_fails():
    batch = classified(
        source(1, reading(1)),
        source(2, b"\xff not json"),
        source(3, reading(3, ts=(NOW + timedelta(hours=2)).isoformat())),
        source(4, reading(4)),
    )
    assert [row[2] for row in batch.rows] == [1, 3, 4]
    assert batch.positions == [0, 2, 3]  # the records that carried the rows
    assert [batch.source_of_row(i).sequence_number for i in range(3)] == ["1", "3", "4"]
    assert [(r.source.sequence_number, r.code, r.device_id) for r in batch.rejects] == [("2", "invalid_utf8", "dev-a")]
    assert batch.shard_id == "shardId-000000000000"
    # One clock and one set of limits for the whole batch: a reading 2 h ahead passes the default 24 h...
    strict = classified(source(3, reading(3, ts=(NOW + timedelta(hours=2)).isoformat())),
                        limits=Limits(max_future=timedelta(hours=1)))  # fmt: skip
    assert [r.code for r in strict.rejects] == ["ts_in_future"]  # ...and not a 1 h limit


def test_a_reading_whose_device_id_is_not_its_topics_device_is_rejected_under_the_topics_device():
    batch = classified(
        source(1, reading(1)),
        source(2, reading(2, device_id="dev-b")),  # dev-a's certificate, dev-b's name in the payload
        source(3, reading(3), partition_key="dev-b"),
        source(4, reading(4)),
    )
    assert [(row[0], row[2]) for row in batch.rows] == [("dev-a", 1), ("dev-a", 4)]  # device_id, seq
    assert [(r.source.sequence_number, r.code, r.device_id) for r in batch.rejects] == [
        ("2", "device_id_mismatch", "dev-a"), ("3", "device_id_mismatch", "dev-b"),
    ]  # fmt: skip
    assert "'dev-b' is not the device of its topic (partition key 'dev-a')" in batch.rejects[0].reason


# Records of every kind a batch's verdicts depend on: usual readings, of another device than their topic's, with
# extra fields, an epoch-ms ts, a ts in the future, invalid JSON.
RECORD_KINDS = [
    lambda seq: source(seq, reading(seq)),
    lambda seq: source(seq, reading(seq), partition_key="dev-b"),
    lambda seq: source(seq, reading(seq, extra={"x": seq})),
    lambda seq: source(seq, reading(seq, ts=int(NOW.timestamp() * 1000) - seq)),
    lambda seq: source(seq, reading(seq, ts=(NOW + timedelta(days=2)).isoformat())),
    lambda seq: source(seq, b"{not json"),
]


def verdicts(batch: Batch) -> tuple[list, list]:
    """The batch's rows with the sequence numbers that carried them, and its rejects."""
    rows = [(batch.source_of_row(i).sequence_number, row) for i, row in enumerate(batch.rows)]
    return rows, [(r.source.sequence_number, r.code, r.reason, r.device_id) for r in batch.rejects]


@given(st.lists(st.sampled_from(range(len(RECORD_KINDS))), max_size=8))
def test_a_batch_gives_each_record_the_verdict_it_gets_alone(kinds):
    """A batch of usual readings only takes the shortcut; among other records, each still gets its own verdict."""
    sources = [RECORD_KINDS[kind](seq) for seq, kind in enumerate(kinds)]
    alone = [verdicts(classified(one)) for one in sources]
    assert verdicts(classified(*sources)) == (
        [r for rows, _ in alone for r in rows],
        [r for _, rs in alone for r in rs],
    )


class BrokenShortcut(RowParser):
    def common_rows(self, records):
        raise TypeError("a defect")


def test_a_defect_of_the_batch_shortcut_leaves_every_verdict_to_the_checked_way_and_is_logged(caplog):
    sources = [source(1, reading(1)), source(2, b"{not json"), source(3, reading(3))]
    batch = classify([s.raw for s in sources], ["dev-a"] * 3, sources.__getitem__, BrokenShortcut(NOW))
    assert verdicts(batch) == verdicts(classified(*sources))
    assert [row[2] for row in batch.rows] == [1, 3]
    assert [(r.name, r.levelname, r.exc_info[1].args) for r in caplog.records] == [("ingest", "ERROR", ("a defect",))]


def test_a_batch_is_written_once_then_its_rejects_are_copied_to_their_queue():
    events: list[str] = []
    store, queue = MemoryStore(), MemoryQueue(events)
    batch = classified(source(1, reading(1)), source(2, b"[]"), source(3, reading(3)), source(4, b"{"))

    stored = store_batch(batch, store, queue)

    assert store.batches == [batch]
    assert [r.source.sequence_number for r in queue.sent] == ["2", "4"]
    assert (stored.inserted, stored.duplicates, stored.rejected, stored.reject_send_failures) == (1, 1, 2, 0)


def test_a_failed_write_raises_and_copies_nothing_to_the_rejects_queue():
    store, queue = MemoryStore(), MemoryQueue([])
    store.down = True

    with pytest.raises(BatchNotStored):
        store_batch(classified(source(1, reading(1)), source(2, b"[]")), store, queue)

    assert queue.sent == []  # a reject reaches the queue only once it is stored: no copy of an unstored one


def test_a_rejects_queue_that_refuses_a_copy_is_counted_and_the_other_rejects_still_go():
    queue = MemoryQueue([])
    queue.refuse = {"2"}

    stored = store_batch(classified(source(1, reading(1)), source(2, b"[]"), source(3, b"{")), MemoryStore(), queue)

    assert (stored.rejected, stored.reject_send_failures) == (2, 1)
    assert [r.source.sequence_number for r in queue.sent] == ["3"]


def test_without_a_rejects_queue_rejects_are_only_stored():
    store = MemoryStore()
    stored = store_batch(classified(source(1, reading(1)), source(2, b"[]")), store, None)
    assert (stored.rejected, stored.reject_send_failures) == (1, 0) and len(store.batches[0].rejects) == 1
