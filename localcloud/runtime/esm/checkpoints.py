"""Persistent checkpoints of the event source mappings: one SQLite file, a row per (mapping UUID, shard).

SQLite commits are atomic, so a crash leaves either the old or the new checkpoint, never a torn file. The stored
sequence number is the last record fully processed; a restart resumes AFTER_SEQUENCE_NUMBER it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    mapping_uuid TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (mapping_uuid, shard_id)
)
"""


class CheckpointStore:
    """Thread-safe. After `close()` writes are refused silently: a stopped poller's late batch never lands."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            path, check_same_thread=False, isolation_level=None, timeout=10
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(SCHEMA)

    def get(self, mapping_uuid: str, shard_id: str) -> str | None:
        with self._lock:
            if self._conn is None:
                return None
            row = self._conn.execute(
                "SELECT sequence_number FROM checkpoint WHERE mapping_uuid = ? AND shard_id = ?",
                (mapping_uuid, shard_id),
            ).fetchone()
        return row[0] if row else None

    def put(self, mapping_uuid: str, shard_id: str, sequence_number: str) -> None:
        with self._lock:
            if self._conn is None:
                return
            self._conn.execute(
                "INSERT INTO checkpoint (mapping_uuid, shard_id, sequence_number, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (mapping_uuid, shard_id)"
                " DO UPDATE SET sequence_number = excluded.sequence_number, updated_at = excluded.updated_at",
                (mapping_uuid, shard_id, sequence_number, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
