"""The archive's pure parts: due days, key layout, manifest, state machine, gzip parts and their checks."""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from archive import layout
from archive.manifest import COLUMN_NAMES, Manifest, ManifestError, Part, parse_manifest
from archive.parts import ChecksumMismatch, digest_of, same_s3_checksum, verified_content, write_parts
from archive.states import TRANSITIONS, State, TransitionError, check_transition
from hypothesis import given
from hypothesis import strategies as st

HEADER = b"device_id,ts,seq\n"


class MemoryWriter:
    """An ObjectWriter that keeps the object in memory (the S3 adapter is tested against moto)."""

    def __init__(self, objects: dict[str, bytes], key: str) -> None:
        self.objects = objects
        self.key = key
        self.data = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> str:
        self.objects[self.key] = bytes(self.data)
        return "checksum-of-" + self.key

    def abort(self) -> None:
        self.aborted = True


def batched(rows: list[bytes], size: int) -> list[tuple[int, bytes]]:
    return [(len(rows[i : i + size]), b"".join(rows[i : i + size])) for i in range(0, len(rows), size)]


def write(rows: list[bytes], max_raw_bytes: int, objects: dict[str, bytes], batch: int = 1) -> list[Part]:
    batches = batched(rows, batch)
    return write_parts(HEADER, batches, lambda key: MemoryWriter(objects, key), lambda n: f"p/{n}", max_raw_bytes, 6)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2024, 3, 31, 0, 0, tzinfo=UTC), date(2024, 2, 29)),  # 2024-03-01 00:00 - 30 d: Feb 29 is whole
        (datetime(2024, 3, 31, 23, 59, tzinfo=UTC), date(2024, 2, 29)),
        (datetime(2024, 4, 1, 0, 0, tzinfo=UTC), date(2024, 3, 1)),
        (datetime(2024, 4, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))), date(2024, 2, 29)),  # 23:00 UTC Mar 31
    ],
)
def test_last_due_day_is_the_newest_day_wholly_before_the_retention_cutoff(now, expected):
    assert layout.last_due_day(now, 30) == expected
    assert layout.day_bounds(expected)[1] <= now - timedelta(days=30)
    assert layout.day_bounds(expected + timedelta(days=1))[1] > now - timedelta(days=30)


def test_last_due_day_refuses_naive_times_and_no_retention():
    with pytest.raises(ValueError):
        layout.last_due_day(datetime(2024, 3, 1), 30)
    with pytest.raises(ValueError):
        layout.last_due_day(datetime(2024, 3, 1, tzinfo=UTC), 0)


def test_days_due_are_old_days_with_rows_or_unfinished_oldest_first_without_duplicates():
    d = date(2024, 3, 10)
    with_rows = [d, d - timedelta(days=2), d + timedelta(days=1)]
    unfinished = [d - timedelta(days=5), d]
    assert layout.days_due(with_rows, unfinished, d) == [d - timedelta(days=5), d - timedelta(days=2), d]


def test_key_layout_is_hive_style_and_deterministic():
    day = date(2024, 3, 5)
    assert layout.part_key("telemetry/", day, 7) == "telemetry/year=2024/month=03/day=05/part-00007.csv.gz"
    assert layout.manifest_key("/a/b", day) == "a/b/year=2024/month=03/day=05/manifest.json"
    assert layout.day_prefix("", day) == "year=2024/month=03/day=05/"


def test_manifest_round_trips_and_holds_totals():
    parts = (Part("k/0", 2, 100, 60, "aa", "b64"), Part("k/1", 3, 90, 50, "bb", "c64-2"))
    manifest = Manifest(date(2024, 3, 5), parts, "2024-03-05T00:00:00+00:00", "2024-03-05T23:00:00+00:00")
    document = json.loads(manifest.to_json())

    assert (document["row_count"], document["raw_bytes"], document["stored_bytes"]) == (5, 190, 110)
    assert [column["name"] for column in document["columns"]] == list(COLUMN_NAMES)
    assert document["schema_version"] == 1 and document["time_range"]["max_ts"] == "2024-03-05T23:00:00+00:00"
    assert parse_manifest(manifest.to_json(), date(2024, 3, 5)) == manifest
    assert manifest.to_json() == replace(manifest).to_json()  # no clock inside: same day, same bytes


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(schema_version=2),
        lambda d: d.update(row_count=6),
        lambda d: d["columns"].pop(),
        lambda d: d.pop("parts"),
        lambda d: d.update(day="2024-03-06"),
    ],
)
def test_a_manifest_that_does_not_fit_is_refused(damage):
    manifest = Manifest(date(2024, 3, 5), (Part("k/0", 5, 100, 60, "aa", "b64"),), None, None)
    document = json.loads(manifest.to_json())
    damage(document)
    with pytest.raises(ManifestError):
        parse_manifest(json.dumps(document).encode(), date(2024, 3, 5))


