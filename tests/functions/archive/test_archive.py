"""The archive against real PostgreSQL and a real moto S3 server.

Readings are inserted for days 40 days back (the default retention is 30). Every check compares the exact
stored bits of every column (float4send for `real`, jsonb text, timestamps to the microsecond) before the
archive and after a restore. Crashes are real exceptions raised from the archive's hook at a named step.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import boto3
import psycopg
import pytest
from archive import handler, layout
from archive.manifest import parse_manifest
from archive.parts import ChecksumMismatch
from archive.postgres import RUN_LOCK_KEY, PostgresArchiveDatabase
from archive.restore import restore_day
from archive.s3 import S3ObjectStore
from archive.service import STEPS, ArchiveError, run_archive
from archive.settings import ArchiveSettings
from common.db import Database
from common.migrations import migrate
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from localcloud.servers.procs import free_port
from tests.fixtures.telemetry_storage import compress_day, day_tables, drop_day_tables

NOW = datetime.now(UTC)
OLD_DAY = (NOW - timedelta(days=40)).date()
SETTINGS = ArchiveSettings(retention_days=30, prefix="telemetry/")
COLUMNS = "device_id, ts, seq, rss, battery, temperature, humidity, firmware, payload, received_at, ingested_at"
# Every column's exact stored value: the bits of each real, jsonb's canonical text, timestamps as values.
SNAPSHOT = """
SELECT device_id, ts, seq, float4send(rss), float4send(battery), float4send(temperature), float4send(humidity),
       firmware, payload::text, received_at, ingested_at
