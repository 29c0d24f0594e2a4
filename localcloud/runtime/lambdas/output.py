"""The worker's stdout and stderr, read into log events and cut into phases at the worker's PHASE_END marks."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from localcloud.runtime.lambdas.worker import PHASE_END

_MAX_LINE_BYTES = 256 * 1024
_SETTLE_S = 5.0

LogEvent = tuple[int, str]  # (epoch ms, message)


def epoch_ms() -> int:
    return time.time_ns() // 1_000_000


class OutputCapture:
    """Reads the worker's merged stdout/stderr into log events, counting the PHASE_END marks."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._events: list[LogEvent] = []
        self._marks = 0
        self._eof = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, name="lambda-output", daemon=True).start()

    def _add(self, raw: bytes) -> None:
        # A log record's inner line breaks travel as \r (see worker._LambdaLogHandler).
        message = raw.decode("utf-8", "replace").replace("\r", "\n")
        with self._cond:
            self._events.append((epoch_ms(), message))

    def _read(self) -> None:
        pending = b""
        fd = self._stream.fileno()
        while chunk := os.read(fd, 65536):
            pending += chunk
            while True:
                mark, newline = pending.find(PHASE_END), pending.find(b"\n")
                if mark != -1 and (newline == -1 or mark <= newline):
                    if mark:
                        self._add(pending[:mark])
                    pending = pending[mark + len(PHASE_END) :]
                    with self._cond:
                        self._marks += 1
                        self._cond.notify_all()
                elif newline != -1:
                    self._add(pending[:newline])
                    pending = pending[newline + 1 :]
                else:
                    if len(pending) > _MAX_LINE_BYTES:
                        self._add(pending)
                        pending = b""
                    break
        if pending:
            self._add(pending)
        self._stream.close()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def take(self, marks: int | None, timeout: float = _SETTLE_S) -> list[LogEvent]:
        """The events so far, once `marks` PHASE_ENDs were read (None: once the worker's output closed)."""
        with self._cond:
            self._cond.wait_for(lambda: self._eof or (marks is not None and self._marks >= marks), timeout)
            events, self._events = self._events, []
            return events
