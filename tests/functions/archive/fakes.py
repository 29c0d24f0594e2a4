"""In-memory fakes of the archive's ports (archive/ports.py), faithful to the adapters' contracts.

MemoryArchiveDatabase keeps readings as (device_id, ts, seq) -> rss and the per-day state rows; each method
is one transaction (a method that raises, or whose `before_commit` raises, changes nothing), and state
changes follow archive.states.TRANSITIONS as the PostgreSQL adapter's do. MemoryObjectStore keeps objects as
bytes with the SHA-256 checksum S3 would report. Both record what happened, for the tests to assert on.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from archive.manifest import Manifest
from archive.parts import verified_content
from archive.ports import ExportSource, ObjectHead, ReadObject
from archive.states import DayState, State, TransitionError, check_transition

Key = tuple[str, datetime, int]  # device_id, ts, seq
HEADER = b"device_id,ts,seq,rss\n"


def s3_checksum(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class BucketUnreachable(ConnectionError):
    pass


class MemoryWriter:
    def __init__(self, store: MemoryObjectStore, key: str) -> None:
        self._store = store
        self._key = key
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data

    def close(self) -> str:
        return self._store.put(self._key, bytes(self._buffer))

    def abort(self) -> None:
        self._buffer.clear()


class MemoryObjectStore:
    def __init__(self, read_chunk_bytes: int = 1024) -> None:
        self.objects: dict[str, bytes] = {}
        self.checksums: dict[str, str] = {}  # what S3 computed when the object was written
        self.reachable = True
        self.corrupt_writes = False  # every stored object loses its last byte (a silently broken store)
        self.puts: list[str] = []
        self._read_chunk_bytes = read_chunk_bytes

    def check(self) -> None:
        if not self.reachable:
            raise BucketUnreachable("bucket unreachable")

    def open_writer(self, key: str) -> MemoryWriter:
        return MemoryWriter(self, key)

    def put(self, key: str, data: bytes) -> str:
        self.puts.append(key)
        checksum = s3_checksum(data)
        self.objects[key] = data[:-1] if self.corrupt_writes else data
        self.checksums[key] = s3_checksum(self.objects[key])
        return checksum

    def head(self, key: str) -> ObjectHead | None:
        if key not in self.objects:
            return None
        return ObjectHead(len(self.objects[key]), self.checksums[key])

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def read(self, key: str) -> Iterator[bytes]:
        data = self.objects[key]  # KeyError, as S3 answers NoSuchKey
        for start in range(0, len(data), self._read_chunk_bytes):
            yield data[start : start + self._read_chunk_bytes]

    def list_keys(self, prefix: str) -> list[str]:
        return sorted(key for key in self.objects if key.startswith(prefix))

    def delete_keys(self, keys: list[str]) -> None:
        for key in keys:
            self.objects.pop(key, None)
            self.checksums.pop(key, None)


@dataclass
class _Tables:
    readings: dict[Key, float]
    states: dict[date, DayState]
    errors: dict[date, str]


class MemoryArchiveDatabase:
    def __init__(self, batch_rows: int = 2) -> None:
        self._tables = _Tables({}, {}, {})
        self.batch_rows = batch_rows  # CSV lines per export batch: small, so that a day spans several
        self.locked_by_another_run = False
        self.history: list[tuple[date, State]] = []  # every committed state change, in order

    # -- what the tests set up and inspect ------------------------------------------------------------
    def insert(self, device_id: str, ts: datetime, seq: int, rss: float) -> None:
        self._tables.readings.setdefault((device_id, ts, seq), rss)

    def readings(self, day: date) -> dict[Key, float]:
        return {key: rss for key, rss in self._tables.readings.items() if key[1].date() == day}

    def last_error(self, day: date) -> str | None:
        return self._tables.errors.get(day)

    # -- the ArchiveDatabase port ---------------------------------------------------------------------
    @contextlib.contextmanager
    def run_lock(self) -> Iterator[bool]:
        yield not self.locked_by_another_run

    def days_with_rows(self, last_day: date) -> list[date]:
        return sorted({key[1].date() for key in self._tables.readings if key[1].date() <= last_day})

    def unfinished_days(self) -> list[date]:
        return [day for day, state in self._tables.states.items() if state.state is not State.DROPPED]

    def load_state(self, day: date) -> DayState | None:
        return self._tables.states.get(day)

    def start_export(
        self,
        day: date,
        manifest_key: str,
        archived: Manifest | None,
        read_object: ReadObject,
        before_commit: Callable[[], None],
    ) -> None:
        with self._transaction() as tables:
            if archived is not None:
                for part in archived.parts:
                    rows = _parse_csv(b"".join(verified_content(part, read_object(part.key))))
                    if len(rows) != part.rows:
                        raise ValueError(f"{part.key}: {len(rows)} rows, manifest says {part.rows}")
                    for key, rss in rows:
                        tables.readings.setdefault(key, rss)
            before_commit()
            current = tables.states.get(day)
            if current is not None and current.state is not State.DROPPED:
                raise TransitionError(f"{day}: an export can only start from no state or dropped")
            attempts = current.attempts + 1 if current else 1
            self._set(tables, day, DayState(day, State.EXPORTING, manifest_key, attempts=attempts))
            tables.errors.pop(day, None)

    @contextlib.contextmanager
    def export(self, day: date) -> Iterator[ExportSource]:
        rows = sorted(self.readings(day).items())
        lines = [_csv_line(key, rss) for key, rss in rows]
        batches = (
            (len(lines[start : start + self.batch_rows]), b"".join(lines[start : start + self.batch_rows]))
            for start in range(0, len(lines), self.batch_rows)
        )
        timestamps = [key[1] for key, _ in rows]
        yield ExportSource(HEADER, batches, len(rows), min(timestamps, default=None), max(timestamps, default=None))

    def mark_uploaded(self, day: date, manifest: Manifest, manifest_sha256: str) -> None:
        with self._transaction() as tables:
            self._move(tables, day, State.UPLOADED, manifest_sha256=manifest_sha256, row_count=manifest.row_count)

    def mark_verified(self, day: date) -> None:
        with self._transaction() as tables:
            self._move(tables, day, State.VERIFIED)

    def reset_to_exporting(self, day: date, reason: str) -> None:
        with self._transaction() as tables:
            self._move(tables, day, State.EXPORTING)
            tables.errors[day] = reason

    def record_error(self, day: date, error: str) -> None:
        if day in self._tables.states:
            self._tables.errors[day] = error

    def drop_day(self, day: date, archived_rows: int, before_commit: Callable[[], None]) -> bool:
        with self._transaction() as tables:
            held = [key for key in tables.readings if key[1].date() == day]
            if len(held) not in (0, archived_rows):
                self._move(tables, day, State.EXPORTING)
                tables.errors[day] = "readings arrived"
                return False
            for key in held:
                del tables.readings[key]
            before_commit()
            self._move(tables, day, State.DROPPED)
            tables.errors.pop(day, None)
        return True

    # -- transactions ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_Tables]:
        """A copy of the tables to change; it replaces them only when the block ends without an error."""
        work = _Tables(dict(self._tables.readings), dict(self._tables.states), dict(self._tables.errors))
        pending: list[tuple[date, State]] = []
        self._pending = pending
        yield work
        self._tables = work
        self.history += pending

    def _set(self, tables: _Tables, day: date, state: DayState) -> None:
        tables.states[day] = state
        self._pending.append((day, state.state))

    def _move(self, tables: _Tables, day: date, new: State, **values) -> None:
        current = tables.states.get(day)
        if current is None:
            raise TransitionError(f"{day}: cannot move to {new} from no state")
        check_transition(current.state, new)
        self._set(tables, day, replace(current, state=new, **values))


def _csv_line(key: Key, rss: float) -> bytes:
    device_id, ts, seq = key
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([device_id, ts.isoformat(), seq, repr(rss)])
    return buffer.getvalue().encode()


def _parse_csv(content: bytes) -> list[tuple[Key, float]]:
    reader = csv.reader(io.StringIO(content.decode()))
    header = next(reader)
    if ",".join(header).encode() + b"\n" != HEADER:
        raise ValueError(f"unexpected CSV header {header}")
    return [
        ((device, datetime.fromisoformat(ts).astimezone(UTC), int(seq)), float(rss)) for device, ts, seq, rss in reader
    ]
