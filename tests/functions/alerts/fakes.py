"""In-memory fakes of the alerts' delivery ports (alerts/ports.py), faithful to the adapters' contracts.

MemoryOutbox keeps alert_notifications' rows: next_unsent holds back a notification while an earlier one of
the same alert is unsent (as the PostgreSQL adapter's query does), and what is marked inside its block
commits at the block's end, or not at all when the block raises. MemoryPublisher records what it published
and fails as the test scripts it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from alerts.messages import Notification
from alerts.ports import OutboxRow, PublishError


@dataclass
class OutboxEntry:
    row: OutboxRow
    message_id: str | None = None  # set when sent
    attempts: int = 0
    last_error: str | None = None


class MemoryOutbox:
    def __init__(self) -> None:
        self.entries: list[OutboxEntry] = []
        self.fail_next_commit = False  # the database goes away after the block's marks, before its commit
        self._marks: list[tuple[int, str | None, str | None]] | None = None  # (row id, message id, error)

    def enqueue(self, alert_id: int, notification_id: str) -> int:
        row_id = len(self.entries) + 1
        notification = Notification(notification_id, f"alert {alert_id}", "body", {"alert_id": str(alert_id)})
        self.entries.append(OutboxEntry(OutboxRow(row_id, alert_id, notification)))
        return row_id

    def entry(self, row_id: int) -> OutboxEntry:
        return self.entries[row_id - 1]

    @contextlib.contextmanager
    def next_unsent(self, after_id: int) -> Iterator[OutboxRow | None]:
        unsent = [entry.row for entry in self.entries if entry.message_id is None]
        row = next(
            (
                r
                for r in unsent
                if r.id > after_id and not any(e.alert_id == r.alert_id and e.id < r.id for e in unsent)
            ),
            None,
        )
        self._marks = []
        try:
            yield row
            if self.fail_next_commit:
                self.fail_next_commit = False
                raise ConnectionError("connection lost before the commit")
            for row_id, message_id, error in self._marks:
                entry = self.entry(row_id)
                entry.attempts += 1
                entry.message_id, entry.last_error = message_id, error
        finally:
            self._marks = None

    def mark_sent(self, row_id: int, message_id: str) -> None:
        self._held().append((row_id, message_id, None))

    def mark_failed(self, row_id: int, error: str) -> None:
        self._held().append((row_id, None, error))

    def unsent_count(self) -> int:
        return sum(entry.message_id is None for entry in self.entries)

    def _held(self) -> list[tuple[int, str | None, str | None]]:
        if self._marks is None:
            raise RuntimeError("outbox rows are marked inside their next_unsent block")
        return self._marks


class MemoryPublisher:
    """Publishes into `published`; `down` refuses everything, `refuse` refuses those notification ids."""

    def __init__(self) -> None:
        self.published: list[str] = []  # notification ids, in publish order
        self.down = False
        self.refuse: set[str] = set()

    def publish(self, notification: Notification) -> str:
        if self.down or notification.notification_id in self.refuse:
            raise PublishError(f"topic refused {notification.notification_id}")
        self.published.append(notification.notification_id)
        return f"message-{len(self.published)}"
