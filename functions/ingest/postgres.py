"""PostgreSQL adapter, the batch write: one transaction holds the readings, the KPI job's dirty hours, the
device registry, the rejects and the batch's line in ingest_stats. Either all of the batch is stored or none
of it, and a redelivered batch adds nothing (the primary key (device_id, ts, seq) turns repeats into counted
duplicates).

Two ways in for the readings, because COPY has no ON CONFLICT:
- direct: the bookkeeping of the batch's readings, then a COPY straight into telemetry. This is the usual case
  (readings new, their days' partitions there). A reading already stored makes the COPY fail with a unique
  violation (for a redelivered batch at its first row, so little is wasted), and so does a reading whose day
  has no partition yet (plain PostgreSQL; TimescaleDB makes its chunks itself);
- staged: then the transaction, which held only that bookkeeping, is rolled back, the batch's days get their
  partitions, the rows are COPied into a temporary table, and INSERT ... SELECT ... ON CONFLICT DO NOTHING
  takes the new ones; the bookkeeping follows, of the readings it added.
One statement does the bookkeeping (statements.py): the direct way's from the readings' keys summed up by the
client (ingest.batch.DeviceSpans), which holds for all of them once the COPY succeeds; the staged way's from the
readings the insert returned. Any other database error is raised as BatchNotStored: the batch is delivered
again, and the write being idempotent, what it may have stored (one reading at a time) is not stored twice.

Round trips and waits are the write's main cost after the COPY itself. The direct way: BEGIN; the bookkeeping
in pipeline mode, so that the server runs it while the client encodes the rows for the COPY (against the
bookkeeping after the COPY, paired batch by batch, one-off: 0.95-0.98x the time of a batch of 500 on a fast
machine, 1.00-1.03x on a slow one, where client and server compete for the CPU); the COPY in two; COMMIT.
The rows are encoded for COPY once, and the encoding serves the staging table too. Partitions are created only
when a COPY finds one missing (once a day, or for a late reading), not checked for every batch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from operator import itemgetter
from typing import Any

import orjson
import psycopg
from common.db import Database
from common.telemetry import READING_COLUMNS
from psycopg import Copy
from psycopg.abc import Buffer
from psycopg.adapt import Dumper
from psycopg.copy import Writer
from psycopg.pq import Format

from ingest.batch import DEVICE_ID, Batch, Reject, device_spans, partition_days
from ingest.pg_arrays import DeviceIds, UtcTimestamps, register_array_dumpers
from ingest.ports import BatchNotStored, WriteResult
from ingest.statements import (
    ALL_COLUMNS,
    BOOKKEEPING_OF_DIRECT_COPY,
    CREATE_STAGING,
    ENSURE_PARTITIONS,
    INSERT_FROM_STAGING,
    WITHOUT_PAYLOAD,
    CopyLayout,
)


def dump_json(value: Any) -> bytes | str:
    """jsonb for the payload column: orjson, or the stdlib for integers beyond 64 bits (which orjson refuses)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value)


class PayloadDumper(Dumper):
    """The payload column in the COPYs, jsonb's binary form (a version byte, then the JSON text).

    psycopg's own jsonb dumper takes three Python calls a row; this one, one. Registered by oid only: it serves
    the COPYs' jsonb column (their set_types), not parameters. A batch whose payloads are all empty (the usual
    one) is COPied without the column (statements.WITHOUT_PAYLOAD)."""

    format = Format.BINARY
    oid = psycopg.postgres.types["jsonb"].oid

    def dump(self, obj: dict) -> bytes:
        if not obj:
            return _EMPTY_JSONB
        data = dump_json(obj)
        return _JSONB_VERSION + (data.encode() if isinstance(data, str) else data)


