"""Schema migrations on a real server, in the session's flavour (`db_flavour`); the flavour chosen and kept on
servers with and without TimescaleDB; the TimescaleDB file parsed with pglast."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from common.flavour import FlavourError, TimescaleSupport, timescale_support
from common.migrations import MIGRATIONS_DIR, MigrationError, MigrationRun, discover, migrate
from pglast import ast, parse_sql
from pglast.visitors import Visitor
from psycopg import sql

from localcloud.config import FUNCTIONS_DIR
from localcloud.servers.postgres import temporary_cluster
from tests.fixtures.telemetry_storage import day_tables

TIMESCALE_FILE = MIGRATIONS_DIR / "timescale" / "001_telemetry.sql"
POSTGRES_FILE = MIGRATIONS_DIR / "postgres" / "001_telemetry.sql"
PRELOAD_HINT = (
    "IOTKPI_DB_FLAVOUR=timescale, but the server does not load the timescaledb library: add timescaledb to "
    "shared_preload_libraries"
)
# The functions of TimescaleDB's documented API the timescale flavour may call.
TIMESCALE_API = {"create_hypertable", "by_range", "add_compression_policy", "add_retention_policy"}


def query(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_migrations_apply_once_and_rerun_as_a_no_op(database_url, db_flavour):
    first = migrate(database_url).applied
    assert first == [m.version for m in discover(db_flavour)]
    assert migrate(database_url) == MigrationRun(db_flavour, [])
    recorded = query(database_url, "SELECT version, flavour FROM schema_migrations ORDER BY version")
    assert recorded == [(version, db_flavour) for version in first]
    tables = {name for (name,) in query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"devices", "ingest_rejects", "kpi_dirty_hours", "schema_migrations"} <= tables
    if db_flavour == "postgres":
        assert query(database_url, "SELECT relkind FROM pg_class WHERE relname = 'telemetry'") == [("p",)]
    else:
        dimensions = "SELECT column_name, time_interval FROM timescaledb_information.dimensions"
        assert query(database_url, dimensions) == [("ts", timedelta(days=1))]
        jobs = "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = 'telemetry' ORDER BY 1"
        assert query(database_url, jobs) == [("policy_compression",), ("policy_retention",)]


def test_changed_applied_migration_is_an_error(database_url):
    migrate(database_url)
    query(database_url, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = '001'")
    with pytest.raises(MigrationError, match="001"):
        migrate(database_url)


def test_concurrent_migrators_apply_each_version_once(database_url, db_flavour):
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(database_url).applied)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(len(r) for r in results) == [0, 0, len(discover(db_flavour))]


def partitions(url: str) -> set[str]:
    rows = query(url, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'telemetry'::regclass")
    return {name for (name,) in rows}


def test_partitions_are_created_ahead_and_on_demand_for_late_days(database_url, db_flavour):
    migrate(database_url)
    today = datetime.now(UTC).date()
    late = date(2020, 2, 29)
    ensure = "SELECT telemetry_ensure_partitions(%s::date[])"
    if db_flavour == "postgres":
        ahead = {f"telemetry_p{today + timedelta(days=n):%Y%m%d}" for n in range(-1, 8)}
        assert ahead <= partitions(database_url)
        assert query(database_url, ensure, ([late, late, today],)) == [(1,)]
        assert query(database_url, ensure, ([late],)) == [(0,)]
    else:  # TimescaleDB creates the chunk on insert: the ingest's call is a no-op
        assert query(database_url, ensure, ([late, late, today],)) == [(0,)]
        assert day_tables(database_url, db_flavour, late) == []
    # The day's partition (or chunk) holds exactly that UTC day.
    day_start = datetime(2020, 2, 29, tzinfo=UTC)
    query(
        database_url,
        "INSERT INTO telemetry (device_id, ts, seq, rss) VALUES ('d', %s, 1, -50), ('d', %s, 2, -50)",
        (day_start, day_start + timedelta(days=1) - timedelta(microseconds=1)),
    )
    (day_table,) = day_tables(database_url, db_flavour, late)
    assert query(database_url, "SELECT DISTINCT tableoid::regclass::text FROM telemetry") == [(day_table,)]


def test_reader_role_can_read_every_table_and_write_none(database_url, pg_cluster):
    if pg_cluster is None:
        pytest.skip("needs the private cluster to create a login role")
    migrate(database_url)
    login, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE iotkpi_reader").format(
                sql.Identifier(login), sql.Literal(password)
            )
        )
    try:
        reader_url = psycopg.conninfo.make_conninfo(database_url, user=login, password=password)
        tables = [t for (t,) in query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        with psycopg.connect(reader_url) as conn:
            for table in tables:
                conn.execute(sql.SQL("SELECT * FROM {} LIMIT 1").format(sql.Identifier(table)))
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("INSERT INTO devices (device_id, first_seen, last_seen) VALUES ('x', now(), now())")
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(login)))


def public_tables(url: str) -> list[str]:
    return [name for (name,) in query(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]


def migrate_command(url: str, flavour: str) -> subprocess.CompletedProcess[str]:
    """`make migrate` with IOTKPI_DB_FLAVOUR set."""
    return subprocess.run(
        [sys.executable, "-m", "common.migrations", url],
        cwd=FUNCTIONS_DIR, env={**os.environ, "IOTKPI_DB_FLAVOUR": flavour}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_a_database_keeps_its_flavour_and_refuses_the_other(database_url, db_flavour):
    migrate(database_url)
    other = {"postgres": "timescale", "timescale": "postgres"}[db_flavour]
    before = query(database_url, "SELECT * FROM schema_migrations ORDER BY version")

    with pytest.raises(FlavourError, match=f"IOTKPI_DB_FLAVOUR={other}, but .* migrated with the {db_flavour} flavour"):
        migrate(database_url, requested=other)

    assert query(database_url, "SELECT * FROM schema_migrations ORDER BY version") == before
    assert migrate(database_url, requested=db_flavour) == MigrationRun(db_flavour, [])
    assert migrate(database_url, requested="auto") == MigrationRun(db_flavour, [])


def test_timescale_requested_from_a_server_without_timescaledb_stops_before_touching_the_database(database_url):
    if query(database_url, "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        pytest.skip("the server has TimescaleDB: see the test on a server that does not preload it")
    result = migrate_command(database_url, "timescale")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("migrate: IOTKPI_DB_FLAVOUR=timescale, but the server has no timescaledb")
    assert public_tables(database_url) == []


def test_a_timescale_database_on_a_server_without_timescaledb_is_refused(database_url):
    if query(database_url, "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        pytest.skip("the server has TimescaleDB: see the test on a server that does not preload it")
    migrate(database_url, requested="auto")
    # As if the database had been migrated on a TimescaleDB server and restored onto this one.
    query(database_url, "UPDATE schema_migrations SET flavour = 'timescale'")
    with pytest.raises(
        FlavourError, match=r"^this database was migrated with the timescale flavour, but the server has no"
    ):
        migrate(database_url, requested="auto")


def support_seen_by(url: str) -> TimescaleSupport:
    with psycopg.connect(url) as conn:
        return timescale_support(conn)


def test_the_timescaledb_library_decides_the_flavour_and_a_timescale_database_needs_it(timescaledb_bin_dir):
    """Binaries with TimescaleDB, started without and with shared_preload_libraries."""
    with temporary_cluster("iotkpi-test-preload-", flavour="postgres") as cluster:
        plain, hyper = cluster.create_database("plain"), cluster.create_database("hyper")
        # A login that is no superuser (may not read shared_preload_libraries) tells the two servers apart too.
        query(cluster.url("postgres"), "CREATE ROLE migrator LOGIN PASSWORD 'migrator'")
        migrator = psycopg.conninfo.make_conninfo(plain, user="migrator", password="migrator")
        assert support_seen_by(migrator) == TimescaleSupport(library_loaded=False, extension_available=True)
        refused = migrate_command(plain, "timescale")  # the extension is there, the library is not loaded
        assert refused.returncode == 2 and PRELOAD_HINT in refused.stderr, refused.stderr
        assert public_tables(plain) == []
        assert migrate(plain, requested="auto").flavour == "postgres"
        assert query(plain, "SELECT DISTINCT flavour FROM schema_migrations") == [("postgres",)]

        cluster.stop()
        cluster.start(flavour="timescale")
        assert support_seen_by(migrator) == TimescaleSupport(library_loaded=True, extension_available=True)
        assert migrate(hyper, requested="auto").flavour == "timescale"
        assert query(hyper, "SELECT DISTINCT flavour FROM schema_migrations") == [("timescale",)]
        # keeps its flavour on a server that could now host the other
        assert migrate(plain, requested="auto") == MigrationRun("postgres", [])
        assert query(plain, "SELECT DISTINCT flavour FROM schema_migrations") == [("postgres",)]

        cluster.stop()
        cluster.start(flavour="postgres")
        before = query(hyper, "SELECT * FROM schema_migrations ORDER BY version")
        with pytest.raises(FlavourError, match=r"migrated with the timescale flavour, but .* shared_preload_libraries"):
            migrate(hyper, requested="auto")
        assert query(hyper, "SELECT * FROM schema_migrations ORDER BY version") == before


def test_flavours_share_the_common_files_and_differ_in_telemetry_only():
    plain, timescale = discover("postgres"), discover("timescale")
    assert [m.version for m in plain] == [m.version for m in timescale]
    assert plain[0].files == (MIGRATIONS_DIR / "001_core.sql", POSTGRES_FILE)
    assert timescale[0].files == (MIGRATIONS_DIR / "001_core.sql", TIMESCALE_FILE)


class FunctionCalls(Visitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_FuncCall(self, ancestors, node: ast.FuncCall) -> None:
        self.names.add(node.funcname[-1].sval)


def telemetry_columns(path) -> list[tuple[str, str, bool]]:
    (create,) = [
        s.stmt
        for s in parse_sql(path.read_text())
        if isinstance(s.stmt, ast.CreateStmt) and s.stmt.relation.relname == "telemetry"
    ]
    columns = [c for c in create.tableElts if isinstance(c, ast.ColumnDef)]
    return [
        (
            c.colname,
            ".".join(n.sval for n in c.typeName.names),
            any(isinstance(k, ast.Constraint) and k.contype == 1 for k in c.constraints or ()),  # NOT NULL
        )
        for c in columns
    ]


def test_timescale_flavour_parses_and_uses_only_timescale_documented_api():
    statements = parse_sql(TIMESCALE_FILE.read_text())
    calls = FunctionCalls()
    for statement in statements:
        calls(statement.stmt)
    # Calls inside CREATE FUNCTION bodies are strings to pglast; the top-level ones are what matter.
    assert TIMESCALE_API & calls.names == TIMESCALE_API
    assert calls.names <= TIMESCALE_API | {"now"}  # now(): the ingested_at default
    extensions = [s.stmt.extname for s in statements if isinstance(s.stmt, ast.CreateExtensionStmt)]
    assert extensions == ["timescaledb"]
    compress = [s.stmt for s in statements if isinstance(s.stmt, ast.AlterTableStmt)]
    options = {d.defnamespace + "." + d.defname for cmd in compress[0].cmds for d in cmd.def_}
    assert options == {"timescaledb.compress", "timescaledb.compress_segmentby", "timescaledb.compress_orderby"}


def test_both_flavours_define_the_same_telemetry_columns():
    assert telemetry_columns(TIMESCALE_FILE) == telemetry_columns(POSTGRES_FILE)
    names = [name for name, _, _ in telemetry_columns(POSTGRES_FILE)]
    assert names[:3] == ["device_id", "ts", "seq"]
