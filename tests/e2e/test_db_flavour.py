"""`localcloud up` honours IOTKPI_DB_FLAVOUR: a wrong value or a flavour the binaries cannot host stops it with
the reason, and the local cloud's database gets the flavour the session's test databases get."""

from __future__ import annotations

import psycopg
import pytest

from localcloud.config import REPO_ROOT
from localcloud.servers.postgres import find_bin_dir, has_timescaledb
from tests.fixtures.local_cloud import LocalCloud

pytestmark = pytest.mark.e2e


@pytest.fixture
def cloud(tmp_path):
    cloud = LocalCloud(tmp_path / "state", stack_file=REPO_ROOT / "tests" / "stacks" / "probe-stack.yaml")
    try:
        yield cloud
    finally:
        cloud.teardown()


def test_an_unknown_flavour_stops_up_before_any_server_starts(cloud: LocalCloud):
    cloud.env["IOTKPI_DB_FLAVOUR"] = "timescaledb"

    result = cloud.run("up", timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("localcloud up: IOTKPI_DB_FLAVOUR='timescaledb' is not one of auto, postgres")
    assert "Traceback" not in result.stderr
    assert cloud.recorded_pids() == {}


def test_timescale_on_binaries_without_timescaledb_stops_up_with_the_way_out(cloud: LocalCloud):
    if cloud.env.get("DATABASE_URL"):
        pytest.skip("starts the local cloud's own cluster, and DATABASE_URL makes it use an external server")
    if has_timescaledb(find_bin_dir()):
        pytest.skip("these PostgreSQL binaries have TimescaleDB: nothing to refuse")
    cloud.env["IOTKPI_DB_FLAVOUR"] = "timescale"

    result = cloud.run("up", timeout=120)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "IOTKPI_DB_FLAVOUR=timescale, but the PostgreSQL binaries in" in result.stderr
    assert "set PG_BIN_DIR to binaries that have it" in result.stderr
    assert "postgres" not in cloud.recorded_pids()


def test_the_local_clouds_database_has_the_sessions_flavour(local_cloud: LocalCloud, db_flavour: str):
    with psycopg.connect(local_cloud.settings["DATABASE_URL"]) as conn:
        recorded = conn.execute("SELECT DISTINCT flavour FROM schema_migrations").fetchall()
    assert recorded == [(db_flavour,)]
