"""Schema migrations on a real PostgreSQL (plain flavour), and the TimescaleDB flavour parsed with pglast."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from common.migrations import MIGRATIONS_DIR, MigrationError, discover, migrate
from pglast import ast, parse_sql
from pglast.visitors import Visitor
from psycopg import sql

TIMESCALE_FILE = MIGRATIONS_DIR / "timescale" / "001_telemetry.sql"
POSTGRES_FILE = MIGRATIONS_DIR / "postgres" / "001_telemetry.sql"
# The functions of TimescaleDB's documented API the timescale flavour may call.
TIMESCALE_API = {"create_hypertable", "by_range", "add_compression_policy", "add_retention_policy"}


def query(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_migrations_apply_once_and_rerun_as_a_no_op(database_url):
    first = migrate(database_url)
    assert first == [m.version for m in discover("postgres")]
    assert migrate(database_url) == []
    recorded = query(database_url, "SELECT version, flavour FROM schema_migrations ORDER BY version")
    assert recorded == [(version, "postgres") for version in first]
    tables = {name for (name,) in query(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"devices", "ingest_rejects", "kpi_dirty_hours", "schema_migrations"} <= tables
    assert query(database_url, "SELECT relkind FROM pg_class WHERE relname = 'telemetry'") == [("p",)]


def test_changed_applied_migration_is_an_error(database_url):
    migrate(database_url)
    query(database_url, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = '001'")
    with pytest.raises(MigrationError, match="001"):
        migrate(database_url)


def test_concurrent_migrators_apply_each_version_once(database_url):
    results: list[list[str]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(database_url))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(len(r) for r in results) == [0, 0, len(discover("postgres"))]


def partitions(url: str) -> set[str]:
    rows = query(url, "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'telemetry'::regclass")
    return {name for (name,) in rows}


def test_partitions_are_created_ahead_and_on_demand_for_late_days(database_url):
    migrate(database_url)
    today = datetime.now(UTC).date()
    ahead = {f"telemetry_p{today + timedelta(days=n):%Y%m%d}" for n in range(-1, 8)}
    assert ahead <= partitions(database_url)

    late = date(2020, 2, 29)
    created = query(database_url, "SELECT telemetry_ensure_partitions(%s::date[])", ([late, late, today],))
    assert created == [(1,)]
    assert query(database_url, "SELECT telemetry_ensure_partitions(%s::date[])", ([late],)) == [(0,)]
    # The partition holds exactly that UTC day.
    day_start = datetime(2020, 2, 29, tzinfo=UTC)
    query(
        database_url,
        "INSERT INTO telemetry (device_id, ts, seq, rss) VALUES ('d', %s, 1, -50), ('d', %s, 2, -50)",
        (day_start, day_start + timedelta(days=1) - timedelta(microseconds=1)),
    )
    assert query(database_url, "SELECT DISTINCT tableoid::regclass::text FROM telemetry") == [("telemetry_p20200229",)]


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
