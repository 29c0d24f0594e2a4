"""alerts.service.deliver on in-memory fakes of the outbox and the publisher: order, failures, retries on
the next run, the early stop when the topic keeps failing, and at-least-once across a lost commit. (The
PostgreSQL outbox and SNS are exercised in test_alerts.py.)"""

from __future__ import annotations

import pytest
from alerts.service import MAX_CONSECUTIVE_FAILURES, Delivery, deliver

from tests.functions.alerts.fakes import MemoryOutbox, MemoryPublisher


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


def test_every_notification_is_published_once_in_order_and_marked_sent(outbox, publisher):
    for alert in (1, 2, 3):
        outbox.enqueue(alert, f"n{alert}-opened")

    assert deliver(outbox, publisher) == Delivery(sent=3, failed=0, unsent=0, errors=[])

    assert publisher.published == ["n1-opened", "n2-opened", "n3-opened"]
    assert [(e.message_id, e.attempts, e.last_error) for e in outbox.entries] == [
        ("message-1", 1, None), ("message-2", 1, None), ("message-3", 1, None),
    ]  # fmt: skip
    assert deliver(outbox, publisher) == Delivery(sent=0, failed=0, unsent=0, errors=[])  # nothing twice


def test_a_refused_notification_stays_unsent_and_the_next_run_sends_it(outbox, publisher):
    for alert in (1, 2, 3):
        outbox.enqueue(alert, f"n{alert}")
    publisher.refuse = {"n2"}

    first = deliver(outbox, publisher)

    assert (first.sent, first.failed, first.unsent) == (2, 1, 1)
    assert first.errors == ["n2: topic refused n2"]
    assert (outbox.entry(2).attempts, outbox.entry(2).last_error) == (1, "topic refused n2")

    publisher.refuse = set()
    assert deliver(outbox, publisher) == Delivery(sent=1, failed=0, unsent=0, errors=[])
    assert publisher.published == ["n1", "n3", "n2"] and outbox.entry(2).attempts == 2


def test_a_later_notification_of_an_alert_waits_for_its_earlier_one(outbox, publisher):
    outbox.enqueue(1, "a1-opened")
    outbox.enqueue(2, "a2-opened")
    outbox.enqueue(1, "a1-resolved")
    publisher.refuse = {"a1-opened"}

    first = deliver(outbox, publisher)

    assert (first.sent, first.failed, first.unsent) == (1, 1, 2)
    assert publisher.published == ["a2-opened"]  # "resolved" is never sent before its "opened"
    publisher.refuse = set()
    deliver(outbox, publisher)
    assert publisher.published == ["a2-opened", "a1-opened", "a1-resolved"]


def test_a_topic_that_keeps_failing_stops_the_pass_and_everything_is_sent_once_it_is_back(outbox, publisher):
    for alert in range(1, 8):
        outbox.enqueue(alert, f"n{alert}")
    publisher.down = True

    first = deliver(outbox, publisher)

    assert (first.sent, first.failed, first.unsent) == (0, MAX_CONSECUTIVE_FAILURES, 7)
    assert [e.attempts for e in outbox.entries] == [1] * MAX_CONSECUTIVE_FAILURES + [0] * (7 - MAX_CONSECUTIVE_FAILURES)

    publisher.down = False
    assert deliver(outbox, publisher) == Delivery(sent=7, failed=0, unsent=0, errors=[])
    assert sorted(publisher.published) == sorted(f"n{alert}" for alert in range(1, 8))


def test_failures_between_successes_do_not_stop_the_pass_and_errors_are_capped(outbox, publisher):
    for alert in range(1, 25):
        outbox.enqueue(alert, f"n{alert}")
    publisher.refuse = {f"n{alert}" for alert in range(1, 25, 2)}  # every other one: never 2 failures in a row

    summary = deliver(outbox, publisher)

    assert (summary.sent, summary.failed, summary.unsent) == (12, 12, 12)
    assert summary.errors == [f"n{alert}: topic refused n{alert}" for alert in range(1, 21, 2)]  # the first 10


def test_a_commit_lost_after_publishing_publishes_again_with_the_same_id(outbox, publisher):
    outbox.enqueue(1, "n1")
    outbox.enqueue(2, "n2")
    outbox.fail_next_commit = True

    with pytest.raises(ConnectionError):
        deliver(outbox, publisher)

    assert publisher.published == ["n1"] and outbox.unsent_count() == 2  # published, but not marked sent
    assert deliver(outbox, publisher).sent == 2
    assert publisher.published == ["n1", "n1", "n2"]  # at-least-once; subscribers deduplicate on the id
