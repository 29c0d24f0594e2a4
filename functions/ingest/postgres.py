"""PostgreSQL adapter, the batch write: one transaction holds the readings, the KPI job's dirty hours, the
device registry, the rejects and the batch's line in ingest_stats. Either all of the batch is stored or none
of it, and a redelivered batch adds nothing (the primary key (device_id, ts, seq) turns repeats into counted
duplicates).

Two ways in for the readings, because COPY has no ON CONFLICT:
- direct: COPY straight into telemetry, under a savepoint. This is the usual case (readings new, their
  days' partitions there), and costs what a bare COPY costs. A reading already stored makes it fail with a
  unique violation (for a redelivered batch at its first row, so little is wasted), and so does a reading
  whose day has no partition yet (plain PostgreSQL; TimescaleDB makes its chunks itself);
- staged: then the savepoint is rolled back, the batch's days get their partitions, the rows are COPied
  into a temporary table, and INSERT ... SELECT ... ON CONFLICT DO NOTHING takes the new ones.
Either way one statement then does the bookkeeping (statements.py), from the readings actually inserted.
Any other database error is raised as BatchNotStored: the batch is delivered again, and the write being
idempotent, what it may have stored (one reading at a time) is not stored twice.

Round trips are the write's main cost after the COPY itself, so the statements around the COPY go in
pipeline mode (COPY itself cannot): BEGIN and the savepoint in one round trip, the COPY in two, the
bookkeeping and COMMIT in one; four in all, as many as a bare COPY in its own transaction. Partitions are
created only when a COPY finds one missing (once a day, or for a late reading), not checked for every batch.
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
from ingest.pg_arrays import DeviceIds, UtcTimestamps, register_array_dumpers
from ingest.ports import BatchNotStored, WriteResult
from ingest.statements import (
    BOOKKEEPING_AFTER_COPY,
    COLUMN_TYPES,
    COPY_STAGING,
    COPY_TELEMETRY,
    CREATE_STAGING,
    ENSURE_PARTITIONS,
    INSERT_FROM_STAGING,
    ROLLBACK_TO_SAVEPOINT,
    SAVEPOINT,
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
                    register_array_dumpers(conn)
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
        """Readings, rejects and their counts in ingest_stats, in `conn`'s transaction, which this commits;
        returns the readings inserted."""
        with conn.cursor() as cur:
            statement = BOOKKEEPING_AFTER_COPY
            if rows:
                with conn.pipeline():
                    cur.execute(SAVEPOINT)
                try:
                    _copy(cur, COPY_TELEMETRY, rows)
                except (psycopg.errors.UniqueViolation, psycopg.errors.CheckViolation) as exc:
                    # A reading already stored, or "no partition of relation found for row" (a check violation
                    # that names no constraint); a CHECK constraint that refused a row is raised.
                    if isinstance(exc, psycopg.errors.CheckViolation) and exc.diag.constraint_name is not None:
                        raise
                    self._stage(conn, cur, rows)
                    statement = INSERT_FROM_STAGING
            with conn.pipeline():
                cur.execute(statement, _bookkeeping_params(shard_id, rows, rejects, batches))
                conn.commit()  # in the statement's round trip: the enclosing transaction() has nothing left to do
            return cur.fetchone()[0]

    def _stage(self, conn: psycopg.Connection, cur: psycopg.Cursor, rows: list[tuple]) -> None:
        """The rows into the staging table, for INSERT_FROM_STAGING, after the direct COPY failed; their days'
        partitions first (in the batch's transaction: a new partition's lock on telemetry is held only until
        the batch commits)."""
        with conn.pipeline():
            cur.execute(ROLLBACK_TO_SAVEPOINT)
            cur.execute(ENSURE_PARTITIONS, (partition_days(rows),))
            if not self._staging_ready:
                cur.execute(CREATE_STAGING)
        self._staging_ready = True
        _copy(cur, COPY_STAGING, rows)

    def _write_one_by_one(self, batch: Batch) -> WriteResult:
        inserted = 0
        rejects = list(batch.rejects)
        for index, row in enumerate(batch.rows):
            try:
                with self._transaction() as conn:
                    inserted += self._store(conn, batch.shard_id, [row], [], batches=0)
            except (psycopg.DataError, psycopg.IntegrityError) as exc:
                reason = f"db_refused: {exc}"[:1000]
                rejects.append(Reject(batch.source_of_row(index), "db_refused", reason, row[DEVICE_ID]))
        with self._transaction() as conn:
            self._store(conn, batch.shard_id, [], rejects, batches=1)
        refused = len(rejects) - len(batch.rejects)
        return WriteResult(inserted, len(batch.rows) - inserted - refused, rejects)


def _copy(cur: psycopg.Cursor, statement: str, rows: list[tuple]) -> None:
    with cur.copy(statement) as copy:
        copy.set_types(COLUMN_TYPES)
        for row in rows:
            copy.write_row(row)


def _bookkeeping_params(shard_id: str | None, rows: list[tuple], rejects: list[Reject], batches: int) -> dict:
    """The bookkeeping statement's parameters: the keys of the readings written (dirty hours, devices), the
    rejects, and the batch's counts for ingest_stats."""
    return {
        "device_ids": DeviceIds(row[DEVICE_ID] for row in rows),
        "timestamps": UtcTimestamps(row[TS] for row in rows),
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
