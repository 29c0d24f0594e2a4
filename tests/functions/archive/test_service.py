"""archive/service.py on in-memory fakes of its ports: the per-day state machine, verify-before-delete, and a
crash at every step resuming on the next run. (The adapters and the whole archive run against real
PostgreSQL and moto S3 in test_archive.py.)"""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime, timedelta

import pytest
from archive import layout
from archive.manifest import parse_manifest
from archive.service import MAX_EXPORTS_PER_DAY_AND_RUN, STEPS, ArchiveError, run_archive
from archive.settings import ArchiveSettings
from archive.states import State

from tests.functions.archive.fakes import HEADER, MemoryArchiveDatabase, MemoryObjectStore

NOW = datetime(2024, 6, 20, 9, 30, tzinfo=UTC)
DAY = date(2024, 5, 1)  # 50 days before NOW: due with a 30-day retention
SETTINGS = ArchiveSettings(retention_days=30, prefix="telemetry/", part_max_raw_bytes=200)  # several parts a day
EXPORTING, UPLOADED, VERIFIED, DROPPED = State.EXPORTING, State.UPLOADED, State.VERIFIED, State.DROPPED


def fill(db: MemoryArchiveDatabase, day: date, count: int, device: str = "dev-a") -> None:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for i in range(count):
        db.insert(device, start + timedelta(minutes=7 * i), i, -60.0 - i / 8)


def archived_readings(store: MemoryObjectStore, day: date) -> list[bytes]:
    """Every CSV line the day's verified archive holds, read back through its manifest."""
    manifest = parse_manifest(store.get(layout.manifest_key(SETTINGS.prefix, day)), day)
    lines: list[bytes] = []
    for part in manifest.parts:
        content = gzip.decompress(store.get(part.key))
        assert content.startswith(HEADER)
        lines += content[len(HEADER) :].splitlines(keepends=True)
    assert len(lines) == manifest.row_count
    return lines


def exported_lines(db: MemoryArchiveDatabase, day: date) -> list[bytes]:
    with db.export(day) as source:
        return [line for _, batch in source.batches for line in batch.splitlines(keepends=True)]


def crash_at(step: str):
    def hook(name: str, day: date) -> None:
        if name == step:
            raise RuntimeError(f"injected crash at {step}")

    return hook


@pytest.fixture
def db() -> MemoryArchiveDatabase:
    return MemoryArchiveDatabase()


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


def test_a_due_day_goes_through_every_state_once_and_its_archive_holds_every_reading(db, store):
    fill(db, DAY, 20)
    fill(db, NOW.date() - timedelta(days=3), 5)  # within retention: never touched
    expected = exported_lines(db, DAY)

    summary = run_archive(db, store, SETTINGS, NOW)

    assert db.history == [(DAY, EXPORTING), (DAY, UPLOADED), (DAY, VERIFIED), (DAY, DROPPED)]
    assert (summary.days_due, summary.days_archived, summary.rows_archived) == (
        [DAY.isoformat()],
        [DAY.isoformat()],
        20,
    )
    assert db.readings(DAY) == {} and len(db.readings(NOW.date() - timedelta(days=3))) == 5
    assert archived_readings(store, DAY) == expected
    manifest = parse_manifest(store.get(layout.manifest_key(SETTINGS.prefix, DAY)), DAY)
    assert len(manifest.parts) > 1 and summary.stored_bytes == manifest.stored_bytes
    assert set(store.objects) == {part.key for part in manifest.parts} | {layout.manifest_key(SETTINGS.prefix, DAY)}
    assert run_archive(db, store, SETTINGS, NOW).days_due == []  # nothing left to do


@pytest.mark.parametrize("step", STEPS[1:])  # "merged" needs an archived day: see the late-readings test
def test_a_crash_at_any_step_keeps_every_reading_and_the_next_run_completes(db, store, step):
    fill(db, DAY, 20)
    before = db.readings(DAY)
    expected = exported_lines(db, DAY)

    with pytest.raises(ArchiveError, match=f"archiving {DAY} failed") as failure:
        run_archive(db, store, SETTINGS, NOW, hook=crash_at(step))

    assert str(failure.value.__cause__) == f"injected crash at {step}"
    assert db.readings(DAY) == before  # a crash inside the drop rolls it back
    assert db.load_state(DAY).state in (EXPORTING, UPLOADED, VERIFIED)
    assert db.last_error(DAY) == f"RuntimeError: injected crash at {step}"

    summary = run_archive(db, store, SETTINGS, NOW)

    assert summary.days_archived == [DAY.isoformat()] and summary.rows_archived == 20
    assert db.readings(DAY) == {} and db.load_state(DAY).state is DROPPED
    assert archived_readings(store, DAY) == expected
    assert db.history[-1] == (DAY, DROPPED) and db.history.count((DAY, DROPPED)) == 1
    manifest = parse_manifest(store.get(layout.manifest_key(SETTINGS.prefix, DAY)), DAY)
    assert len(store.objects) == len(manifest.parts) + 1  # nothing duplicated or left over


