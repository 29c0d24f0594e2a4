"""Size-bounded logs: a tiny process between a server's output (stdout and stderr) and its log file.

`start_log_pump` runs this file beside a server: everything the server writes is appended to the log at once
(unbuffered), and when the file reaches LOCALCLOUD_LOG_MAX_BYTES (10 MiB) at a line end it becomes `<log>.1`
(`.1` becomes `.2`, ... up to LOCALCLOUD_LOG_BACKUPS, 3) and a new file starts: a log never takes more than
(backups + 1) x max bytes, plus one line. Because the pump reads the pipe, not the server's logging, it keeps
what no in-process handler would: a traceback printed on the way down, the interpreter's fatal errors, the
last lines before a SIGKILL. It exits when the last writer closes the pipe (the server and its children are
gone) and ignores SIGTERM/SIGINT, so stopping a server never cuts the log of its shutdown.

It runs as a script with `python -I -S` (only the standard library): quick to start, a few MB resident.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

MAX_BYTES_ENV, BACKUPS_ENV = "LOCALCLOUD_LOG_MAX_BYTES", "LOCALCLOUD_LOG_BACKUPS"
DEFAULT_MAX_BYTES, DEFAULT_BACKUPS = 10 * 1024 * 1024, 3
CHUNK = 64 * 1024


def limits() -> tuple[int, int]:
    """(max bytes per file, backups kept) from the environment."""
    max_bytes = int(os.environ.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES)
    backups = int(os.environ.get(BACKUPS_ENV) or DEFAULT_BACKUPS)
    if max_bytes < 1 or backups < 0:
        raise ValueError(f"{MAX_BYTES_ENV} must be at least 1 and {BACKUPS_ENV} at least 0")
    return max_bytes, backups


def rotate(path: Path, backups: int) -> None:
    """`path` becomes `path.1`, `path.1` becomes `path.2`, ...; the oldest beyond `backups` is dropped."""
    for index in range(backups - 1, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        if older.exists():
            older.replace(path.with_name(f"{path.name}.{index + 1}"))
    if backups:
        path.replace(path.with_name(f"{path.name}.1"))
    else:
        path.unlink(missing_ok=True)


class RotatingLog:
    """Appends bytes to `path`; rotates at the first line end once the file is full (or at twice the size, for
    output that has no line ends).

    Files are opened without following a symlink: as root, the pump writes into folders other users own (the
    PostgreSQL cluster's), where a planted link must not redirect it. A file that cannot be opened drops the
    output until it can."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._fd: int | None = None
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        while data:
            if self._size < self.max_bytes:
                head, data = data[: self.max_bytes - self._size], data[self.max_bytes - self._size :]
            else:
                end = data.find(b"\n") + 1
                limit = max(0, 2 * self.max_bytes - self._size)
                cut = end if 0 < end <= limit else limit
                head, data = data[:cut], data[cut:]
                if not head:
                    self._rotate()
                    continue
            written = 0
            while written < len(head):
                written += os.write(self._fd, head[written:])  # type: ignore[arg-type]
            self._size += len(head)
            if self._size >= self.max_bytes and head.endswith(b"\n"):
                self._rotate()

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        self._size = os.fstat(self._fd).st_size

    def _rotate(self) -> None:
        self.close()
        rotate(self.path, self.backups)
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def pump(source: int, log: RotatingLog) -> None:
    """Copy `source` into `log` until end of file; a failed write (disk full) drops that chunk, never blocks the
    server on a full pipe."""
    while chunk := os.read(source, CHUNK):
        try:
            log.write(chunk)
        except OSError:
            log.close()  # reopened for the next chunk
    log.close()


def start_log_pump(read_end: int, log_file: Path) -> subprocess.Popen:
    """Run the pump on the read end of a pipe, in its own session (a signal to the server's group does not reach
    it). The caller hands the write end to the server and closes both ends."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    max_bytes, backups = limits()
    return subprocess.Popen(
        [sys.executable, "-I", "-S", __file__, str(log_file), str(max_bytes), str(backups)],
        stdin=read_end,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, max_bytes, backups = Path(argv[0]), int(argv[1]), int(argv[2])
    pump(sys.stdin.fileno(), RotatingLog(path, max_bytes, backups))


if __name__ == "__main__":
    main(sys.argv[1:])
