"""ingest_stats, the ingest health counters: written by the handler in each batch's transaction, real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.functions.ingest.test_handler import SHARD, Stream, event, execute, invoke, reading, rows

TOTALS = """
SELECT coalesce(sum(accepted), 0), coalesce(sum(duplicates), 0), coalesce(sum(rejected), 0),
       coalesce(sum(batches), 0)
FROM ingest_stats WHERE shard_id = %s
"""


def totals(url: str) -> tuple[int, int, int, int]:
    """(accepted, duplicates, rejected, batches) summed over the minutes: a test may straddle a minute."""
    return tuple(int(n) for n in rows(url, TOTALS, (SHARD,))[0])  # type: ignore[return-value]


def assert_counters_match_tables(url: str) -> None:
    accepted, _, rejected, _ = totals(url)
    assert rows(url, "SELECT count(*) FROM telemetry") == [(accepted,)]
    assert rows(url, "SELECT count(*) FROM ingest_rejects") == [(rejected,)]


def test_batch_with_duplicates_and_rejects_then_its_redelivery(ingest_db):
    stream = Stream()
    now = datetime.now(UTC)
    stored_before = reading("dev-a", 1, now - timedelta(seconds=30))
    assert invoke(event([stream.record(stored_before)])) == {"batchItemFailures": []}
    assert totals(ingest_db) == (1, 0, 0, 1)

    resent_in_batch = reading("dev-b", 7, now - timedelta(seconds=5))
    batch = event(
        [
            stream.record(stored_before),  # already stored: a duplicate
            stream.record(reading("dev-a", 2, now - timedelta(seconds=20))),
            stream.record(b"{not json"),
            stream.record(resent_in_batch),
            stream.record(reading("dev-a", 3, now + timedelta(days=3))),  # ts in the future: rejected
            stream.record(resent_in_batch),  # the same reading twice in one batch: one stored, one duplicate
        ]
    )
    assert invoke(batch) == {"batchItemFailures": []}
    assert totals(ingest_db) == (1 + 2, 2, 2, 2)
    assert_counters_match_tables(ingest_db)

    assert invoke(batch) == {"batchItemFailures": []}  # redelivered: every valid reading is a duplicate now
    assert totals(ingest_db) == (3, 2 + 4, 2, 3)  # its rejects are recorded already: not counted again
    assert_counters_match_tables(ingest_db)


def test_counters_are_per_minute_and_shard(ingest_db):
    stream = Stream()
    now = datetime.now(UTC)
    invoke(event([stream.record(reading("dev-a", i, now - timedelta(seconds=i))) for i in range(3)]))

    stats = rows(ingest_db, "SELECT minute, shard_id, accepted, batches FROM ingest_stats")
    assert len(stats) == 1
    minute, shard, accepted, batches = stats[0]
    assert (shard, accepted, batches) == (SHARD, 3, 1)
    assert minute == minute.replace(second=0, microsecond=0)
    assert now.replace(second=0, microsecond=0) <= minute <= datetime.now(UTC)


def test_refused_reading_counts_as_rejected_not_as_duplicate(ingest_db):
    execute(ingest_db, "ALTER TABLE telemetry ADD CONSTRAINT rss_plausible CHECK (rss > -150)")
    stream = Stream()
    now = datetime.now(UTC)
    records = [stream.record(reading("dev-a", i, now, rss=-180 if i == 1 else -60)) for i in range(3)]

    assert invoke(event(records)) == {"batchItemFailures": []}

    assert totals(ingest_db) == (2, 0, 1, 1)
    assert_counters_match_tables(ingest_db)