def test_state_machine_only_moves_forward_or_back_to_exporting():
    check_transition(None, State.EXPORTING)
    check_transition(State.VERIFIED, State.DROPPED)
    check_transition(State.DROPPED, State.EXPORTING)
    for old, new in [(None, State.DROPPED), (State.EXPORTING, State.DROPPED), (State.UPLOADED, State.DROPPED)]:
        with pytest.raises(TransitionError):
            check_transition(old, new)
    # Only a verified archive leads to a drop.
    assert [old for old, targets in TRANSITIONS.items() if State.DROPPED in targets] == [State.VERIFIED]


@given(
    rows=st.lists(st.binary(min_size=1, max_size=40).map(lambda b: b + b"\n"), max_size=60),
    max_raw_bytes=st.integers(min_value=20, max_value=400),
    batch=st.integers(min_value=1, max_value=5),
)
def test_parts_hold_every_row_once_in_order_each_with_the_header(rows, max_raw_bytes, batch):
    objects: dict[str, bytes] = {}
    parts = write(rows, max_raw_bytes, objects, batch)

    contents = [gzip.decompress(objects[part.key]) for part in parts]
    assert all(content.startswith(HEADER) for content in contents)
    assert b"".join(content[len(HEADER) :] for content in contents) == b"".join(rows)
    assert sum(part.rows for part in parts) == len(rows)
    assert [part.key for part in parts] == [f"p/{n}" for n in range(len(parts))]
    for part, content in zip(parts, contents, strict=True):
        stored = objects[part.key]
        assert (part.bytes, part.sha256, part.raw_bytes) == (
            len(stored),
            hashlib.sha256(stored).hexdigest(),
            len(content),
        )
        biggest_batch = max(len(raw) for _, raw in batched(rows, batch))
        assert part.raw_bytes <= max(max_raw_bytes, len(HEADER) + biggest_batch)  # only a lone big batch exceeds


def test_parts_are_byte_identical_for_the_same_rows():
    rows = [f"dev-{i},2024-03-05 00:00:{i % 60:02d}+00,{i}\n".encode() for i in range(500)]
    first: dict[str, bytes] = {}
    second: dict[str, bytes] = {}
    assert write(rows, 4000, first, batch=7) == write(rows, 4000, second, batch=7)
    assert first == second and len(first) > 1


def test_a_failing_row_source_aborts_the_open_upload():
    writers: list[MemoryWriter] = []

    def batches():
        yield 1, b"a\n"
        raise RuntimeError("connection lost")

    def open_writer(key: str) -> MemoryWriter:
        writers.append(MemoryWriter({}, key))
        return writers[-1]

    with pytest.raises(RuntimeError):
        write_parts(HEADER, batches(), open_writer, str)
    assert [writer.aborted for writer in writers] == [True]


def test_verified_content_streams_the_csv_and_rejects_other_bytes():
    objects: dict[str, bytes] = {}
    (part,) = write([b"x,1\n", b"y,2\n"], 10_000, objects)
    stored = objects[part.key]
    chunks = [stored[i : i + 7] for i in range(0, len(stored), 7)]

    assert b"".join(verified_content(part, chunks)) == HEADER + b"x,1\ny,2\n"
    other = gzip.compress(HEADER + b"x,1\ny,3\n")
    with pytest.raises(ChecksumMismatch):
        b"".join(verified_content(part, [other]))
    with pytest.raises(ChecksumMismatch):
        b"".join(verified_content(part, [*chunks[:-1], chunks[-1] + b"junk"]))


def test_digest_and_s3_checksum_comparison():
    assert digest_of([b"ab", b"c"]) == (3, hashlib.sha256(b"abc").hexdigest())
    assert same_s3_checksum("abc=-3", "abc=-3") and same_s3_checksum("abc=", "abc=-3")  # moto omits "-N"
    assert not same_s3_checksum(None, "abc=") and not same_s3_checksum("abd=", "abc=")
