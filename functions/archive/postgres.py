"""The archive's database side (psycopg 3): day discovery, state rows, COPY out and in, and the drop.

The drop is the one flavour-specific statement: plain PostgreSQL detaches and drops the day's partition
`telemetry_pYYYYMMDD`; TimescaleDB drops the day's chunks, compressed or not, with drop_chunks (the tests run
on both flavours). Both run in one transaction with the state update, after locking telemetry against writers
and checking that the day still holds exactly the archived readings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date

import psycopg
from common.db import Database
from psycopg import sql
from psycopg.types.json import Jsonb

from archive.layout import day_bounds
from archive.manifest import COLUMN_NAMES, ORDER_BY, Manifest
from archive.parts import verified_content
from archive.ports import ExportSource, ReadObject
from archive.states import TRANSITIONS, DayState, State, TransitionError

RUN_LOCK_KEY = 0x10_7C_9A_03  # one archive run at a time (session advisory lock)
LOCK_TIMEOUT = "30s"  # waiting for telemetry's writers before the drop; the run fails rather than hangs
BATCH_BYTES = 256 * 1024  # rows handed to compression at once
COLUMN_LIST = sql.SQL(", ").join(map(sql.Identifier, COLUMN_NAMES))

# Loose index scan over telemetry's ts index: one probe per day holding readings, not a scan of them all.
DAYS_WITH_ROWS = """
WITH RECURSIVE days(day) AS (
    SELECT (min(ts) AT TIME ZONE 'UTC')::date FROM telemetry WHERE ts < %(end)s
    UNION ALL
    SELECT (SELECT (min(t.ts) AT TIME ZONE 'UTC')::date FROM telemetry t
            WHERE t.ts >= ((d.day + 1)::timestamp AT TIME ZONE 'UTC') AND t.ts < %(end)s)
    FROM days d WHERE d.day IS NOT NULL
)
SELECT day FROM days WHERE day IS NOT NULL
"""
COUNT_DAY = "SELECT count(*), min(ts), max(ts) FROM telemetry WHERE ts >= %s AND ts < %s"
EXPORT = sql.SQL(
    "COPY (SELECT {columns} FROM telemetry WHERE ts >= %s AND ts < %s ORDER BY {order}) TO STDOUT (FORMAT csv, HEADER)"
).format(columns=COLUMN_LIST, order=sql.SQL(", ").join(map(sql.Identifier, ORDER_BY)))
# Session settings that make COPY's text output exact and independent of the server's defaults.
EXACT_OUTPUT = ("SET LOCAL TimeZone = 'UTC'", "SET LOCAL DateStyle = 'ISO, YMD'", "SET LOCAL extra_float_digits = 3")
STAGING = "CREATE TEMPORARY TABLE archive_restore (LIKE telemetry) ON COMMIT DROP"
LOAD_STAGING = sql.SQL("COPY archive_restore ({columns}) FROM STDIN (FORMAT csv, HEADER MATCH)").format(
    columns=COLUMN_LIST
)
INSERT_FROM_STAGING = sql.SQL(
    "INSERT INTO telemetry ({columns}) SELECT {columns} FROM archive_restore ON CONFLICT DO NOTHING"
).format(columns=COLUMN_LIST)
# TimescaleDB: the chunks wholly inside [day, day + 1). Chunks are one UTC day (timescale/001_telemetry.sql).
TIMESCALE_DROP_CHUNKS = (
    "SELECT drop_chunks('telemetry', older_than => %(end)s::timestamptz, newer_than => %(start)s::timestamptz)"
)


def _batches(copy: psycopg.Copy) -> Iterator[tuple[int, bytes]]:
    """COPY OUT sends one message per row: gather them into batches of about BATCH_BYTES."""
    buffer = bytearray()
    rows = 0
    for data in copy:
        buffer += data
        rows += 1
        if len(buffer) >= BATCH_BYTES:
            yield rows, bytes(buffer)
            buffer.clear()
            rows = 0
    if rows:
        yield rows, bytes(buffer)


def load_parts(conn: psycopg.Connection, day: date, manifest: Manifest, read_object: ReadObject) -> tuple[int, int]:
    """Load an archived day into telemetry inside the caller's transaction: every part is checked against
    the manifest (size, SHA-256, row count) before anything is inserted; existing readings are kept (ON
    CONFLICT DO NOTHING). Returns (rows in the archive, rows inserted)."""
    conn.execute("SELECT telemetry_ensure_partitions(%s::date[])", ([day],))
    conn.execute(STAGING)
    with conn.cursor() as cur:
        for part in manifest.parts:
            with cur.copy(LOAD_STAGING) as copy:
                for chunk in verified_content(part, read_object(part.key)):
                    copy.write(chunk)
            if cur.rowcount != part.rows:
                raise ValueError(f"{part.key}: {cur.rowcount} rows, manifest says {part.rows}")
        cur.execute(INSERT_FROM_STAGING)
        return manifest.row_count, cur.rowcount


class PostgresArchiveDatabase:
    def __init__(self, db: Database) -> None:
        self.db = db

    @contextlib.contextmanager
    def run_lock(self) -> Iterator[bool]:
        conn = self.db.connection()
        with self.db.transaction():
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (RUN_LOCK_KEY,)).fetchone()[0]
        try:
            yield locked
        finally:
            if locked and not conn.closed:
                with contextlib.suppress(psycopg.Error), self.db.transaction():
                    conn.execute("SELECT pg_advisory_unlock(%s)", (RUN_LOCK_KEY,))

    def flavour(self, conn: psycopg.Connection) -> str:
        return conn.execute("SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1").fetchone()[0]

    def days_with_rows(self, last_day: date) -> list[date]:
        with self.db.transaction() as conn:
            return [row[0] for row in conn.execute(DAYS_WITH_ROWS, {"end": day_bounds(last_day)[1]})]

    def unfinished_days(self) -> list[date]:
        with self.db.transaction() as conn:
            return [row[0] for row in conn.execute("SELECT day FROM archive_days WHERE state <> 'dropped'")]

    def load_state(self, day: date) -> DayState | None:
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT state, manifest_key, manifest_sha256, row_count, attempts FROM archive_days WHERE day = %s",
                (day,),
            ).fetchone()
        return DayState(day, State(row[0]), row[1], row[2], row[3], row[4]) if row else None

    def _set_state(self, conn: psycopg.Connection, day: date, new: State, assignments: str = "", **values) -> None:
        allowed = [old.value for old, targets in TRANSITIONS.items() if old is not None and new in targets]
        updated = conn.execute(
            f"UPDATE archive_days SET state = %(new)s, updated_at = now(){assignments} "  # noqa: S608 (fixed text)
            "WHERE day = %(day)s AND state = ANY(%(allowed)s)",
            {"new": new.value, "day": day, "allowed": allowed, **values},
        )
        if updated.rowcount != 1:
            raise TransitionError(f"{day}: cannot move to {new} from its current state")

    def start_export(
        self,
        day: date,
        manifest_key: str,
        archived: Manifest | None,
        read_object: ReadObject,
        before_commit: Callable[[], None],
    ) -> None:
        with self.db.transaction() as conn:
            if archived is not None:
                load_parts(conn, day, archived, read_object)
            before_commit()
            started = conn.execute(
                "INSERT INTO archive_days AS a (day, state, manifest_key, attempts) VALUES (%s, 'exporting', %s, 1) "
                "ON CONFLICT (day) DO UPDATE SET state = 'exporting', manifest_key = excluded.manifest_key, "
                "manifest_sha256 = NULL, row_count = NULL, raw_bytes = NULL, stored_bytes = NULL, parts = NULL, "
                "attempts = a.attempts + 1, last_error = NULL, started_at = now(), updated_at = now() "
                "WHERE a.state = 'dropped'",
                (day, manifest_key),
            )
            if started.rowcount != 1:
                raise TransitionError(f"{day}: an export can only start from no state or dropped")

    @contextlib.contextmanager
    def export(self, day: date) -> Iterator[ExportSource]:
        start, end = day_bounds(day)
        with self.db.transaction() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for statement in EXACT_OUTPUT:
                conn.execute(statement)
            row_count, min_ts, max_ts = conn.execute(COUNT_DAY, (start, end)).fetchone()
            with conn.cursor() as cur, cur.copy(EXPORT, (start, end)) as copy:
                header = bytes(copy.read())
                batches = _batches(copy)
                yield ExportSource(header, batches, row_count, min_ts, max_ts)
                for _ in batches:  # a consumer that stopped early: drain so the connection stays usable
                    pass

    def mark_uploaded(self, day: date, manifest: Manifest, manifest_sha256: str) -> None:
        with self.db.transaction() as conn:
            self._set_state(
                conn,
                day,
                State.UPLOADED,
                ", manifest_sha256 = %(sha)s, row_count = %(rows)s, raw_bytes = %(raw)s, stored_bytes = %(stored)s,"
                " parts = %(parts)s",
                sha=manifest_sha256,
                rows=manifest.row_count,
                raw=manifest.raw_bytes,
                stored=manifest.stored_bytes,
                parts=Jsonb(manifest.parts_json()),
            )

    def mark_verified(self, day: date) -> None:
        with self.db.transaction() as conn:
            self._set_state(conn, day, State.VERIFIED)

    def reset_to_exporting(self, day: date, reason: str) -> None:
        with self.db.transaction() as conn:
            self._set_state(conn, day, State.EXPORTING, ", last_error = %(reason)s", reason=reason)

    def record_error(self, day: date, error: str) -> None:
        # Best effort: the error being recorded may be the database's own.
        with contextlib.suppress(psycopg.Error), self.db.transaction() as conn:
            conn.execute(
                "UPDATE archive_days SET last_error = %s, updated_at = now() WHERE day = %s", (error[:2000], day)
            )

    def drop_day(self, day: date, archived_rows: int, before_commit: Callable[[], None]) -> bool:
        start, end = day_bounds(day)
        with self.db.transaction() as conn:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
            # Writers (the ingest's INSERTs) wait from here to commit; readers carry on until the drop itself.
            conn.execute("LOCK TABLE telemetry IN SHARE ROW EXCLUSIVE MODE")
            rows = conn.execute(COUNT_DAY, (start, end)).fetchone()[0]
            if rows not in (0, archived_rows):
                self._set_state(conn, day, State.EXPORTING, ", last_error = %(reason)s", reason="readings arrived")
                return False
            self._drop(conn, day, start, end)
            if conn.execute(COUNT_DAY, (start, end)).fetchone()[0]:
                raise RuntimeError(f"{day}: readings left after the drop; nothing was dropped")
            before_commit()
            self._set_state(conn, day, State.DROPPED, ", last_error = NULL")
        return True

    def _drop(self, conn: psycopg.Connection, day: date, start, end) -> None:
        if self.flavour(conn) == "timescale":
            conn.execute(TIMESCALE_DROP_CHUNKS, {"start": start, "end": end})
            return
        name = f"telemetry_p{day:%Y%m%d}"
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None:
            return
        partition = sql.Identifier(name)
        conn.execute(sql.SQL("ALTER TABLE telemetry DETACH PARTITION {}").format(partition))
        conn.execute(sql.SQL("DROP TABLE {}").format(partition))
