"""The functions' login against a real PostgreSQL with the real schema: not a superuser, yet able to do everything
the functions do (day partitions created, detached and dropped, COPY, locks), and nothing a superuser does."""

from __future__ import annotations

import uuid
from datetime import date

import psycopg
import pytest
from archive.postgres import TIMESCALE_DROP_CHUNKS
from common.config import conninfo_from_secret
from common.migrations import migrate
from psycopg import sql

from localcloud.servers.postgres_logins import FUNCTIONS_LOGIN, ensure_functions_login
from tests.fixtures.telemetry_storage import day_range


@pytest.fixture
def migrated(database_url: str) -> str:
    migrate(database_url)
    return database_url


def as_functions(secret: dict) -> psycopg.Connection:
    return psycopg.connect(conninfo_from_secret(secret), autocommit=True)


def test_the_secret_is_the_readme_shape_for_a_plain_login(migrated):
    secret = ensure_functions_login(migrated)
    assert set(secret) == {"host", "port", "username", "password", "dbname"}
    assert secret["username"] == FUNCTIONS_LOGIN and isinstance(secret["port"], int)
    with as_functions(secret) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (FUNCTIONS_LOGIN,)
        flags = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        assert flags.fetchone() == (False, False, False)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE ROLE someone_else")


def test_the_login_owns_the_schema_and_does_what_the_ingest_and_the_archive_do(migrated, db_flavour):
    secret = ensure_functions_login(migrated)
    day = date(2001, 2, 3)  # a day no migration created a partition for
    with as_functions(secret) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchall()
        assert owners == [(FUNCTIONS_LOGIN,)]
        # A day's storage made for the ingest: a partition, or nothing to do where TimescaleDB makes chunks.
        made = conn.execute("SELECT telemetry_ensure_partitions(ARRAY[%s::date])", (day,)).fetchone()
        assert made == ((0,) if db_flavour == "timescale" else (1,))
        with conn.cursor().copy("COPY telemetry (device_id, ts, seq, rss) FROM STDIN") as copy:
            copy.write_row(("dev-1", "2001-02-03T10:00:00Z", 1, -70.0))
        with conn.transaction():
            conn.execute("LOCK TABLE telemetry IN SHARE ROW EXCLUSIVE MODE")
            conn.execute("LOCK TABLE kpi_dirty_hours IN SHARE ROW EXCLUSIVE MODE")
        # The archive's drop of the day, as the login.
        if db_flavour == "timescale":
            start, end = day_range(day)
            conn.execute(TIMESCALE_DROP_CHUNKS, {"start": start, "end": end})
        else:
            partition = sql.Identifier("telemetry_p20010203")
            conn.execute(sql.SQL("ALTER TABLE telemetry DETACH PARTITION {}").format(partition))
            conn.execute(sql.SQL("DROP TABLE {}").format(partition))
        assert conn.execute("SELECT count(*) FROM telemetry WHERE device_id = 'dev-1'").fetchone() == (0,)
        conn.execute("CREATE TEMPORARY TABLE staging (LIKE telemetry) ON COMMIT DROP")


def test_tables_a_later_migration_adds_are_handed_over_on_the_next_run(migrated):
    ensure_functions_login(migrated)
    table = f"added_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(migrated, autocommit=True) as admin:  # a new migration, run as the superuser
        admin.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY)").format(sql.Identifier(table)))
    secret = ensure_functions_login(migrated)
    with as_functions(secret) as conn:
        conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table)))  # the sequence too
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


@pytest.mark.usefixtures("passwords_checked")
def test_a_given_password_is_kept_and_a_new_one_replaces_the_old(migrated):
    first = ensure_functions_login(migrated)
    assert ensure_functions_login(migrated, first["password"]) == first
    second = ensure_functions_login(migrated)
    assert second["password"] != first["password"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        as_functions(first).close()
    as_functions(second).close()
