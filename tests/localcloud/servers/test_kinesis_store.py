"""The endpoint's Kinesis store on a real SQLite file: batches, restarts, expiry, positions by time.

The clock is injected (retention is at least 24 h on AWS); the HTTP-level behaviour is in
test_kinesis_durability.py."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localcloud.servers.moto_patches import kinesis_store
from localcloud.servers.moto_patches.kinesis_store import KinesisStore, ShardState


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_shard(store: KinesisStore, shard_id: str = "shardId-000000000000") -> ShardState:
    return store.shard(store.add_stream("123456789012", "us-east-1", "s", {"shards": []}), shard_id)


def stored_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM record").fetchone()[0]


def test_a_batch_is_written_at_its_end_and_a_discarded_one_leaves_nothing(tmp_path):
    store = KinesisStore(tmp_path / "k.db")
    shard = new_shard(store)
    with store.batch():
        assert [store.append(shard, "p", b"%d" % i) for i in range(3)] == [1, 2, 3]
        assert stored_count(tmp_path / "k.db") == 0  # nothing visible before the batch ends
    assert stored_count(tmp_path / "k.db") == 3

    with store.batch() as batch:
        assert store.append(shard, "p", b"lost") == 4
        batch.discard()
    assert shard.last_sequence == 3 and stored_count(tmp_path / "k.db") == 3
    assert store.append(shard, "p", b"next") == 4  # outside a batch: written at once
    assert [r[3] for r in store.read(shard, 0, 10, 0.0)] == [b"0", b"1", b"2", b"next"]


def test_a_failed_write_winds_the_counters_back(tmp_path):
    store = KinesisStore(tmp_path / "k.db")
    shard = new_shard(store)
    store.append(shard, "p", b"kept")
    with pytest.raises(sqlite3.IntegrityError), store.batch():
        store.append(shard, "p", b"fine")
        store.append(shard, None, b"no partition key")  # type: ignore[arg-type]  # NOT NULL fails the commit
    assert shard.last_sequence == 1
    assert store.append(shard, "p", b"after") == 2


def test_a_reopened_store_resumes_every_shard_after_its_last_record(tmp_path):
    clock = Clock()
    store = KinesisStore(tmp_path / "k.db", clock)
    stream_id = store.add_stream("123456789012", "us-east-1", "s", {"shards": [1, 2]})
    first, second = store.shard(stream_id, "shardId-000000000000"), store.shard(stream_id, "shardId-000000000001")
    for i in range(5):
        store.append(first, "a", b"%d" % i)
    store.append(second, "b", b"x")
    store.close()

    reopened = KinesisStore(tmp_path / "k.db", clock)
    assert [(s.name, s.document) for s in reopened.streams()] == [("s", {"shards": [1, 2]})]
    first, second = reopened.shard(stream_id, "shardId-000000000000"), reopened.shard(stream_id, "shardId-000000000001")
    assert (first.last_sequence, first.newest_arrival, second.last_sequence) == (5, clock.now, 1)
    assert reopened.append(first, "a", b"5") == 6


def test_the_counter_survives_even_when_every_record_expired(tmp_path):
    clock = Clock()
    store = KinesisStore(tmp_path / "k.db", clock)
    shard = new_shard(store)
    for _ in range(3):
        store.append(shard, "p", b"x")
    clock.now += 100
    assert store.expire(shard, not_before=clock.now) == 3
    store.close()
    reopened = KinesisStore(tmp_path / "k.db", clock)
    assert reopened.append(reopened.shard(1, "shardId-000000000000"), "p", b"y") == 4


def commit_then_die(path: Path, count: int) -> None:
    store = KinesisStore(path)
    shard = new_shard(store)
    with store.batch():
        for i in range(count):
            store.append(shard, "p", b"%d" % i)
    with store.batch():  # begun, never committed
        store.append(shard, "p", b"unacknowledged")
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_committed_batch_survives_a_sigkill_of_its_process(tmp_path):
    child = multiprocessing.get_context("spawn").Process(target=commit_then_die, args=(tmp_path / "k.db", 500))
    child.start()
    child.join(30)
    assert child.exitcode == -signal.SIGKILL
    store = KinesisStore(tmp_path / "k.db")
    shard = store.shard(1, "shardId-000000000000")
    assert shard.last_sequence == 500
    assert [r[3] for r in store.read(shard, 0, 1000, 0.0)] == [b"%d" % i for i in range(500)]


def test_records_past_the_retention_are_never_read_and_are_deleted_a_chunk_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(kinesis_store, "EXPIRY_CHUNK", 4)
    clock = Clock()
    store = KinesisStore(tmp_path / "k.db", clock)
    shard = new_shard(store)
    for i in range(10):
        store.append(shard, "p", b"old%d" % i)
        clock.now += 1
    clock.now += 100
    store.append(shard, "p", b"new")
    not_before = clock.now - 50

    assert [r[3] for r in store.read(shard, 0, 100, not_before)] == [b"new"]  # before any deletion
    assert store.oldest_sequence(shard, not_before) == 11
    assert [store.expire(shard, not_before) for _ in range(4)] == [4, 4, 2, 0]
    assert stored_count(tmp_path / "k.db") == 1
    assert [r[3] for r in store.read(shard, 0, 100, not_before)] == [b"new"]


def test_arrival_times_never_go_back_along_the_sequence(tmp_path):
    clock = Clock()
    store = KinesisStore(tmp_path / "k.db", clock)
    shard = new_shard(store)
    store.append(shard, "p", b"a")
    clock.now -= 30  # the wall clock stepped back
    store.append(shard, "p", b"b")
    arrivals = [r[1] for r in store.read(shard, 0, 10, 0.0)]
    assert arrivals == [1_000_000.0, 1_000_000.0]


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=40),
    expired=st.integers(min_value=0, max_value=40),
    probe=st.integers(min_value=-2, max_value=130),
)
def test_last_sequence_before_a_time_is_found_by_binary_search(tmp_path_factory, gaps, expired, probe):
    clock = Clock(0.0)
    store = KinesisStore(tmp_path_factory.mktemp("k") / "k.db", clock)
    shard = new_shard(store)
    arrivals = []
    for gap in gaps:  # several records may share an arrival time
        clock.now += gap
        store.append(shard, "p", b"x")
        arrivals.append(clock.now)
    expired = min(expired, len(arrivals))
    if expired:
        store.expire(shard, not_before=arrivals[expired - 1] + 0.5)
    deleted = sum(1 for arrival in arrivals if arrival < (arrivals[expired - 1] + 0.5 if expired else -1))
    kept = list(enumerate(arrivals, start=1))[deleted:]
    expected = max((sequence for sequence, arrival in kept if arrival < probe), default=deleted)
    assert store.last_sequence_before(shard, float(probe)) == expected


def test_mapping_uuids_are_remembered_until_forgotten(tmp_path):
    store = KinesisStore(tmp_path / "k.db")
    function, stream = "arn:aws:lambda:us-east-1:1:function:f", "arn:aws:kinesis:us-east-1:1:stream/s"
    assert store.mapping_uuid(function, stream) is None
    store.remember_mapping(function, stream, "uuid-1")
    store.close()
    store = KinesisStore(tmp_path / "k.db")
    assert store.mapping_uuid(function, stream) == "uuid-1"
    store.forget_mapping("uuid-1")
    assert store.mapping_uuid(function, stream) is None


def test_deleting_a_stream_deletes_its_records(tmp_path):
    store = KinesisStore(tmp_path / "k.db")
    shard = new_shard(store)
    store.append(shard, "p", b"x")
    store.delete_stream(1)
    assert store.streams() == [] and stored_count(tmp_path / "k.db") == 0


def test_the_file_is_in_wal_mode_so_readers_never_block_the_writer(tmp_path):
    KinesisStore(tmp_path / "k.db")
    with sqlite3.connect(tmp_path / "k.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
