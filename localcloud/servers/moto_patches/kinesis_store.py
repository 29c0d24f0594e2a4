"""The local endpoint's Kinesis streams on disk: one SQLite file in WAL mode, written before PutRecords answers.

moto keeps records in memory, so a killed endpoint lost every record it had accepted, and its memory grew with
every record. Here a shard holds no records in memory at all: each PutRecord(s) request appends its records and
advances the shard's sequence counter in one transaction, committed before the response is sent, and GetRecords
reads from the file. With WAL and synchronous=NORMAL a commit is a write() into the OS page cache: it survives a
kill of the endpoint process (not a power cut, which the local cloud does not promise to survive).

Stream metadata (shards, hash ranges, retention, tags) and the event source mappings' UUIDs are kept too, so a
restarted endpoint serves the same streams with sequence numbers that keep increasing, and shard iterators and
the ESM poller's checkpoints stay valid; so are the IoT topic rules that put into the streams (iot_rules.py).
Records older than the stream's retention are never returned and are deleted a chunk at a time.

Sequence numbers of a shard are contiguous (1, 2, 3, ...) and arrival times never decrease along them, so the
record at a point in time is found by binary search over the primary key: no second index to write per record.

Thread-safe (one connection behind one lock): kinesis.py calls it under its Kinesis request lock, Lambda and IoT
requests save mapping UUIDs and topic rules from their own threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DB_ENV = "LOCALCLOUD_KINESIS_DB"
# Seconds added to the store's clock: lets tests see records expire without waiting for the 24 h minimum retention.
CLOCK_OFFSET_ENV = "LOCALCLOUD_KINESIS_CLOCK_OFFSET"
IN_MEMORY = ":memory:"
EXPIRY_INTERVAL_S = 1.0  # how often a shard in use looks for expired records
EXPIRY_CHUNK = 20_000  # records deleted per look, so one request never holds the lock for long

SCHEMA = """
CREATE TABLE IF NOT EXISTS stream (
    stream_id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shard (
    shard_key INTEGER PRIMARY KEY,
    stream_id INTEGER NOT NULL REFERENCES stream,
    shard_id TEXT NOT NULL,
    last_sequence INTEGER NOT NULL,
    UNIQUE (stream_id, shard_id)
);
CREATE TABLE IF NOT EXISTS record (
    shard_key INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    arrived_at REAL NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (shard_key, sequence)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mapping (
    function_arn TEXT NOT NULL,
    event_source_arn TEXT NOT NULL,
    uuid TEXT NOT NULL,
    PRIMARY KEY (function_arn, event_source_arn)
);
CREATE TABLE IF NOT EXISTS topic_rule (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (account, region, name)
);
"""


# (sequence number, arrival epoch seconds, partition key, data): plain tuples, as SQLite returns them, because
# GetRecords returns up to 10,000 at a time and an object per record cost more than reading them.
StoredRecord = tuple[int, float, str, bytes]


@dataclass(frozen=True)
class StoredStream:
    stream_id: int
    account: str
    region: str
    name: str
    document: dict[str, Any]


@dataclass
class ShardState:
    """What the endpoint keeps in memory of a shard: counters, never records."""

    key: int
    last_sequence: int
    newest_arrival: float = 0.0
    expired_through: int = 0  # every record up to here is expired (as of the last look)
    deleted_through: int = 0  # every record up to here is gone from the file
    next_expiry_look: float = 0.0  # monotonic time


@dataclass
class Batch:
    """The appends of one request: written together, or not at all."""

    rows: list[tuple[int, int, float, str, bytes]] = field(default_factory=list)
    counters: dict[int, tuple[ShardState, int, float]] = field(default_factory=dict)  # key -> state, its values before
    discarded: bool = False

    def discard(self) -> None:
        self.discarded = True


class KinesisStore:
    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        if str(path) != IN_MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self.clock = clock
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL: a commit reaches the OS before PutRecords answers; only a power cut could lose the last ones.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(f"PRAGMA journal_size_limit={64 * 1024 * 1024}")
        self._conn.executescript(SCHEMA)
        self._lock = threading.RLock()
        self._batch: Batch | None = None

    @classmethod
    def from_environment(cls) -> KinesisStore:
        """The endpoint's store: the file named by LOCALCLOUD_KINESIS_DB, else one in memory (a bare endpoint,
        as tests start it, keeps nothing)."""
        offset = float(os.environ.get(CLOCK_OFFSET_ENV) or 0)
        return cls(os.environ.get(DB_ENV) or IN_MEMORY, clock=lambda: time.time() + offset)

    def close(self) -> None:
        self._conn.close()

    # -- streams -----------------------------------------------------------------------------------------------
    def streams(self) -> list[StoredStream]:
        with self._lock:
            rows = self._conn.execute("SELECT stream_id, account, region, name, document FROM stream ORDER BY 1")
            return [StoredStream(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows.fetchall()]

    def add_stream(self, account: str, region: str, name: str, document: dict[str, Any]) -> int:
        """A new stream's metadata; its id."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO stream (account, region, name, document) VALUES (?, ?, ?, ?)",
                (account, region, name, json.dumps(document, sort_keys=True)),
            )
        return int(cursor.lastrowid)

    def update_stream(self, stream_id: int, document: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "UPDATE stream SET document = ? WHERE stream_id = ?", (json.dumps(document, sort_keys=True), stream_id)
            )

    def delete_stream(self, stream_id: int) -> None:
        """The stream, its shards and all its records."""
        with self._lock, self._transaction():
            keys = [k for (k,) in self._conn.execute("SELECT shard_key FROM shard WHERE stream_id = ?", (stream_id,))]
            self._conn.executemany("DELETE FROM record WHERE shard_key = ?", [(k,) for k in keys])
            self._conn.execute("DELETE FROM shard WHERE stream_id = ?", (stream_id,))
            self._conn.execute("DELETE FROM stream WHERE stream_id = ?", (stream_id,))

    # -- shards ------------------------------------------------------------------------------------------------
    def shard(self, stream_id: int, shard_id: str) -> ShardState:
        """A shard's state, created on first use; a known shard resumes after its last committed record."""
        with self._lock:
            row = self._conn.execute(
                "SELECT shard_key, last_sequence FROM shard WHERE stream_id = ? AND shard_id = ?", (stream_id, shard_id)
            ).fetchone()
            if row is None:
                cursor = self._conn.execute(
                    "INSERT INTO shard (stream_id, shard_id, last_sequence) VALUES (?, ?, 0)", (stream_id, shard_id)
                )
                return ShardState(key=int(cursor.lastrowid), last_sequence=0)
            key, last_sequence = row
            newest = self._conn.execute(
                "SELECT arrived_at FROM record WHERE shard_key = ? AND sequence = ?", (key, last_sequence)
            ).fetchone()
            return ShardState(key=key, last_sequence=last_sequence, newest_arrival=newest[0] if newest else 0.0)

    # -- writes ------------------------------------------------------------------------------------------------
    @property
    def now(self) -> float:
        return self.clock()

    @contextlib.contextmanager
    def batch(self) -> Iterator[Batch]:
        """Appends inside the scope are committed in one transaction when the outermost scope exits; an exception
        or `discard()` drops them and winds the shards' counters back."""
        with self._lock:
            outermost = self._batch is None
            if outermost:
                self._batch = Batch()
            batch = self._batch
            try:
                yield batch
            except BaseException:
                batch.discard()
                raise
            finally:
                if outermost:
                    self._batch = None
                    self._finish(batch)

    def append(self, shard: ShardState, partition_key: str, data: bytes) -> int:
        """The record's sequence number; written with the enclosing batch (or at once when there is none)."""
        with self._lock:  # a batch holds the lock for its whole scope: one seen here is this thread's
            if self._batch is None:
                with self.batch():
                    return self.append(shard, partition_key, data)
            batch = self._batch
            if shard.key not in batch.counters:
                batch.counters[shard.key] = (shard, shard.last_sequence, shard.newest_arrival)
            shard.last_sequence += 1
            # Never earlier than the shard's newest: reads by time rely on arrival order = sequence order.
            shard.newest_arrival = max(self.clock(), shard.newest_arrival)
            batch.rows.append((shard.key, shard.last_sequence, shard.newest_arrival, partition_key, data))
            return shard.last_sequence

    def _finish(self, batch: Batch) -> None:
        if batch.discarded:
            self._wind_back(batch)
            return
        if not batch.rows:
            return
        try:
            with self._transaction():
                self._conn.executemany(
                    "INSERT INTO record (shard_key, sequence, arrived_at, partition_key, data) VALUES (?, ?, ?, ?, ?)",
                    batch.rows,
                )
                self._conn.executemany(
                    "UPDATE shard SET last_sequence = ? WHERE shard_key = ?",
                    [(state.last_sequence, key) for key, (state, _, _) in batch.counters.items()],
                )
        except BaseException:
            self._wind_back(batch)
            raise

    @staticmethod
    def _wind_back(batch: Batch) -> None:
        for state, last_sequence, newest_arrival in batch.counters.values():
            state.last_sequence, state.newest_arrival = last_sequence, newest_arrival

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Under self._lock."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- reads -------------------------------------------------------------------------------------------------
    def read(self, shard: ShardState, after: int, limit: int, not_before: float) -> list[StoredRecord]:
        """Up to `limit` records after sequence `after` that arrived at or after `not_before` (the retention)."""
        with self._lock:
            return self._conn.execute(
                "SELECT sequence, arrived_at, partition_key, data FROM record"
                " WHERE shard_key = ? AND sequence > ? AND arrived_at >= ? ORDER BY sequence LIMIT ?",
                (shard.key, max(after, shard.expired_through), not_before, limit),
            ).fetchall()

    def oldest_sequence(self, shard: ShardState, not_before: float) -> int:
        """The oldest record kept (0 when the shard holds none)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT sequence FROM record WHERE shard_key = ? AND sequence > ? AND arrived_at >= ?"
                " ORDER BY sequence LIMIT 1",
                (shard.key, shard.expired_through, not_before),
            ).fetchone()
        return row[0] if row else 0

    def last_sequence_before(self, shard: ShardState, timestamp: float) -> int:
        """The last record that arrived before `timestamp` (0 when none did)."""
        low, high = shard.deleted_through, shard.last_sequence  # the answer is in [low, high]
        with self._lock:
            while low < high:
                middle = (low + high + 1) // 2
                row = self._conn.execute(
                    "SELECT sequence, arrived_at FROM record WHERE shard_key = ? AND sequence >= ?"
                    " ORDER BY sequence LIMIT 1",
                    (shard.key, middle),
                ).fetchone()
                if row is not None and row[1] < timestamp:
                    low = row[0]
                else:
                    high = middle - 1
        return low

    # -- expiry ------------------------------------------------------------------------------------------------
    @staticmethod
    def expiry_due(shard: ShardState) -> bool:
        return time.monotonic() >= shard.next_expiry_look

    def expire(self, shard: ShardState, not_before: float) -> int:
        """Forget the records that arrived before `not_before`, at most EXPIRY_CHUNK of them per call (the next
        call carries on); how many were deleted. Callers look about once a second (`expiry_due`)."""
        with self._lock:
            return self._expire(shard, not_before, time.monotonic())

    def _expire(self, shard: ShardState, not_before: float, now: float) -> int:
        shard.expired_through = max(shard.expired_through, self.last_sequence_before(shard, not_before))
        through = min(shard.expired_through, shard.deleted_through + EXPIRY_CHUNK)
        deleted = 0
        if through > shard.deleted_through:
            with self._transaction():
                cursor = self._conn.execute(
                    "DELETE FROM record WHERE shard_key = ? AND sequence <= ?", (shard.key, through)
                )
            deleted = cursor.rowcount
            shard.deleted_through = through
        more = shard.deleted_through < shard.expired_through
        shard.next_expiry_look = now if more else now + EXPIRY_INTERVAL_S
        return deleted

    # -- event source mappings ---------------------------------------------------------------------------------
    def mapping_uuid(self, function_arn: str, event_source_arn: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT uuid FROM mapping WHERE function_arn = ? AND event_source_arn = ?",
                (function_arn, event_source_arn),
            ).fetchone()
        return row[0] if row else None

    def remember_mapping(self, function_arn: str, event_source_arn: str, uuid: str) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO mapping (function_arn, event_source_arn, uuid) VALUES (?, ?, ?)"
                " ON CONFLICT (function_arn, event_source_arn) DO UPDATE SET uuid = excluded.uuid",
                (function_arn, event_source_arn, uuid),
            )

    def forget_mapping(self, uuid: str) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM mapping WHERE uuid = ?", (uuid,))

    # -- IoT topic rules ---------------------------------------------------------------------------------------
    def topic_rules(self) -> list[tuple[str, str, str, dict[str, Any]]]:
        """(account, region, rule name, document) of every rule kept."""
        with self._lock:
            rows = self._conn.execute("SELECT account, region, name, document FROM topic_rule ORDER BY 1, 2, 3")
            return [(r[0], r[1], r[2], json.loads(r[3])) for r in rows.fetchall()]

    def save_topic_rules(self, account: str, region: str, documents: dict[str, dict[str, Any]]) -> None:
        """The rules of one account and region, replacing what was kept for it."""
        with self._lock, self._transaction():
            self._conn.execute("DELETE FROM topic_rule WHERE account = ? AND region = ?", (account, region))
            self._conn.executemany(
                "INSERT INTO topic_rule (account, region, name, document) VALUES (?, ?, ?, ?)",
                [(account, region, name, json.dumps(d, sort_keys=True)) for name, d in documents.items()],
            )
