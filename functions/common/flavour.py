"""Which schema flavour a database gets: `timescale` (telemetry is a TimescaleDB hypertable) or `postgres`
(telemetry is natively partitioned by day).

IOTKPI_DB_FLAVOUR asks for one: `auto` (the default) takes `timescale` when the server can host it, else
`postgres`; `timescale` and `postgres` insist. A server can host TimescaleDB when the timescaledb library is
loaded, which only shared_preload_libraries can do at server start (CREATE EXTENSION without it ends the
session with a FATAL error), and the extension is installed on the server. A database keeps the flavour its
first migration recorded. Every refusal is raised before the migrations touch the database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg

from common.settings import ConfigError

FLAVOUR_ENV = "IOTKPI_DB_FLAVOUR"
FLAVOURS = ("postgres", "timescale")
REQUESTS = ("auto", *FLAVOURS)

# The loaded library registers its timescaledb.* settings in every session. Asking pg_settings works for a
# migrator that is not a superuser too: shared_preload_libraries itself is readable only by superusers and
# members of pg_read_all_settings.
SERVER_SUPPORT = """
SELECT EXISTS (SELECT FROM pg_settings WHERE name LIKE 'timescaledb.%'),
       EXISTS (SELECT FROM pg_available_extensions WHERE name = 'timescaledb')
"""


class FlavourError(RuntimeError):
    """The flavour asked for, or recorded, cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class TimescaleSupport:
    """What the server offers TimescaleDB."""

    library_loaded: bool
    extension_available: bool

    @property
    def missing(self) -> str | None:
        """Why the server cannot host the timescale flavour; None when it can."""
        if not self.extension_available:
            return (
                "the server has no timescaledb extension (pg_available_extensions does not list it): install "
                "TimescaleDB for the server's PostgreSQL version"
            )
        if not self.library_loaded:
            return (
                "the server does not load the timescaledb library: add timescaledb to shared_preload_libraries "
                "(postgresql.conf) and restart the server"
            )
        return None


def timescale_support(conn: psycopg.Connection) -> TimescaleSupport:
    loaded, available = conn.execute(SERVER_SUPPORT).fetchone()
    return TimescaleSupport(library_loaded=loaded, extension_available=available)


def requested_flavour(environ: Mapping[str, str] = os.environ) -> str:
    """IOTKPI_DB_FLAVOUR: auto (when unset or blank), timescale or postgres."""
    value = environ.get(FLAVOUR_ENV, "").strip().lower() or "auto"
    if value not in REQUESTS:
        raise ConfigError(f"{FLAVOUR_ENV}={value!r} is not one of {', '.join(REQUESTS)}")
    return value


def choose_flavour(requested: str, recorded: str | None, support: TimescaleSupport) -> str:
    """The flavour to migrate with: the recorded one when the database has one, else the requested one, with
    `auto` resolved by what the server supports. FlavourError when that cannot be honoured."""
    if recorded is not None and requested not in ("auto", recorded):
        raise FlavourError(
            f"{FLAVOUR_ENV}={requested}, but this database was migrated with the {recorded} flavour and keeps "
            f"it: unset {FLAVOUR_ENV} (or set it to {recorded}), or migrate a new database"
        )
    wanted = recorded or requested
    if wanted == "auto":
        return "postgres" if support.missing else "timescale"
    if wanted == "timescale" and support.missing:
        asked = "this database was migrated with the timescale flavour" if recorded else f"{FLAVOUR_ENV}=timescale"
        raise FlavourError(f"{asked}, but {support.missing}")
    return wanted
