"""Load an archived day back into telemetry: `cd functions && python -m archive.restore --day YYYY-MM-DD`
[--database-url URL] [--bucket NAME] [--prefix telemetry/]; or `restore_day(...)` from Python.

Every part is checked against the manifest (size, SHA-256, gzip CRC, row count) before any row is
inserted, all in one transaction; readings already present are kept (ON CONFLICT DO NOTHING), so restoring
twice adds nothing. The day's partition is created if needed. A restored day that is still past retention
is archived again by the next run, to the same bytes, and dropped again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import date

import psycopg
from common.config import database_conninfo
from common.settings import env_required, env_str

from archive import layout
from archive.manifest import parse_manifest
from archive.postgres import load_parts
from archive.s3 import S3ObjectStore


class NotArchived(LookupError):
    """No manifest for the day: it was never archived (or under another bucket/prefix)."""


@dataclass(frozen=True)
class RestoreSummary:
    day: str
    manifest_key: str
    rows_in_archive: int
    rows_inserted: int


def restore_day(
    day: date,
    database_url: str | None = None,
    bucket: str | None = None,
    prefix: str | None = None,
    s3_client=None,
) -> RestoreSummary:
    prefix = prefix if prefix is not None else env_str(os.environ, "ARCHIVE_PREFIX", layout.DEFAULT_PREFIX)
    store = S3ObjectStore(bucket or env_required(os.environ, "ARCHIVE_BUCKET"), client=s3_client)
    key = layout.manifest_key(prefix, day)
    document = store.get(key)
    if document is None:
        raise NotArchived(f"no archive manifest s3://{store.bucket}/{key}")
    manifest = parse_manifest(document, day)
    with psycopg.connect(database_url or database_conninfo()) as conn, conn.transaction():
        archived, inserted = load_parts(conn, day, manifest, store.read)
    return RestoreSummary(day.isoformat(), key, archived, inserted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archive.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", required=True, type=date.fromisoformat, help="UTC day, YYYY-MM-DD")
    parser.add_argument("--database-url", help="default: DATABASE_URL / DB_SECRET_ARN")
    parser.add_argument("--bucket", help="default: ARCHIVE_BUCKET")
    parser.add_argument("--prefix", help=f"default: ARCHIVE_PREFIX or {layout.DEFAULT_PREFIX}")
    args = parser.parse_args(argv)
    try:
        summary = restore_day(args.day, args.database_url, args.bucket, args.prefix)
    except NotArchived as exc:
        print(exc, file=sys.stderr)
        return 2
    print(json.dumps(asdict(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
