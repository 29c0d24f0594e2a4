"""What the alerts' delivery needs from the outside: a notification outbox and a publisher.

The adapters are postgres.PostgresOutbox (alert_notifications) and sns.SnsPublisher; tests use in-memory
fakes of both.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from alerts.messages import Notification


class PublishError(RuntimeError):
    """The topic did not accept the notification; it stays in the outbox for the next run."""


class Publisher(Protocol):
    def publish(self, notification: Notification) -> str:
        """Publish; return the message id. Raises PublishError when the notification was not accepted."""
        ...


@dataclass(frozen=True)
class OutboxRow:
    id: int
    alert_id: int
    notification: Notification


class Outbox(Protocol):
    def next_unsent(self, after_id: int) -> AbstractContextManager[OutboxRow | None]:
        """The next unsent notification after `after_id` whose alert has no earlier unsent one (None when there
        is none), held for the block: marks made in the block commit at its end, and none if it raises."""
        ...

    def mark_sent(self, row_id: int, message_id: str) -> None: ...
    def mark_failed(self, row_id: int, error: str) -> None: ...
    def unsent_count(self) -> int: ...
