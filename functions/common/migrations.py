"""Versioned schema migrations: `migrate(url)` or `python -m common.migrations [url]`.

Files `migrations/NNN_name.sql` apply on every server; `migrations/<flavour>/NNN_name.sql` only on that
flavour, right after the shared file of the same version (a version may have either or both). Flavours:
`timescale` when the server offers the timescaledb extension, else `postgres` (native partitioning); the
flavour chosen by the first run is kept. Each version applies in one transaction and is recorded in
`schema_migrations` with the checksum of its files: re-running is a no-op, and an applied file that has
changed since is an error (write a new version instead).
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
FLAVOURS = ("postgres", "timescale")
FILE_NAME = re.compile(r"(\d{3})_(\w+)\.sql")
# Serialises concurrent migrators (two functions cold-starting, local-up racing a test run).
LOCK_KEY = 0x10_7C_9A_01

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    flavour    text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The database's recorded migrations disagree with the files."""


@dataclass(frozen=True)
class Migration:
    version: str
    files: tuple[Path, ...]  # shared file first, then the flavour's

    @property
    def name(self) -> str:
        return "+".join(FILE_NAME.fullmatch(f.name).group(2) for f in self.files)  # type: ignore[union-attr]

    @property
    def checksum(self) -> str:
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(path.relative_to(MIGRATIONS_DIR).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


def discover(flavour: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for `flavour`, in version order."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; expected one of {FLAVOURS}")
    by_version: dict[str, list[Path]] = {}
    for folder in (directory, directory / flavour):
        for path in sorted(folder.glob("*.sql")):
            match = FILE_NAME.fullmatch(path.name)
            if not match:
                raise MigrationError(f"{path}: migration files are named NNN_name.sql")
            files = by_version.setdefault(match.group(1), [])
            if files and files[-1].parent == path.parent:
                raise MigrationError(f"two files for version {match.group(1)} in {folder}")
            files.append(path)
    return [Migration(version, tuple(files)) for version, files in sorted(by_version.items())]


def detect_flavour(conn: psycopg.Connection) -> str:
    recorded = conn.execute("SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    if recorded:
        return recorded[0]
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return "timescale" if available else "postgres"


def migrate(database_url: str) -> list[str]:
    """Apply the pending migrations; return the versions applied (empty when up to date)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        conn.execute(SCHEMA_MIGRATIONS)
        flavour = detect_flavour(conn)
        applied = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        done: list[str] = []
        for migration in discover(flavour):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} ({migration.name}) changed after it was applied; "
                        "add a new version instead of editing an applied one"
                    )
                continue
            with conn.transaction():
                for path in migration.files:
                    # No parameters: psycopg sends the file as one simple query, so it may hold many statements.
                    conn.execute(path.read_text().encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES (%s, %s, %s, %s)",
                    (migration.version, migration.name, flavour, migration.checksum),
                )
            done.append(migration.version)
        return done


def main(argv: list[str]) -> int:
    from common.config import database_conninfo

    url = argv[0] if argv else database_conninfo()
    applied = migrate(url)
    print(f"applied: {', '.join(applied)}" if applied else "schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
