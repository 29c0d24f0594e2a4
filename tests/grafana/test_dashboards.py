"""Every panel of every dashboard works: its query, expanded the way Grafana expands it (variables, then
macros), runs on the real schema filled with readings and their KPIs, as a read-only login (a member of
iotkpi_reader, like Grafana's), returns rows, and returns columns its panel type can draw.

A panel type without a rule here, a panel without a query, or a query that cannot run fails the suite; that
is what keeps the coverage complete when a panel is added. Timing is the benchmark's business
(benchmarks/bench_dashboards.py), never asserted here.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import yaml
from aggregate.service import run_full_recompute
from common.db import Database
from common.migrations import migrate
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from localcloud.tools.grafana.dashboards import (
    REPO_ROOT,
    PanelQuery,
    iter_panels,
    load_dashboards,
    panel_queries,
    resolve_variables,
)
from localcloud.tools.grafana.expand import TimeRange

DASHBOARDS = load_dashboards()
QUERIES = [query for dashboard in DASHBOARDS for query in panel_queries(dashboard)]
BY_UID = {dashboard["uid"]: dashboard for dashboard in DASHBOARDS}
PROVISIONING = REPO_ROOT / "grafana" / "provisioning"
DATASOURCE = yaml.safe_load((PROVISIONING / "datasources" / "iotkpi.yaml").read_text())["datasources"][0]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
RANGES = {"6h": TimeRange(NOW - timedelta(hours=6), NOW), "7d": TimeRange(NOW - timedelta(days=7), NOW)}
HISTORY = timedelta(hours=3)
# device -> (fleet, is_test, minutes it has been silent, every nth reading lost)
DEVICES = {
    "dev-n1": ("north", False, 0, None),
    "dev-n2": ("north", False, 0, None),
    "dev-s1": ("south", False, 0, None),
    "dev-s2": ("south", False, 30, None),  # inactive now
    "dev-x": (None, False, 0, 4),  # no fleet (-> 'unassigned'); every 4th reading lost
    "test-1": ("north", True, 0, None),
}
REJECTS = [("invalid_json", 10), ("invalid_json", 20), ("bad_ts", 40)]  # (reason_code, minutes ago)
ALERTS = [  # (device, rule, severity, status, opened, resolved, last value, threshold, message, evaluated)
    ("dev-s2", "offline", "critical", "open", NOW - timedelta(minutes=25), None, 30, 15, "dev-s2 silent", NOW),
    ("dev-n1", "low_battery", "warning", "open", NOW - timedelta(minutes=50), None, 82, 85, "battery 82 %", NOW),
    (
        "dev-x",
        "weak_signal",
        "warning",
        "resolved",
        NOW - timedelta(hours=2),
        NOW - timedelta(hours=1),
        -70,
        -90,
        "weak signal",
        NOW,
    ),
]
# (minute, accepted, duplicates, rejected) as the ingest counts them, one shard
INGEST_STATS = [(NOW - timedelta(minutes=m), 6, m % 3, int(m in (10, 20, 40))) for m in range(1, 180)]

NUMERIC = {"int2", "int4", "int8", "float4", "float8", "numeric"}
TIME = {"timestamptz", "timestamp", "date"}
TEXT = {"text", "varchar", "bpchar", "name"}


# ---- the database ---------------------------------------------------------------------------------------
def _readings() -> list[tuple]:
    rows = []
    start = NOW - HISTORY
    for device, (_, _, silent_minutes, lose_every) in DEVICES.items():
        for n in range(int(HISTORY.total_seconds() // 60) - silent_minutes):
            if lose_every and n % lose_every == lose_every - 1:
                continue  # lost in transit: the seq counter still advanced
            ts = start + timedelta(minutes=n, seconds=7)
            rows.append(
                (device, ts, n, -60.0 - n % 20, 100.0 - n * 0.1, 20.0 + (n % 10) / 10, ts + timedelta(seconds=2))
            )
    return rows


def _load(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        days = sorted({(NOW - HISTORY).date(), NOW.date()})
        conn.execute("SELECT telemetry_ensure_partitions(%s::date[])", (days,))
        with conn.cursor().copy(
            "COPY telemetry (device_id, ts, seq, rss, battery, temperature, ingested_at) FROM STDIN"
        ) as copy:
            for row in _readings():
                copy.write_row(row)
        for device, (fleet, is_test, _, _) in DEVICES.items():
            conn.execute(
                "INSERT INTO devices (device_id, metadata, is_test, first_seen, last_seen)"
                " SELECT %s, %s, %s, min(ts), max(ts) FROM telemetry WHERE device_id = %s",
                (device, Jsonb({"fleet": fleet} if fleet else {}), is_test, device),
            )
        for i, (reason_code, minutes_ago) in enumerate(REJECTS):
            conn.execute(
                "INSERT INTO ingest_rejects (shard_id, sequence_number, device_id, reason_code, reason, raw,"
                " rejected_at) VALUES ('shardId-000000000000', %s, 'dev-n1', %s, %s, %s, %s)",
                (str(i), reason_code, f"{reason_code}: test", b"{not json", NOW - timedelta(minutes=minutes_ago)),
            )
        conn.cursor().executemany(
            "INSERT INTO alerts (device_id, rule, severity, status, opened_at, resolved_at, last_value, threshold,"
            " message, last_evaluated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            ALERTS,
        )
        conn.cursor().executemany(
            "INSERT INTO ingest_stats (minute, shard_id, accepted, duplicates, rejected, batches)"
            " VALUES (%s, 'shardId-000000000000', %s, %s, %s, 1)",
            INGEST_STATS,
        )
        conn.execute("ANALYZE")
    database = Database(lambda: url)
    try:
        run_full_recompute(database, NOW - HISTORY - timedelta(hours=1), NOW, now=NOW)
    finally:
        database.reset()


@pytest.fixture(scope="module")
def reader_url(pg_cluster):
    """A populated database and the URL of a read-only LOGIN role (member of iotkpi_reader) for it. The
    session time zone is not UTC on purpose: panels must not depend on it."""
    admin = pg_cluster.url("postgres") if pg_cluster else os.environ["DATABASE_URL"]
    name, role, password = (
        f"t_dash_{uuid.uuid4().hex[:10]}",
        f"dash_reader_{uuid.uuid4().hex[:10]}",
        secrets.token_hex(16),
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    url = make_conninfo(admin, dbname=name)
    try:
        migrate(url)
        _load(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE iotkpi_reader").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        yield make_conninfo(url, user=role, password=password, options="-c TimeZone=Asia/Kolkata")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def reader(reader_url):
    with psycopg.connect(reader_url, autocommit=True) as conn:
        yield conn


def _run(conn: psycopg.Connection, text: str) -> tuple[list[tuple[str, str]], list[tuple]]:
    """(column name, type name) pairs and the rows."""
    cursor = conn.execute(text.encode())  # bytes: sent as written, '%' included, like Grafana does
    columns = [(c.name, conn.adapters.types.get(c.type_code).name) for c in cursor.description]
    return columns, cursor.fetchall()


# ---- what each panel type can draw ----------------------------------------------------------------------
def column_problems(query: PanelQuery, columns: list[tuple[str, str]]) -> list[str]:
    kinds = [("time" if t in TIME else "number" if t in NUMERIC else "text" if t in TEXT else t) for _, t in columns]
    names = [name for name, _ in columns]
    numbers = kinds.count("number")
    if query.format == "time_series" or query.panel_type == "timeseries":
        if "time" not in names or kinds[names.index("time")] not in ("time", "number"):
            return [f"needs a `time` column of a time or epoch type, got {columns}"]
        values = [(n, k) for n, k in zip(names, kinds, strict=True) if n != "time"]
        others = [(n, k) for n, k in values if k != "number" and not (n == "metric" and k == "text")]
        if others or not any(k == "number" for _, k in values):
            return [f"time series values must be numeric (plus an optional text `metric`), got {columns}"]
        return []
    if query.panel_type in ("stat", "gauge", "bargauge", "piechart"):
        if not numbers or any(k not in ("number", "text") for k in kinds):
            return [f"{query.panel_type} needs numeric values (text columns as labels only), got {columns}"]
        return []
    if query.panel_type == "barchart":
        if numbers < 1 or len(kinds) - numbers != 1 or not set(kinds) - {"number"} <= {"text", "time"}:
            return [f"barchart needs one text or time axis column and numeric values, got {columns}"]
        return []
    if query.panel_type in ("table", "variable"):
        return [] if columns else ["returns no columns"]
    return [f"no rule for panel type {query.panel_type!r}: add one to this test"]


# ---- the tests -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("range_name", RANGES)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.label)
def test_panel_query_runs_as_reader_returns_rows_and_fits_its_panel(reader, query, range_name):
    time_range = RANGES[range_name]
    variables = resolve_variables(BY_UID[query.dashboard_uid], time_range, lambda text: _run(reader, text)[1])
    expanded = query.expand(time_range, variables, timescaledb=DATASOURCE["jsonData"]["timescaledb"])
    assert "$" not in expanded, f"unexpanded reference left in {expanded}"
    columns, rows = _run(reader, expanded)
    assert column_problems(query, columns) == []
    assert rows, f"no rows for {query.label} over {range_name}:\n{expanded}"


def test_every_panel_has_a_query(reader):
    uncovered = [
        f"{dashboard['uid']} / {panel.get('title')}"
        for dashboard in DASHBOARDS
        for panel in iter_panels(dashboard)
        if panel["type"] != "row" and not panel.get("targets")
    ]
    assert uncovered == []


def test_variables_filter_the_device_panels(reader):
    dashboard = BY_UID["iotkpi-devices"]
    day = RANGES["6h"]
    run = lambda text: _run(reader, text)[1]  # noqa: E731
    default = resolve_variables(dashboard, day, run)
    assert set(default["device"].options) == {"dev-n1", "dev-n2", "dev-s1", "dev-s2", "dev-x"}  # test devices hidden
    north = resolve_variables(dashboard, day, run, {"fleet": ("north",), "show_test": "true"})
    assert set(north["device"].options) == {"dev-n1", "dev-n2", "test-1"}
    table = next(q for q in panel_queries(dashboard) if q.panel_title == "Device detail")
    picked = resolve_variables(dashboard, day, run, {"device": ("dev-x", "dev-s2", "dev-n1")})
    columns, rows = _run(reader, table.expand(day, picked))
    kpis = {row[0]: dict(zip([name for name, _ in columns], row, strict=True)) for row in rows}
    assert set(kpis) == {"dev-x", "dev-s2", "dev-n1"}
    # dev-x loses every 4th reading, dev-s2 has been silent for 30 minutes, dev-n1 sends every minute (exact
    # figures depend on where the range's windows fall; the KPI maths is test_aggregate's)
    assert kpis["dev-x"]["completeness"] < 100 == kpis["dev-s2"]["completeness"] == kpis["dev-n1"]["completeness"]
    assert kpis["dev-x"]["uptime"] < kpis["dev-n1"]["uptime"] and kpis["dev-s2"]["uptime"] < kpis["dev-n1"]["uptime"]


def test_reader_cannot_write(reader):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        reader.execute("UPDATE devices SET is_test = true")


def test_dashboards_lint():
    uids = [dashboard["uid"] for dashboard in DASHBOARDS]
    assert len(uids) == len(set(uids)) and DASHBOARDS
    problems = []
    for dashboard in DASHBOARDS:
        where = dashboard["uid"]
        if dashboard.get("schemaVersion") != 39 or dashboard.get("id") is not None or not dashboard.get("title"):
            problems.append(f"{where}: needs schemaVersion 39, a title and no numeric id (provisioned)")
        panels = list(iter_panels(dashboard))
        ids = [panel.get("id") for panel in panels]
        if len(ids) != len(set(ids)) or None in ids:
            problems.append(f"{where}: panel ids must be present and unique, got {ids}")
        for panel in panels:
            label = f"{where} / {panel.get('id')}"
            if not panel.get("title"):
                problems.append(f"{label}: no title")
            if panel["type"] == "row":
                if not panel.get("collapsed") and panel.get("panels"):
                    problems.append(f"{label}: an open row lists no panels (they follow it)")
                continue
            refs = [panel.get("datasource", {}).get("uid")] + [
                t.get("datasource", {}).get("uid") for t in panel["targets"]
            ]
            if set(refs) != {"iotkpi"}:
                problems.append(f"{label}: datasource must be uid iotkpi, got {refs}")
            ref_ids = [t.get("refId") for t in panel["targets"]]
            if len(ref_ids) != len(set(ref_ids)):
                problems.append(f"{label}: duplicate refIds {ref_ids}")
            if any(t.get("format") not in ("time_series", "table") or not t.get("rawSql") for t in panel["targets"]):
                problems.append(f"{label}: every target needs rawSql and format time_series or table")
            for link in re.findall(r"/d/([\w-]+)", str(panel.get("fieldConfig", {}))):
                if link not in BY_UID:
                    problems.append(f"{label}: drilldown to unknown dashboard {link}")
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable["type"] == "query" and variable.get("datasource", {}).get("uid") != "iotkpi":
                problems.append(f"{where}: variable {variable['name']} must use datasource uid iotkpi")
    assert problems == []


def test_provisioning_files():
    assert DATASOURCE["uid"] == "iotkpi" and DATASOURCE["type"] == "grafana-postgresql-datasource"
    # An environment variable would arrive as a string, which the plugin refuses for this boolean.
    assert isinstance(DATASOURCE["jsonData"]["timescaledb"], bool)
    assert DATASOURCE["user"] == "${GRAFANA_DB_USER}" and DATASOURCE["secureJsonData"]["password"].startswith("$")
    assert DATASOURCE["jsonData"]["sslmode"] == "${GRAFANA_DB_SSLMODE}"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "iotkpi.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "${GRAFANA_DASHBOARDS_DIR}"
