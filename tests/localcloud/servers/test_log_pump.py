"""Size-bounded logs: the rotation rules on real files, the pump as a process between a real server process
(started by the ProcessRegistry) and its log, and the runtime's per-function Lambda log files."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from localcloud.runtime.lambdas.cloudwatch import LogShipper
from localcloud.servers.log_pump import RotatingLog, start_log_pump
from localcloud.servers.postgres import temporary_cluster
from localcloud.servers.procs import ProcessRegistry, free_port, pid_alive
from tests.fixtures.local_cloud import wait_until


def log_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}*"))


def test_rotation_keeps_lines_whole_and_the_total_bounded(tmp_path):
    path = tmp_path / "server.log"
    log = RotatingLog(path, max_bytes=100, backups=2)
    lines = [b"line %03d %s\n" % (i, b"x" * 20) for i in range(100)]  # 30 bytes each
    for line in lines:
        log.write(line[:7])  # a line may arrive in pieces
        log.write(line[7:])
    log.close()

    assert [p.name for p in log_files(path)] == ["server.log", "server.log.1", "server.log.2"]
    for file in log_files(path):
        content = file.read_bytes()
        assert content.endswith(b"\n") or file == path
        assert len(content) <= 100 + 30  # full at a line end: at most one line over
    kept = b"".join(p.read_bytes() for p in reversed(log_files(path)))  # oldest first
    assert lines[-1] in kept and kept in b"".join(lines)  # the newest lines, in order, none cut


def test_output_without_line_ends_is_cut_at_twice_the_size(tmp_path):
    path = tmp_path / "server.log"
    log = RotatingLog(path, max_bytes=10, backups=1)
    log.write(b"y" * 45)
    log.close()
    assert [len(p.read_bytes()) for p in log_files(path)] == [5, 20]


def test_an_existing_log_is_appended_to_and_counts_toward_its_size(tmp_path):
    path = tmp_path / "server.log"
    path.write_bytes(b"a" * 95 + b"\n")
    log = RotatingLog(path, max_bytes=100, backups=1)
    log.write(b"next line\n")
    log.close()
    assert (path.with_name("server.log.1").read_bytes(), path.read_bytes()) == (b"a" * 95 + b"\nnext line\n", b"")


def test_a_planted_symlink_is_not_followed(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    (tmp_path / "server.log").symlink_to(target)
    log = RotatingLog(tmp_path / "server.log", max_bytes=100, backups=1)
    with pytest.raises(OSError):
        log.write(b"attack\n")
    assert target.read_text() == "keep me\n"


def test_the_pump_outlives_sigterm_and_exits_when_the_writer_is_gone(tmp_path):
    read_end, write_end = os.pipe()
    pump = start_log_pump(read_end, tmp_path / "x.log")
    os.close(read_end)
    os.write(write_end, b"before\n")
    wait_until(lambda: (tmp_path / "x.log").exists() and (tmp_path / "x.log").read_bytes(), timeout=10)
    pump.send_signal(signal.SIGTERM)  # `down` signals servers; their pump must keep logging their shutdown
    os.write(write_end, b"after\n")
    time.sleep(0.3)
    assert pump.poll() is None
    os.close(write_end)
    assert pump.wait(timeout=10) == 0
    assert (tmp_path / "x.log").read_bytes() == b"before\nafter\n"


SERVER = textwrap.dedent(
    """
    import sys, time
    for i in range(3000):
        print(f"request {i:05d} " + "." * 40, flush=True)
    print("ready", flush=True)
    if sys.argv[1] == "crash":
        raise RuntimeError("the endpoint crashed")
    time.sleep(60)
    """
)


@pytest.fixture
def registry(tmp_path, monkeypatch) -> ProcessRegistry:
    monkeypatch.setenv("LOCALCLOUD_LOG_MAX_BYTES", "20000")
    monkeypatch.setenv("LOCALCLOUD_LOG_BACKUPS", "2")
    (tmp_path / "server.py").write_text(SERVER)
    return ProcessRegistry(tmp_path / "run", tmp_path / "logs")


def test_a_crashing_server_log_is_bounded_and_ends_with_the_whole_traceback(registry, tmp_path):
    pid = registry.start("endpoint", [sys.executable, str(tmp_path / "server.py"), "crash"])
    wait_until(lambda: not pid_alive(pid), timeout=30, what="the server to crash")
    log = registry.log_file("endpoint")
    text = wait_until(lambda: (t := log.read_text()).rstrip().endswith("the endpoint crashed") and t, timeout=10)
    assert "Traceback (most recent call last)" in text and "ready" in text
    assert [p.name for p in log_files(log)] == ["endpoint.log", "endpoint.log.1", "endpoint.log.2"]
    assert sum(p.stat().st_size for p in log_files(log)) <= 3 * 20000 + 100  # 3,000 lines (~150 kB) written


def test_a_killed_server_keeps_its_last_lines_and_stop_leaves_no_pump(registry, tmp_path):
    pid = registry.start("endpoint", [sys.executable, str(tmp_path / "server.py"), "wait"])
    log = registry.log_file("endpoint")
    wait_until(lambda: log.exists() and "ready" in log.read_text(), timeout=30, what="the server's output")
    # Found by its command line only to watch it: the test never signals it.
    pumps = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and str(log).encode() in _cmdline(p)]
    assert len(pumps) == 1
    os.killpg(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), timeout=10, what="the server to die")
    assert log.read_text().endswith("ready\n")
    wait_until(lambda: not pid_alive(pumps[0]), timeout=10, what="the pump to exit")


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_the_runtime_lambda_log_files_are_bounded_too(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALCLOUD_LOG_MAX_BYTES", "2000")
    monkeypatch.setenv("LOCALCLOUD_LOG_BACKUPS", "1")
    shipper = LogShipper(f"http://127.0.0.1:{free_port()}", "us-east-1", log_dir=tmp_path)  # CloudWatch unreachable
    try:
        for invocation in range(50):
            shipper.ship(
                "f", "stream", [(1_700_000_000_000 + i, f"invocation {invocation:02d} line {i}") for i in range(5)]
            )
        assert shipper.flush(60)
    finally:
        shipper.close()
    files = log_files(tmp_path / "lambda-f.log")
    assert [p.name for p in files] == ["lambda-f.log", "lambda-f.log.1"]
    assert all(p.stat().st_size <= 2 * 2000 for p in files)
    assert (tmp_path / "lambda-f.log").read_text().rstrip().endswith("invocation 49 line 4")


def test_postgresql_server_log_is_bounded(monkeypatch):
    monkeypatch.setenv("LOCALCLOUD_LOG_MAX_BYTES", "20000")
    monkeypatch.setenv("LOCALCLOUD_LOG_BACKUPS", "2")
    with temporary_cluster("iotkpi-test-pglog-") as cluster, psycopg.connect(cluster.url("postgres")) as conn:
        conn.execute("DO $$ BEGIN FOR i IN 1..3000 LOOP RAISE LOG 'padding line %', i; END LOOP; END $$")
        conn.execute("DO $$ BEGIN RAISE LOG 'the last line'; END $$")
        text = wait_until(lambda: "the last line" in (t := cluster.log_file.read_text()) and t, timeout=10)
        files = log_files(cluster.log_file)
        assert [p.name for p in files] == ["server.log", "server.log.1", "server.log.2"]
        assert "padding line 3000" in text or "padding line 3000" in files[1].read_text()
        assert sum(p.stat().st_size for p in files) <= 3 * 2 * 20000  # ~3,000 log lines (~250 kB) written