def test_a_part_that_does_not_read_back_as_written_sends_the_day_back_to_exporting(db, store):
    fill(db, DAY, 20)
    part = layout.part_key(SETTINGS.prefix, DAY, 0)
    tampered: list[str] = []

    def damage_once(step: str, day: date) -> None:
        if step == "manifest_uploaded" and not tampered:  # between the upload and its verification
            data = store.objects[part]
            store.objects[part] = data[:20] + bytes([data[20] ^ 0xFF]) + data[21:]  # same size, one byte changed
            tampered.append(part)

    summary = run_archive(db, store, SETTINGS, NOW, hook=damage_once)

    assert db.history == [(DAY, s) for s in (EXPORTING, UPLOADED, EXPORTING, UPLOADED, VERIFIED, DROPPED)]
    assert summary.rows_archived == 20 and len(archived_readings(store, DAY)) == 20


def test_a_store_that_never_keeps_what_it_was_given_drops_nothing(db, store):
    fill(db, DAY, 20)
    before = db.readings(DAY)
    store.corrupt_writes = True

    with pytest.raises(ArchiveError, match=f"archiving {DAY} failed, its data is kept"):
        run_archive(db, store, SETTINGS, NOW)

    assert db.readings(DAY) == before
    states = [state for _, state in db.history]
    assert VERIFIED not in states and DROPPED not in states
    assert states.count(UPLOADED) == MAX_EXPORTS_PER_DAY_AND_RUN  # each upload read back, refused, redone
    assert db.load_state(DAY).state is EXPORTING


def test_readings_arriving_before_the_drop_are_exported_again_and_archived(db, store):
    fill(db, DAY, 20)
    late = [("late", datetime(DAY.year, DAY.month, DAY.day, 23, tzinfo=UTC), 1, -70.0)]

    def late_reading_once(step: str, day: date) -> None:
        if step == "verified" and late:  # after the export was read back, before the drop
            db.insert(*late.pop())

    summary = run_archive(db, store, SETTINGS, NOW, hook=late_reading_once)

    assert db.history == [(DAY, s) for s in (EXPORTING, UPLOADED, VERIFIED, EXPORTING, UPLOADED, VERIFIED, DROPPED)]
    assert summary.rows_archived == 21 and db.readings(DAY) == {}
    assert sum(line.startswith(b"late,") for line in archived_readings(store, DAY)) == 1


def test_readings_arriving_after_the_drop_are_merged_with_the_archive_even_after_a_crash(db, store):
    fill(db, DAY, 20)
    run_archive(db, store, SETTINGS, NOW)
    fill(db, DAY, 3, device="late")

    with pytest.raises(ArchiveError):
        run_archive(db, store, SETTINGS, NOW, hook=crash_at("merged"))  # archived rows loaded, then a crash
    assert db.load_state(DAY).state is DROPPED and len(db.readings(DAY)) == 3  # rolled back

    summary = run_archive(db, store, SETTINGS, NOW)

    assert summary.rows_archived == 23 and db.readings(DAY) == {}
    lines = archived_readings(store, DAY)
    assert len(lines) == 23 and sum(line.startswith(b"late,") for line in lines) == 3


def test_a_run_skips_when_another_holds_the_lock_or_time_is_short(db, store):
    fill(db, DAY, 5)
    db.locked_by_another_run = True
    assert run_archive(db, store, SETTINGS, NOW).skipped == "another archive run holds the lock"
    db.locked_by_another_run = False

    short = run_archive(db, store, SETTINGS, NOW, time_left_s=lambda: 60.0, min_time_per_day_s=120.0)

    assert short.skipped == f"out of time before {DAY}" and short.days_archived == []
    assert len(db.readings(DAY)) == 5 and store.objects == {} and db.history == []


def test_an_unreachable_bucket_fails_the_run_before_anything_changes(db, store):
    fill(db, DAY, 5)
    store.reachable = False

    with pytest.raises(ArchiveError, match="archive bucket unreachable"):
        run_archive(db, store, SETTINGS, NOW)

    assert len(db.readings(DAY)) == 5 and db.history == [] and store.puts == []
