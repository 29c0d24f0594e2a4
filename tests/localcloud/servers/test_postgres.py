"""The private cluster preloads TimescaleDB for the flavour asked of it, on real servers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from localcloud.servers.postgres import (
    PostgresCluster,
    PostgresError,
    find_bin_dir,
    has_timescaledb,
    temporary_cluster,
)
from localcloud.servers.procs import free_port


def loaded_libraries(cluster: PostgresCluster) -> tuple[str, str | None]:
    """shared_preload_libraries and TimescaleDB's telemetry level (None when TimescaleDB is not loaded)."""
    with psycopg.connect(cluster.url("postgres")) as conn:
        libraries = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        telemetry = conn.execute("SELECT current_setting('timescaledb.telemetry_level', true)").fetchone()[0]
    return libraries, telemetry


def test_timescale_flavour_refuses_binaries_without_timescaledb_and_auto_starts_plain(monkeypatch):
    monkeypatch.delenv("PG_BIN_DIR", raising=False)
    if has_timescaledb(find_bin_dir()):
        pytest.skip("the OS PostgreSQL has TimescaleDB: no binaries without it to refuse")
    refused = pytest.raises(PostgresError, match=r"IOTKPI_DB_FLAVOUR=timescale.* no timescaledb extension.*PG_BIN_DIR")
    with refused, temporary_cluster("iotkpi-test-flavour-", flavour="timescale"):
        pytest.fail("the cluster started")
    with temporary_cluster("iotkpi-test-flavour-", flavour="auto") as cluster:
        assert loaded_libraries(cluster) == ("", None)


def test_unknown_flavour_is_refused(tmp_path):
    with pytest.raises(ValueError, match="timescaledb"):
        PostgresCluster(tmp_path, free_port()).start(flavour="timescaledb")


@pytest.mark.parametrize(("flavour", "preloaded"), [("auto", True), ("timescale", True), ("postgres", False)])
def test_binaries_with_timescaledb_preload_it_unless_the_flavour_is_postgres(
    timescaledb_bin_dir: Path, flavour: str, preloaded: bool
):
    with temporary_cluster("iotkpi-test-flavour-", flavour=flavour) as cluster:
        assert cluster.bin_dir == timescaledb_bin_dir
        libraries, telemetry = loaded_libraries(cluster)
    assert (libraries, telemetry) == (("timescaledb", "off") if preloaded else ("", None))
