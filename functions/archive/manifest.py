"""The manifest: what one archived day holds, written as `manifest.json` after its parts. Pure.

Format: CSV written by PostgreSQL's own COPY (header line, NULL as an unquoted empty field, empty text as
""), gzip-compressed. Chosen over JSON lines because the server's text output round-trips every column
type exactly and needs no Python per row: `real` is printed shortest-exact (extra_float_digits > 0),
timestamptz in ISO with its UTC offset and microseconds, jsonb in its canonical text (numbers keep their
numeric precision, which a JSON parser's floats would not), and COPY FROM reads all of it back bit for bit.

The manifest holds no wall-clock time: the same rows always give the same bytes, parts and manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date

SCHEMA_VERSION = 1
FORMAT = "csv+gzip"
# The archived columns, in file order, with their PostgreSQL types.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("device_id", "text"),
    ("ts", "timestamptz"),
    ("seq", "bigint"),
    ("rss", "real"),
    ("battery", "real"),
    ("temperature", "real"),
    ("humidity", "real"),
    ("firmware", "text"),
    ("payload", "jsonb"),
    ("received_at", "timestamptz"),
    ("ingested_at", "timestamptz"),
)
COLUMN_NAMES = tuple(name for name, _ in COLUMNS)
ORDER_BY = ("device_id", "ts", "seq")


class ManifestError(ValueError):
    """A manifest that cannot be read or does not describe the day asked for."""


@dataclass(frozen=True)
class Part:
    key: str
    rows: int
    raw_bytes: int  # uncompressed CSV, header included
    bytes: int  # the gzip object
    sha256: str  # hex digest of the gzip object (what `sha256sum` of the download prints)
    s3_checksum_sha256: str  # what S3 stores: base64 SHA-256, or for multipart uploads the composite "<b64>-N"


@dataclass(frozen=True)
class Manifest:
    day: date
    parts: tuple[Part, ...]
    min_ts: str | None  # ISO-8601 of the earliest / latest reading; None for an empty day
    max_ts: str | None

    @property
    def row_count(self) -> int:
        return sum(part.rows for part in self.parts)

    @property
    def raw_bytes(self) -> int:
        return sum(part.raw_bytes for part in self.parts)

    @property
    def stored_bytes(self) -> int:
        return sum(part.bytes for part in self.parts)

    def to_json(self) -> bytes:
        document = {
            "schema_version": SCHEMA_VERSION,
            "table": "telemetry",
            "day": self.day.isoformat(),
            "format": FORMAT,
            "columns": [{"name": name, "type": type_} for name, type_ in COLUMNS],
            "order_by": list(ORDER_BY),
            "row_count": self.row_count,
            "raw_bytes": self.raw_bytes,
            "stored_bytes": self.stored_bytes,
            "time_range": {"min_ts": self.min_ts, "max_ts": self.max_ts},
            "parts": [asdict(part) for part in self.parts],
        }
        return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()

    def parts_json(self) -> list[dict]:
        return [asdict(part) for part in self.parts]


def parse_manifest(data: bytes, expected_day: date) -> Manifest:
    try:
        document = json.loads(data)
        version = document["schema_version"]
        if version != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema version {version!r}; this code reads {SCHEMA_VERSION}")
        columns = tuple((column["name"], column["type"]) for column in document["columns"])
        if columns != COLUMNS or document["format"] != FORMAT:
            raise ManifestError(f"manifest columns/format differ from this code's: {columns}, {document['format']}")
        day = date.fromisoformat(document["day"])
        parts = tuple(Part(**part) for part in document["parts"])
        manifest = Manifest(day, parts, document["time_range"]["min_ts"], document["time_range"]["max_ts"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ManifestError):
            raise
        raise ManifestError(f"unreadable manifest: {exc!r}") from exc
    if manifest.day != expected_day:
        raise ManifestError(f"manifest is for {manifest.day}, expected {expected_day}")
    if manifest.row_count != document["row_count"]:
        raise ManifestError(f"manifest row_count {document['row_count']} != sum of its parts {manifest.row_count}")
    return manifest
