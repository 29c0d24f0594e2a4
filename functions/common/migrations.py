"""Versioned schema migrations: `migrate(url)` or `python -m common.migrations [url]` (`make migrate`).

Files `migrations/NNN_name.sql` apply on every server; `migrations/<flavour>/NNN_name.sql` only on that
flavour, right after the shared file of the same version (a version may have either or both). The flavour,
`timescale` or `postgres`, is chosen by common.flavour (IOTKPI_DB_FLAVOUR, what the server supports, what the
database recorded) before anything is applied. Each version applies in one transaction and is recorded in
`schema_migrations` with its flavour and the checksum of its files: re-running is a no-op, and an applied
file that has changed since is an error (write a new version instead), raised before anything is applied.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg

from common.flavour import FLAVOURS, FlavourError, choose_flavour, requested_flavour, timescale_support
from common.settings import ConfigError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
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


@dataclass(frozen=True)
class MigrationRun:
    flavour: str
    applied: list[str]  # the versions this run applied; empty when the schema was up to date


def recorded_flavour(conn: psycopg.Connection) -> str | None:
    """The flavour the database's first migration recorded; None for a database never migrated."""
    if conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None:
        return None
    row = conn.execute("SELECT flavour FROM schema_migrations ORDER BY version LIMIT 1").fetchone()
    return row[0] if row else None


def migrate(database_url: str, requested: str | None = None) -> MigrationRun:
    """Apply the pending migrations of the database's flavour. `requested` is auto|timescale|postgres,
    IOTKPI_DB_FLAVOUR by default."""
    requested = requested or requested_flavour()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        flavour = choose_flavour(requested, recorded_flavour(conn), timescale_support(conn))
        conn.execute(SCHEMA_MIGRATIONS)
        applied = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
        migrations = discover(flavour)
        for migration in migrations:
            if migration.version in applied and applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version} ({migration.name}) changed after it was applied; "
                    "add a new version instead of editing an applied one"
                )
        pending = [migration for migration in migrations if migration.version not in applied]
        for migration in pending:
            with conn.transaction():
                for path in migration.files:
                    # No parameters: psycopg sends the file as one simple query, so it may hold many statements.
                    conn.execute(path.read_text().encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, flavour, checksum) VALUES (%s, %s, %s, %s)",
                    (migration.version, migration.name, flavour, migration.checksum),
                )
        return MigrationRun(flavour, [migration.version for migration in pending])


def main(argv: list[str]) -> int:
    from common.config import database_conninfo

    url = argv[0] if argv else database_conninfo()
    try:
        run = migrate(url)
    except (ConfigError, FlavourError, MigrationError, psycopg.OperationalError) as exc:  # says what to do
        print(f"migrate: {exc}", file=sys.stderr)
        return 2
    print(f"{run.flavour} flavour: " + (f"applied {', '.join(run.applied)}" if run.applied else "schema up to date"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