FROM telemetry WHERE ts >= %s AND ts < %s ORDER BY device_id, ts, seq
"""
FUNCTIONS_DIR = Path(__file__).resolve().parents[3] / "functions"


def at(day: date, hour: int, minute: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, 0, micro, tzinfo=UTC)


def tricky_rows(day: date) -> list[tuple]:
    """Values that break naive formats: inexact and extreme reals, NaN, NULL vs empty text, quotes, commas,
    newlines, non-ASCII, jsonb numbers with trailing zeros and beyond double precision."""
    return [
        ("dev,\"quoted\"", at(day, 0), 1, -70.3, None, 21.1, None, "", Jsonb({}), None, at(day, 0, 0, 1)),
        ("dev-a", at(day, 0, 1, 123456), 2, 1e-45, 3.4028235e38, float("nan"), float("-inf"), None,
         Jsonb({"text": "line1\nline2,\"x\"\\", "n": 1}), at(day, 0, 2), at(day, 0, 3)),
        ("dev-a", at(day, 23, 59, 999999), 3, -0.0, 0.1, -273.15, 99.99, "fw-ü-✓",
         Jsonb({"nested": {"list": [1, None, True, "é"]}}), at(day, 23, 59), at(day, 23, 59, 1)),
    ]  # fmt: skip


def insert(url: str, rows: list[tuple]) -> None:
    days = sorted({row[1].date() for row in rows})
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT telemetry_ensure_partitions(%s::date[])", (days,))
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO telemetry ({COLUMNS}) VALUES ({', '.join(['%s'] * 11)})", rows)
        # jsonb numbers that a JSON parser's floats would not keep
        conn.execute(
            'UPDATE telemetry SET payload = payload || \'{"price": 1.10, "big": 123456789012345678901234567890.5}\''
            " WHERE seq = 1 AND ts >= %s AND ts < %s",
            layout.day_bounds(days[0]),
        )


def bulk_rows(day: date, count: int, payload_bytes: int = 0, device: str = "bulk") -> list[tuple]:
    return [
        (device, at(day, 1) + timedelta(seconds=i), i, -60.0 - i % 40, 50.5, 20.25, 40.0, "1.0",
         Jsonb({"blob": base64.b64encode(os.urandom(payload_bytes)).decode()} if payload_bytes else {"i": i}),
         at(day, 1), at(day, 2))
        for i in range(count)
    ]  # fmt: skip


def snapshot(url: str, day: date) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(SNAPSHOT, layout.day_bounds(day)).fetchall()


def state_of(url: str, day: date) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state FROM archive_days WHERE day = %s", (day,)).fetchone()
    return row[0] if row else None


# Overrides the shared UTC `url` of tests/functions/conftest.py: the archive must not depend on the session's
# time zone.
@pytest.fixture
def url(database_url):
    migrate(database_url)
    return make_conninfo(database_url, options="-c TimeZone=Europe/Paris")  # not UTC on purpose


@pytest.fixture
def db(url):
    database = Database(lambda: url)
    yield PostgresArchiveDatabase(database)
    database.reset()


@pytest.fixture
def s3(aws_endpoint):
    return aws_endpoint.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"archive-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(s3, bucket):
    return S3ObjectStore(bucket, client=s3, chunk_bytes=5 * 1024 * 1024)


def objects(s3, bucket: str) -> dict[str, str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def archive(db, store, settings=SETTINGS, hook=None, now=NOW):
    return run_archive(db, store, settings, now, **({"hook": hook} if hook else {}))


def crash_at(step: str):
    def hook(name: str, day: date) -> None:
        if name == step:
            raise RuntimeError(f"injected crash at {step}")

    return hook


def test_archive_drops_the_day_and_restore_gives_back_identical_rows(url, db, store, s3, bucket, db_flavour):
    insert(url, tricky_rows(OLD_DAY))
    before = snapshot(url, OLD_DAY)
    assert len(day_tables(url, db_flavour, OLD_DAY)) == 1  # its partition, or its one-day chunk

    summary = archive(db, store)

    assert summary.days_archived == [OLD_DAY.isoformat()] and summary.rows_archived == 3
    assert snapshot(url, OLD_DAY) == [] and day_tables(url, db_flavour, OLD_DAY) == []
    assert state_of(url, OLD_DAY) == "dropped"
    prefix = layout.day_prefix("telemetry/", OLD_DAY)
    assert set(objects(s3, bucket)) == {f"{prefix}part-00000.csv.gz", f"{prefix}manifest.json"}
    manifest = parse_manifest(store.get(f"{prefix}manifest.json"), OLD_DAY)
    assert (manifest.row_count, manifest.min_ts, manifest.max_ts) == (
        3, at(OLD_DAY, 0).isoformat(), at(OLD_DAY, 23, 59, 999999).isoformat(),
    )  # fmt: skip

    restored = restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)

    assert (restored.rows_in_archive, restored.rows_inserted) == (3, 3)
    assert snapshot(url, OLD_DAY) == before
    assert restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3).rows_inserted == 0


def test_large_day_streams_into_several_parts_and_multipart_uploads(url, db, store, s3, bucket):
    insert(url, bulk_rows(OLD_DAY, 3000, payload_bytes=3000))  # ~12 MB raw, barely compressible
    before = snapshot(url, OLD_DAY)

    archive(db, store, ArchiveSettings(part_max_raw_bytes=9 * 1024 * 1024))

    manifest = parse_manifest(store.get(layout.manifest_key("telemetry/", OLD_DAY)), OLD_DAY)
    assert len(manifest.parts) == 2 and manifest.row_count == 3000
    assert manifest.parts[0].s3_checksum_sha256.endswith("-2")  # > one 5 MiB chunk: multipart, composite
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert snapshot(url, OLD_DAY) == before


@pytest.mark.parametrize("step", STEPS[1:])
def test_a_crash_at_any_step_converges_on_the_next_run(url, db, store, s3, bucket, step):
    insert(url, tricky_rows(OLD_DAY) + bulk_rows(OLD_DAY, 500))
    before = snapshot(url, OLD_DAY)

    with pytest.raises(ArchiveError) as failure:
        archive(db, store, hook=crash_at(step))

    assert str(failure.value.__cause__) == f"injected crash at {step}"
    assert snapshot(url, OLD_DAY) == before  # nothing dropped (a crash inside the drop rolls it back)
    assert state_of(url, OLD_DAY) in ("exporting", "uploaded", "verified")

    summary = archive(db, store)

    assert summary.days_archived == [OLD_DAY.isoformat()] and summary.rows_archived == len(before)
    assert snapshot(url, OLD_DAY) == [] and state_of(url, OLD_DAY) == "dropped"
    assert len(objects(s3, bucket)) == 2  # one part, one manifest: nothing duplicated or left over
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert snapshot(url, OLD_DAY) == before


def test_a_drop_whose_state_update_was_lost_is_completed_from_the_manifest(url, db, store, s3, bucket, db_flavour):
    insert(url, tricky_rows(OLD_DAY))
    before = snapshot(url, OLD_DAY)
    with pytest.raises(ArchiveError):
        archive(db, store, hook=crash_at("dropped"))
    assert state_of(url, OLD_DAY) == "verified"
    drop_day_tables(url, db_flavour, OLD_DAY)  # the day's storage went, the state did not follow
    assert snapshot(url, OLD_DAY) == []

    archive(db, store)

    assert state_of(url, OLD_DAY) == "dropped"
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert snapshot(url, OLD_DAY) == before


def test_a_compressed_day_is_archived_dropped_and_restored_exactly(url, db, store, s3, bucket, db_flavour):
    if db_flavour != "timescale":
        pytest.skip("only TimescaleDB compresses old days (its compression policy); plain partitions stay as they are")
    insert(url, tricky_rows(OLD_DAY) + bulk_rows(OLD_DAY, 500))
    before = snapshot(url, OLD_DAY)
    assert compress_day(url, OLD_DAY) == [True]
    assert snapshot(url, OLD_DAY) == before

    summary = archive(db, store)

    assert summary.rows_archived == len(before) and state_of(url, OLD_DAY) == "dropped"
    assert snapshot(url, OLD_DAY) == [] and day_tables(url, db_flavour, OLD_DAY) == []
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert snapshot(url, OLD_DAY) == before


def test_readings_arriving_during_the_archive_are_archived_too(url, db, store, s3, bucket):
    insert(url, tricky_rows(OLD_DAY))
    late = bulk_rows(OLD_DAY, 1, device="late")

    def insert_late_once(step: str, day: date) -> None:
        if step == "verified" and late:
            insert(url, [late.pop()])  # between the export and the drop

    summary = archive(db, store, hook=insert_late_once)

    assert summary.rows_archived == 4 and snapshot(url, OLD_DAY) == []
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert len(snapshot(url, OLD_DAY)) == 4


def test_readings_arriving_after_the_drop_are_merged_into_the_archive(url, db, store, s3, bucket):
    insert(url, tricky_rows(OLD_DAY))
    archive(db, store)
    insert(url, bulk_rows(OLD_DAY, 5, device="late"))  # recreates the partition
    with pytest.raises(ArchiveError):
        archive(db, store, hook=crash_at("merged"))  # archived rows loaded back, then a crash: rolled back
    assert state_of(url, OLD_DAY) == "dropped" and len(snapshot(url, OLD_DAY)) == 5

    summary = archive(db, store)

    assert summary.rows_archived == 8 and snapshot(url, OLD_DAY) == []
    manifest = parse_manifest(store.get(layout.manifest_key("telemetry/", OLD_DAY)), OLD_DAY)
    assert manifest.row_count == 8 and len(objects(s3, bucket)) == 2
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)
    assert len(snapshot(url, OLD_DAY)) == 8


def test_a_restored_day_is_archived_again_to_the_same_bytes(url, db, store, s3, bucket):
    insert(url, tricky_rows(OLD_DAY) + bulk_rows(OLD_DAY, 100))
    archive(db, store)
    first = objects(s3, bucket)
    restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)

    archive(db, store)

    assert objects(s3, bucket) == first  # same keys, same ETags: deterministic, no duplicate rows
    assert snapshot(url, OLD_DAY) == []


@pytest.mark.parametrize("unreachable", ["closed port", "missing bucket"])
def test_an_unreachable_bucket_drops_nothing_and_fails_the_run(url, db, s3, unreachable):
    insert(url, tricky_rows(OLD_DAY))
    before = snapshot(url, OLD_DAY)
    if unreachable == "closed port":
        client = boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1",
            aws_access_key_id="test", aws_secret_access_key="test",
        )  # fmt: skip
        store = S3ObjectStore("archive-bucket", client=client)
    else:
        store = S3ObjectStore(f"missing-{uuid.uuid4().hex[:12]}", client=s3)

    with pytest.raises(ArchiveError, match="archive bucket unreachable"):
        archive(db, store)

    assert snapshot(url, OLD_DAY) == before and state_of(url, OLD_DAY) is None


def test_recent_days_are_never_touched_and_a_second_run_is_a_no_op(url, db, store, s3, bucket):
    last_due = layout.last_due_day(NOW, 30)
    for day in (last_due, last_due + timedelta(days=1), NOW.date()):
        insert(url, bulk_rows(day, 10))
    kept = {day: snapshot(url, day) for day in (last_due + timedelta(days=1), NOW.date())}

    first = archive(db, store)
    stored = objects(s3, bucket)
    second = archive(db, store)

    assert first.days_archived == [last_due.isoformat()]
    assert (second.days_due, second.days_archived) == ([], [])
    assert objects(s3, bucket) == stored
    assert {day: snapshot(url, day) for day in kept} == kept
    assert snapshot(url, last_due) == []


def test_a_run_skips_when_another_holds_the_lock_or_time_is_short(url, db, store, s3, bucket):
    insert(url, tricky_rows(OLD_DAY))
    with psycopg.connect(url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (RUN_LOCK_KEY,))
        assert archive(db, store).skipped == "another archive run holds the lock"
    short = run_archive(db, store, SETTINGS, NOW, time_left_s=lambda: 60.0, min_time_per_day_s=120.0)

    assert short.skipped == f"out of time before {OLD_DAY}" and short.days_archived == []
    assert len(snapshot(url, OLD_DAY)) == 3 and objects(s3, bucket) == {}


def test_restore_refuses_a_tampered_part_and_inserts_nothing(url, db, store, s3, bucket):
    insert(url, tricky_rows(OLD_DAY))
    archive(db, store)
    key = layout.part_key("telemetry/", OLD_DAY, 0)
    tampered = gzip.decompress(store.get(key)).replace(b"dev-a", b"dev-b")  # still valid gzip and CSV
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(tampered))

    with pytest.raises(ChecksumMismatch):
        restore_day(OLD_DAY, url, bucket, "telemetry/", s3_client=s3)

    assert snapshot(url, OLD_DAY) == []


def test_restore_command_and_scheduled_handler(url, aws_env, bucket, s3, monkeypatch):
    insert(url, tricky_rows(OLD_DAY))
    before = snapshot(url, OLD_DAY)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ARCHIVE_BUCKET", bucket)
    handler.db.reset()
    try:
        summary = handler.lambda_handler({"detail-type": "Scheduled Event", "source": "aws.events"}, LambdaContext())
    finally:
        handler.db.reset()
    assert summary["days_archived"] == [OLD_DAY.isoformat()] and snapshot(url, OLD_DAY) == []

    result = subprocess.run(
        [sys.executable, "-m", "archive.restore", "--day", OLD_DAY.isoformat(), "--database-url", url],
        cwd=FUNCTIONS_DIR, env=os.environ.copy(), capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip

    assert json.loads(result.stdout)["rows_inserted"] == 3
    assert snapshot(url, OLD_DAY) == before


class LambdaContext:
    function_name = "iotkpi-archive"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:iotkpi-archive"
    aws_request_id = "0b9e6f5c-2c41-4c1e-9f1e-6f3a1f1d2c3b"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000
