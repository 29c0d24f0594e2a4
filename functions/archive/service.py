"""One archive run: for each due day, drive its state machine to `dropped`, one committed step at a time.

    (none|dropped) --merge archived rows back, if any--> exporting --parts, then manifest--> uploaded
    uploaded --read every object back--> verified --drop partition/chunks + state, one transaction--> dropped

Invariant: a manifest in S3 always describes parts whose bytes match it, and a day's data is dropped only
after its manifest and parts were read back and only if the database still holds exactly the archived rows.
So a crash at any step leaves either the database or a verified archive holding every reading, and the next
run redoes only the step that was cut (exports are deterministic: the same rows give the same bytes).
`hook(step, day)` is called at each named step; tests raise from it to inject crashes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from archive import layout
from archive.manifest import Manifest, ManifestError, parse_manifest
from archive.parts import ChecksumMismatch, digest_of, same_s3_checksum, write_parts
from archive.ports import ArchiveDatabase, ObjectStore
from archive.settings import ArchiveSettings
from archive.states import State

logger = logging.getLogger("archive")

# The named steps at which `hook` runs (after the work of the step, before its state is committed).
STEP_MERGED = "merged"  # archived rows loaded back, state exporting not yet committed
STEP_PARTS_UPLOADED = "parts_uploaded"  # parts in S3, manifest not yet
STEP_MANIFEST_UPLOADED = "manifest_uploaded"  # manifest in S3, state still exporting
STEP_VERIFIED = "verified"  # objects read back, state still uploaded
STEP_DROPPED = "dropped"  # partition/chunks dropped inside the transaction, state not yet updated
STEPS = (STEP_MERGED, STEP_PARTS_UPLOADED, STEP_MANIFEST_UPLOADED, STEP_VERIFIED, STEP_DROPPED)
# Late readings arriving between export and drop send a day back to exporting; give up after this many
# exports in one run (the next run carries on).
MAX_EXPORTS_PER_DAY_AND_RUN = 3

Hook = Callable[[str, date], None]


def no_hook(step: str, day: date) -> None:
    """Production: nothing to inject."""


class ArchiveError(RuntimeError):
    """A day could not be archived; nothing of it was dropped that is not verified in S3."""


@dataclass
class RunSummary:
    last_due_day: str
    days_due: list[str] = field(default_factory=list)
    days_archived: list[str] = field(default_factory=list)
    rows_archived: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0
    skipped: str | None = None  # why the run stopped early (another run holds the lock, out of time)
    duration_ms: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


class DayArchiver:
    def __init__(self, db: ArchiveDatabase, store: ObjectStore, settings: ArchiveSettings, hook: Hook) -> None:
        self.db = db
        self.store = store
        self.settings = settings
        self.hook = hook

    def read_manifest(self, day: date) -> tuple[Manifest, str] | None:
        data = self.store.get(layout.manifest_key(self.settings.prefix, day))
        if data is None:
            return None
        return parse_manifest(data, day), digest_of([data])[1]

    def archive(self, day: date) -> Manifest:
        """Drive `day` to dropped; returns its manifest."""
        state = self.db.load_state(day)
        current = state.state if state else None
        exports = 0
        while True:
            if current in (None, State.DROPPED):
                self._start(day)
                current = State.EXPORTING
            if current is State.EXPORTING:
                exports += 1
                if exports > MAX_EXPORTS_PER_DAY_AND_RUN:
                    raise ArchiveError(f"{day}: readings kept arriving during {exports - 1} exports; next run")
                self._export(day)
                current = State.UPLOADED
            if current is State.UPLOADED:
                if not self._verify(day):
                    current = State.EXPORTING
                    continue
                current = State.VERIFIED
            if current is State.VERIFIED:
                manifest, _ = self._stored_manifest(day)
                if self.db.drop_day(day, manifest.row_count, lambda: self.hook(STEP_DROPPED, day)):
                    logger.info("day dropped", extra={"day": str(day), "rows": manifest.row_count})
                    return manifest
                logger.warning("readings arrived after the export; exporting again", extra={"day": str(day)})
                current = State.EXPORTING

    def _start(self, day: date) -> None:
        archived = self.read_manifest(day)
        if archived:
            logger.info("merging the archived day back before re-export", extra={"day": str(day)})
        self.db.start_export(
            day,
            layout.manifest_key(self.settings.prefix, day),
            archived[0] if archived else None,
            self.store.read,
            lambda: self.hook(STEP_MERGED, day),
        )

    def _export(self, day: date) -> None:
        prefix = self.settings.prefix
        manifest_key = layout.manifest_key(prefix, day)
        # The manifest goes first: from here until the new one is written, the database alone holds the day.
        self.store.delete_keys([manifest_key])
        self.store.delete_keys(self.store.list_keys(layout.day_prefix(prefix, day)))
        started = time.perf_counter()

        def progress(rows: int, raw_bytes: int) -> None:
            seconds = time.perf_counter() - started
            logger.info(
                "export progress",
                extra={"day": str(day), "rows": rows, "raw_mb": round(raw_bytes / 1e6, 1), "s": round(seconds, 1)},
            )

        with self.db.export(day) as source:
            parts = write_parts(
                source.header,
                source.batches,
                self.store.open_writer,
                lambda number: layout.part_key(prefix, day, number),
                self.settings.part_max_raw_bytes,
                self.settings.gzip_level,
                progress,
            )
            manifest = Manifest(
                day,
                tuple(parts),
                source.min_ts.isoformat() if source.min_ts else None,
                source.max_ts.isoformat() if source.max_ts else None,
            )
            if manifest.row_count != source.row_count:
                raise ArchiveError(f"{day}: exported {manifest.row_count} rows, the snapshot holds {source.row_count}")
        self.hook(STEP_PARTS_UPLOADED, day)
        document = manifest.to_json()
        self.store.put(manifest_key, document)
        self.hook(STEP_MANIFEST_UPLOADED, day)
        self.db.mark_uploaded(day, manifest, digest_of([document])[1])
        logger.info(
            "day uploaded",
            extra={"day": str(day), "rows": manifest.row_count, "parts": len(parts), "raw": manifest.raw_bytes,
                   "stored": manifest.stored_bytes, "s": round(time.perf_counter() - started, 2)},
        )  # fmt: skip

    def _stored_manifest(self, day: date) -> tuple[Manifest, str]:
        state = self.db.load_state(day)
        found = self.read_manifest(day)
        if state is None or found is None or found[1] != state.manifest_sha256:
            raise ChecksumMismatch(f"{day}: the manifest in S3 is missing or not the one recorded")
        return found

    def _verify(self, day: date) -> bool:
        """Read every object back; on a mismatch the day goes back to exporting (it is all still in the
        database) and False is returned."""
        try:
            manifest, _ = self._stored_manifest(day)
            for part in manifest.parts:
                head = self.store.head(part.key)
                if head is None or head.size != part.bytes:
                    raise ChecksumMismatch(f"{part.key}: {head} in S3, manifest says {part.bytes} bytes")
                if not same_s3_checksum(head.checksum_sha256, part.s3_checksum_sha256):
                    raise ChecksumMismatch(
                        f"{part.key}: S3 checksum {head.checksum_sha256} != {part.s3_checksum_sha256}"
                    )
                if digest_of(self.store.read(part.key)) != (part.bytes, part.sha256):
                    raise ChecksumMismatch(f"{part.key}: content read back differs from the manifest")
        except (ChecksumMismatch, ManifestError) as exc:
            logger.error("verification failed; exporting again", extra={"day": str(day), "error": str(exc)})
            self.db.reset_to_exporting(day, str(exc))
            return False
        self.hook(STEP_VERIFIED, day)
        self.db.mark_verified(day)
        return True


def run_archive(
    db: ArchiveDatabase,
    store: ObjectStore,
    settings: ArchiveSettings,
    now: datetime,
    hook: Hook = no_hook,
    time_left_s: Callable[[], float] | None = None,
    min_time_per_day_s: float = 120.0,
) -> RunSummary:
    """Archive every due day, oldest first. Stops before a new day when `time_left_s()` is below
    `min_time_per_day_s` (the next run carries on). Raises ArchiveError on the first day that fails."""
    started = time.perf_counter()
    last_due = layout.last_due_day(now, settings.retention_days)
    summary = RunSummary(last_due_day=last_due.isoformat())
    try:
        store.check()
    except Exception as exc:
        raise ArchiveError(f"archive bucket unreachable, nothing archived or dropped: {exc}") from exc
    with db.run_lock() as locked:
        if not locked:
            summary.skipped = "another archive run holds the lock"
            return summary
        due = layout.days_due(db.days_with_rows(last_due), db.unfinished_days(), last_due)
        summary.days_due = [day.isoformat() for day in due]
        archiver = DayArchiver(db, store, settings, hook)
        for day in due:
            if time_left_s is not None and time_left_s() < min_time_per_day_s:
                summary.skipped = f"out of time before {day}"
                break
            try:
                manifest = archiver.archive(day)
            except Exception as exc:
                db.record_error(day, f"{type(exc).__name__}: {exc}")
                raise ArchiveError(f"archiving {day} failed, its data is kept: {exc}") from exc
            summary.days_archived.append(day.isoformat())
            summary.rows_archived += manifest.row_count
            summary.raw_bytes += manifest.raw_bytes
            summary.stored_bytes += manifest.stored_bytes
    summary.duration_ms = round((time.perf_counter() - started) * 1000, 1)
    return summary
