"""`localcloud status` reports the disk the state uses: per entry of the state folder, and the private
PostgreSQL cluster's folder when it lives elsewhere. Real files in a temporary state folder; the CLI as a
subprocess, with nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from localcloud.config import REPO_ROOT, Settings
from localcloud.lifecycle.status import state_usage
from localcloud.servers.procs import free_port


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    state = tmp_path / "state"
    (state / "logs" / "lambda").mkdir(parents=True)
    (state / "kinesis.db").write_bytes(b"k" * 300_000)
    (state / "logs" / "moto.log").write_bytes(b"m" * 20_000)
    (state / "logs" / "lambda" / "lambda-f.log").write_bytes(b"f" * 5_000)
    (state / "logs" / "outside").symlink_to(tmp_path)  # not followed: it would count kinesis.db twice
    pg_root = tmp_path / "var-tmp-pg"
    (pg_root / "data").mkdir(parents=True)
    (pg_root / "data" / "base").write_bytes(b"p" * 70_000)
    (state / "postgres.json").write_text(json.dumps({"root": str(pg_root), "port": free_port()}))
    monkeypatch.setenv("LOCALCLOUD_STATE_DIR", str(state))
    return state


def test_the_state_folder_is_measured_per_entry_and_the_cluster_elsewhere_too(state_dir):
    usage = state_usage(Settings())
    pointer = len((state_dir / "postgres.json").read_bytes())
    assert usage["parts"] == {"kinesis.db": 300_000, "logs": 25_000, "postgres.json": pointer}
    assert usage["bytes"] == 325_000 + pointer
    assert usage["elsewhere"] == {"postgres": {"path": str(state_dir.parent / "var-tmp-pg"), "bytes": 70_000}}


def test_status_prints_the_sizes(state_dir):
    env = {**os.environ, "LOCALCLOUD_MOTO_PORT": str(free_port()), "LOCALCLOUD_CONTROL_PORT": str(free_port()),
           "MQTT_PORT": str(free_port())}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "localcloud", "status"], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert f"state folder {state_dir}: 325." in done.stdout
    assert "(kinesis.db 300.0 kB, logs 25." in done.stdout
    assert f"postgres data in {state_dir.parent / 'var-tmp-pg'}: 70.0 kB" in done.stdout
    as_json = subprocess.run([sys.executable, "-m", "localcloud", "status", "--json"], env=env, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert json.loads(as_json.stdout)["state"]["parts"]["kinesis.db"] == 300_000