_JSONB_VERSION = b"\x01"
_EMPTY_JSONB = _JSONB_VERSION + b"{}"


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
                    conn.adapters.register_dumper(None, PayloadDumper)
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
            if not rows:
                return self._book_and_commit(conn, cur, BOOKKEEPING_OF_DIRECT_COPY, shard_id, rows, rejects, batches)
            with conn.pipeline():  # sent at once: the server runs it while the rows are encoded
                cur.execute(BOOKKEEPING_OF_DIRECT_COPY, _bookkeeping_params(shard_id, rows, rejects, batches, True))
                layout, data = _copy_data(conn, rows)
            accepted = cur.fetchone()[0]
            try:
                with cur.copy(layout.telemetry) as copy:
                    copy.write(data)
            except (psycopg.errors.UniqueViolation, psycopg.errors.CheckViolation) as exc:
                # A reading already stored, or "no partition of relation found for row" (a check violation
                # that names no constraint); a CHECK constraint that refused a row is raised.
                if isinstance(exc, psycopg.errors.CheckViolation) and exc.diag.constraint_name is not None:
                    raise
                # The transaction holds only the bookkeeping: rolling it back loses nothing else (and costs no
                # savepoint before every COPY).
                conn.rollback()
                self._stage(conn, cur, rows, layout, data)
                return self._book_and_commit(conn, cur, INSERT_FROM_STAGING, shard_id, rows, rejects, batches)
            conn.commit()
            return accepted

    @staticmethod
    def _book_and_commit(conn: psycopg.Connection, cur: psycopg.Cursor, statement: str, shard_id: str | None,
                         rows: list[tuple], rejects: list[Reject], batches: int) -> int:  # fmt: skip
        """`statement`'s bookkeeping and COMMIT, in one round trip; the readings the statement counts inserted."""
        summed = statement is BOOKKEEPING_OF_DIRECT_COPY
        with conn.pipeline():
            cur.execute(statement, _bookkeeping_params(shard_id, rows, rejects, batches, summed))
            conn.commit()  # the enclosing transaction() has nothing left to do
        return cur.fetchone()[0]

    def _stage(self, conn: psycopg.Connection, cur: psycopg.Cursor, rows: list[tuple], layout: CopyLayout,
               data: bytearray) -> None:  # fmt: skip
        """The rows (`data`: their COPY data, in `layout`) into the staging table, for INSERT_FROM_STAGING, after
        the direct COPY failed; their days' partitions first (in the batch's transaction: a new partition's lock
        on telemetry is held only until the batch commits)."""
        with conn.pipeline():
            cur.execute(ENSURE_PARTITIONS, (partition_days(rows),))
            if not self._staging_ready:
                cur.execute(CREATE_STAGING)
        self._staging_ready = True
        with cur.copy(layout.staging) as copy:
            copy.write(data)

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


class _Buffer(Writer):
    """Where _copy_data's Copy writes: memory."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: Buffer) -> None:
        self.data += data


_PAYLOAD = itemgetter(READING_COLUMNS.index("payload"))
_ALL_BUT_PAYLOAD = itemgetter(*(i for i, name in enumerate(READING_COLUMNS) if name != "payload"))


def _copy_data(conn: psycopg.Connection, rows: list[tuple]) -> tuple[CopyLayout, bytearray]:
    """The rows as binary COPY data in the layout returned, for its COPY into telemetry and, should that fail,
    into the staging table: encoded once, with the connection's dumpers (psycopg's documented way to encode a
    COPY without running one). Without the payload column when every payload is empty."""
    layout: CopyLayout = ALL_COLUMNS
    encoded: Iterable[tuple] = rows
    if not any(map(_PAYLOAD, rows)):
        layout, encoded = WITHOUT_PAYLOAD, map(_ALL_BUT_PAYLOAD, rows)
    buffer = _Buffer()
    copy = Copy(conn.cursor(), binary=True, writer=buffer)  # a cursor of its own: it must not hold a result
    copy.set_types(layout.types)
    for row in encoded:
        copy.write_row(row)
    copy.finish(None)
    return layout, buffer.data


def _bookkeeping_params(shard_id: str | None, rows: list[tuple], rejects: list[Reject], batches: int,
                        summed: bool) -> dict:  # fmt: skip
    """A bookkeeping statement's parameters: the rejects, the batch's counts for ingest_stats and, for
    BOOKKEEPING_OF_DIRECT_COPY (`summed`), the keys of the readings written as DeviceSpans (the staged insert
    returns its own)."""
    params = {
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
    if summed:
        spans = device_spans(rows)
        params |= {
            "span_devices": DeviceIds(spans.device_ids),
            "first_seen": UtcTimestamps(spans.first),
            "last_seen": UtcTimestamps(spans.last),
            "hour_devices": DeviceIds(spans.hour_device_ids),
            "hour_timestamps": UtcTimestamps(spans.hour_timestamps),
        }
    return params
