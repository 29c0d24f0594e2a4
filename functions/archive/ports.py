"""What the archive needs from S3 and from the database; the adapters are s3.py and postgres.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from archive.manifest import Manifest
from archive.parts import ObjectWriter
from archive.states import DayState

ReadObject = Callable[[str], Iterator[bytes]]


@dataclass(frozen=True)
class ObjectHead:
    size: int
    checksum_sha256: str | None  # as S3 reports it (HEAD with ChecksumMode=ENABLED)


@dataclass(frozen=True)
class ExportSource:
    """One consistent snapshot of a day: the CSV header line, then batches of whole CSV lines (one per
    reading) with their row counts."""

    header: bytes
    batches: Iterator[tuple[int, bytes]]
    row_count: int
    min_ts: datetime | None
    max_ts: datetime | None


class ObjectStore(Protocol):
    def check(self) -> None:
        """Raise unless the bucket is reachable."""

    def open_writer(self, key: str) -> ObjectWriter: ...
    def put(self, key: str, data: bytes) -> str: ...
    def head(self, key: str) -> ObjectHead | None: ...
    def get(self, key: str) -> bytes | None: ...
    def read(self, key: str) -> Iterator[bytes]: ...
    def list_keys(self, prefix: str) -> list[str]: ...
    def delete_keys(self, keys: list[str]) -> None: ...


class ArchiveDatabase(Protocol):
    def run_lock(self) -> AbstractContextManager[bool]:
        """True while this run holds the archive lock; False when another run does."""

    def days_with_rows(self, last_day: date) -> list[date]: ...
    def unfinished_days(self) -> list[date]: ...
    def load_state(self, day: date) -> DayState | None: ...

    def start_export(
        self,
        day: date,
        manifest_key: str,
        archived: Manifest | None,
        read_object: ReadObject,
        before_commit: Callable[[], None],
    ) -> None:
        """In one transaction: load the rows of `archived` back (verified, idempotent) and set the day to
        exporting."""

    def export(self, day: date) -> AbstractContextManager[ExportSource]: ...
    def mark_uploaded(self, day: date, manifest: Manifest, manifest_sha256: str) -> None: ...
    def mark_verified(self, day: date) -> None: ...
    def reset_to_exporting(self, day: date, reason: str) -> None: ...
    def record_error(self, day: date, error: str) -> None: ...

    def drop_day(self, day: date, archived_rows: int, before_commit: Callable[[], None]) -> bool:
        """Drop the day's data if it still holds exactly `archived_rows` readings (or none), setting the
        state to dropped in the same transaction; else set it back to exporting and return False."""
