"""PostgreSQL adapter, the batch write: one transaction holds the readings, the KPI job's dirty hours, the
device registry, the rejects and the batch's line in ingest_stats. Either all of the batch is stored or none
of it, and a redelivered batch adds nothing (the primary key (device_id, ts, seq) turns repeats into counted
duplicates).

Two ways in for the readings, because COPY has no ON CONFLICT:
- direct: COPY straight into telemetry, under a savepoint. This is the usual case (readings new), and costs
  what a bare COPY costs. A reading already stored makes it fail with a unique violation (for a redelivered
  batch at its first row, so little is wasted);
- staged: then the savepoint is rolled back, the rows are COPied into a temporary table, and
  INSERT ... SELECT ... ON CONFLICT DO NOTHING takes the new ones.
Either way one statement then does the bookkeeping (statements.py), from the readings actually inserted.
Any other database error is raised as BatchNotStored: the batch is delivered again, and the write being
idempotent, what it may have stored (one reading at a time) is not stored twice.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
from common.db import Database
from psycopg.types.json import set_json_dumps

from ingest.batch import DEVICE_ID, TS, Batch, Reject, partition_days
from ingest.ports import BatchNotStored, WriteResult
from ingest.statements import (
    BOOKKEEPING_AFTER_COPY,
    COLUMN_TYPES,
    COPY_STAGING,
    COPY_TELEMETRY,
    CREATE_STAGING,
    ENSURE_PARTITIONS,
    INSERT_FROM_STAGING,
)


def dump_json(value: Any) -> bytes | str:
    """jsonb for the payload column: orjson, or the stdlib for integers beyond 64 bits (which orjson refuses)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value)


class PostgresTelemetryStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._adapted: psycopg.Connection | None = None  # the connection set up for the ingest's writes
        self._staging_ready = False  # the staging table exists on that connection

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        try:
            with self._database.transaction() as conn:
                if conn is not self._adapted:
                    set_json_dumps(dump_json, context=conn)
                    self._adapted = conn
                    self._staging_ready = False
                yield conn
        except BaseException:
            self._staging_ready = False  # the staging table's creation may have been rolled back too
            raise

    def write(self, batch: Batch) -> WriteResult:
        """Store the batch. A database error other than a refused row raises BatchNotStored."""
        try:
            return self._write(batch)
        except psycopg.Error as exc:
            raise BatchNotStored(f"{type(exc).__name__}: {exc}") from exc

    def _write(self, batch: Batch) -> WriteResult:
        if batch.empty:
            return WriteResult(0, 0)
        try:
            with self._transaction() as conn:
                inserted = self._store(conn, batch.shard_id, batch.rows, batch.rejects, batches=1)
        except (psycopg.DataError, psycopg.IntegrityError):
            # Some row the validation let through is refused (e.g. a constraint added by a newer migration).
            # Find it one reading at a time, so that it is rejected and the others land.
            return self._write_one_by_one(batch)
        return WriteResult(inserted, len(batch.rows) - inserted, list(batch.rejects))

    def _store(self, conn: psycopg.Connection, shard_id: str | None, rows: list[tuple], rejects: list[Reject],
               batches: int) -> int:  # fmt: skip
        """Readings, rejects and their counts in ingest_stats, in `conn`'s transaction; returns readings inserted."""
        with conn.cursor() as cur:
            statement = BOOKKEEPING_AFTER_COPY
            if rows:
                # In the batch's transaction: a new partition's lock on telemetry is held only until this batch
                # commits, and the call costs one round trip when the partitions exist.
                cur.execute(ENSURE_PARTITIONS, (partition_days(rows),))
                cur.execute("SAVEPOINT direct_copy")
                try:
                    _copy(cur, COPY_TELEMETRY, rows)
                except psycopg.errors.UniqueViolation:
                    cur.execute("ROLLBACK TO SAVEPOINT direct_copy")
                    self._stage(cur, rows)
                    statement = INSERT_FROM_STAGING
            return _bookkeep(cur, statement, shard_id, rows, rejects, batches)

    def _stage(self, cur: psycopg.Cursor, rows: list[tuple]) -> None:
        """The rows into the staging table, for INSERT_FROM_STAGING (after a rollback to the savepoint)."""
        cur.execute(ENSURE_PARTITIONS, (partition_days(rows),))  # those created under the savepoint are gone
        if not self._staging_ready:
            cur.execute(CREATE_STAGING)
            self._staging_ready = True
        _copy(cur, COPY_STAGING, rows)

    def _write_one_by_one(self, batch: Batch) -> WriteResult:
        inserted = 0
        rejects = list(batch.rejects)
        for row, source in zip(batch.rows, batch.sources, strict=True):
            try:
                with self._transaction() as conn:
                    inserted += self._store(conn, batch.shard_id, [row], [], batches=0)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                rejects.append(Reject(source, "db_refused", f"db_refused: {exc}"[:1000], row[DEVICE_ID]))
        with self._transaction() as conn:
            self._store(conn, batch.shard_id, [], rejects, batches=1)
        refused = len(rejects) - len(batch.rejects)
        return WriteResult(inserted, len(batch.rows) - inserted - refused, rejects)


def _copy(cur: psycopg.Cursor, statement: str, rows: list[tuple]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(COLUMN_TYPES)
        for row in rows:
            copy.write_row(row)


def _bookkeep(cur: psycopg.Cursor, statement: Any, shard_id: str | None, rows: list[tuple], rejects: list[Reject],
              batches: int) -> int:  # fmt: skip
    """Dirty hours, devices, rejects and ingest_stats for the readings just written; returns how many were new."""
    params = {
        "device_ids": [row[DEVICE_ID] for row in rows],
        "timestamps": [row[TS] for row in rows],
        "reject_shards": [r.source.shard_id for r in rejects],
        "reject_sequences": [r.source.sequence_number for r in rejects],
        "reject_devices": [r.device_id for r in rejects],
        "reject_codes": [r.code for r in rejects],
        "reject_reasons": [r.reason for r in rejects],
        "reject_raws": [r.source.raw for r in rejects],
        "reject_arrivals": [r.source.arrived_at for r in rejects],
        "shard_id": shard_id,
        "valid": len(rows),
        "batches": batches,
    }
    row = cur.execute(statement, params).fetchone()
    return row[0] if row else 0
