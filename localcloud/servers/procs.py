"""Starting, finding and stopping the local cloud's server processes.

Each detached server gets a pid file under `<state>/run/<name>.pid` and a log under `<state>/logs/`, written
through a log pump that keeps it size-bounded (localcloud.servers.log_pump). We only ever signal pids we
recorded ourselves (never processes found by name), and always the whole process group, so a server's
children go with it; its pump then reads the end of the pipe and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from localcloud.errors import LocalCloudError
from localcloud.servers.log_pump import start_log_pump


class StartError(LocalCloudError):
    """A server did not come up; the message says which and where its log is."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on host:port; fail early if `proc` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise StartError(f"process {proc.args!r} exited with {proc.returncode} before listening on {port}")
        time.sleep(0.05)
    raise StartError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


class ProcessRegistry:
    """Pid files of the servers that `localcloud up` started detached."""

    def __init__(self, run_dir: Path, logs_dir: Path) -> None:
        self.run_dir = run_dir
        self.logs_dir = logs_dir

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        try:
            pid = int(self.pid_file(name).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> int:
        """Start `argv` detached in its own session, output appended to its size-bounded log; return its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        read_end, write_end = os.pipe()
        try:
            start_log_pump(read_end, self.log_file(name))
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=write_end,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        finally:  # the pump and the server hold their ends now: the pump sees end of file when the server is gone
            os.close(read_end)
            os.close(write_end)
        self.pid_file(name).write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, name: str, timeout: float = 10.0) -> bool:
        """SIGTERM the server's process group, SIGKILL after `timeout`; True if it was running."""
        pid = self.pid(name)
        self.pid_file(name).unlink(missing_ok=True)
        if pid is None:
            return False
        terminate_group(pid, timeout)
        return True


def terminate_group(pid: int, timeout: float = 10.0) -> None:
    """Stop the process group led by `pid`: SIGTERM, wait, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
