"""The ingest handler called as Lambda calls it: Kinesis events in AWS's shape, real PostgreSQL, real moto SQS."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from common.flavour import requested_flavour
from common.migrations import migrate
from ingest import handler

from localcloud.servers.postgres import PostgresCluster, find_bin_dir, has_timescaledb, temporary_cluster
from tests.fixtures.telemetry_storage import compress_day, day_tables

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/iotkpi-telemetry"
SHARD = "shardId-000000000000"


@dataclass
class FakeLambdaContext:
    """What Lambda passes: the attributes powertools reads from a real LambdaContext."""

    function_name: str = "iotkpi-ingest"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:iotkpi-ingest"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name: str = "/aws/lambda/iotkpi-ingest"
    log_stream_name: str = "2024/01/01/[$LATEST]abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class Stream:
    """Builds Kinesis events like the event source mapping does, with increasing sequence numbers."""

    def __init__(self) -> None:
        self.next_sequence = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898

    def record(self, data: bytes, partition_key: str | None = None) -> dict:
        """`partition_key` defaults to the topic rule's: the topic's device, the reading's device_id."""
        self.next_sequence += 1
        sequence = str(self.next_sequence)
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": topic_device(data) if partition_key is None else partition_key,
                "sequenceNumber": sequence,
                "data": base64.b64encode(data).decode("ascii"),
                "approximateArrivalTimestamp": datetime.now(UTC).timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{SHARD}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/iotkpi-ingest",
            "awsRegion": "us-east-1",
            "eventSourceARN": STREAM_ARN,
        }


def topic_device(data: bytes) -> str:
    try:
        return str(json.loads(data)["device_id"])
    except (ValueError, KeyError, TypeError):  # not a reading: any device
        return "dev"


def reading(device: str, seq: int, ts: datetime, **fields) -> bytes:
    """A record as the IoT rule emits it: the device payload plus device_id and received_at."""
    body = {"ts": ts.isoformat(), "seq": seq, "rss": -70.5, "battery": 88, "temperature": 21.5, **fields}
    return json.dumps({**body, "device_id": device, "received_at": int(ts.timestamp() * 1000)}).encode()


def event(records: list[dict]) -> dict:
    return {"Records": records}


def invoke(evt: dict) -> dict:
    return handler.lambda_handler(evt, FakeLambdaContext())


def failed_sequences(response: dict) -> list[str]:
    return [item["itemIdentifier"] for item in response["batchItemFailures"]]


def emitted_metrics(output: str) -> dict[str, float]:
    """Sum of every EMF metric printed to stdout."""
    totals: dict[str, float] = {}
    for line in output.splitlines():
        if '"_aws"' not in line:
            continue
        doc = json.loads(line)
        for metric in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            values = doc[metric["Name"]]
            totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(
                values if isinstance(values, list) else [values]
            )
    return totals


def rows(url: str, query: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(statement)


def test_valid_readings_land_once_with_devices_and_dirty_hours(ingest_db, capsys):
    stream = Stream()
    base = datetime.now(UTC).replace(minute=10, second=0, microsecond=0) - timedelta(hours=1)
    records = [stream.record(reading("dev-a", i, base + timedelta(minutes=i * 30), extra={"x": i})) for i in range(4)]
    records.append(stream.record(reading("dev-b", 1, base)))

    response = invoke(event(records))

    assert response == {"batchItemFailures": []}
    stored = rows(ingest_db, "SELECT device_id, seq, rss, payload FROM telemetry ORDER BY device_id, seq")
    assert [(d, s) for d, s, _, _ in stored] == [("dev-a", 0), ("dev-a", 1), ("dev-a", 2), ("dev-a", 3), ("dev-b", 1)]
    assert stored[1][2] == pytest.approx(-70.5)
    assert stored[1][3] == {"extra": {"x": 1}}
    devices = rows(ingest_db, "SELECT device_id, first_seen, last_seen FROM devices ORDER BY 1")
    assert devices == [("dev-a", base, base + timedelta(minutes=90)), ("dev-b", base, base)]
    hours = rows(ingest_db, "SELECT device_id, hour_start FROM kpi_dirty_hours ORDER BY 1, 2")
    first_hour = base.replace(minute=0)
    assert hours == [("dev-a", first_hour), ("dev-a", first_hour + timedelta(hours=1)), ("dev-b", first_hour)]
    assert emitted_metrics(capsys.readouterr().out)["Accepted"] == 5


def test_redelivered_batch_inserts_nothing_and_counts_duplicates(ingest_db, capsys):
    stream = Stream()
    now = datetime.now(UTC)
    batch = event([stream.record(reading("dev-a", i, now - timedelta(seconds=i))) for i in range(10)])
    invoke(batch)
    capsys.readouterr()
    execute(ingest_db, "DELETE FROM kpi_dirty_hours")

    response = invoke(batch)

    assert response == {"batchItemFailures": []}
    assert rows(ingest_db, "SELECT count(*) FROM telemetry") == [(10,)]
    assert rows(ingest_db, "SELECT count(*) FROM kpi_dirty_hours") == [(0,)]  # duplicates dirty nothing
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Accepted"], metrics["Duplicates"]) == (0, 10)


def test_dirty_hours_are_each_hour_a_device_has_readings_in_and_a_claimed_one_is_marked_again(ingest_db):
    """The client sums the readings up (first/last reading per device, a reading per hour): a device whose
    readings cross an hour in minutes marks both hours; a mark the KPI job claimed meanwhile is added again,
    one still there is not repeated."""
    stream = Stream()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    crossing = [hour + timedelta(minutes=50), hour + timedelta(minutes=55), hour + timedelta(minutes=65)]
    batch = [stream.record(reading("dev-a", i, ts)) for i, ts in enumerate(crossing)]
    batch.append(stream.record(reading("dev-b", 0, hour + timedelta(minutes=5))))
    assert invoke(event(batch)) == {"batchItemFailures": []}
    marks = "SELECT device_id, hour_start FROM kpi_dirty_hours ORDER BY 1, 2"
    assert rows(ingest_db, marks) == [("dev-a", hour), ("dev-a", hour + timedelta(hours=1)), ("dev-b", hour)]

    execute(ingest_db, "DELETE FROM kpi_dirty_hours WHERE device_id = 'dev-a'")  # the KPI job claims dev-a's
    later = [stream.record(reading("dev-a", 10 + i, hour + timedelta(minutes=m))) for i, m in enumerate([58, 59])]
    assert invoke(event([*later, stream.record(reading("dev-b", 1, hour + timedelta(minutes=6)))])) == {
        "batchItemFailures": []
    }

    assert rows(ingest_db, marks) == [("dev-a", hour), ("dev-b", hour)]
    devices = rows(ingest_db, "SELECT device_id, first_seen, last_seen FROM devices ORDER BY 1")
    assert devices == [("dev-a", crossing[0], crossing[-1]), ("dev-b", hour + timedelta(minutes=5),
                                                             hour + timedelta(minutes=6))]  # fmt: skip


def test_dirty_hours_are_utc_hours_whatever_the_session_time_zone(ingest_db, monkeypatch):
    """In India's time zone (UTC+05:30) a local hour starts at :30 UTC; the marks are UTC hours all the same,
    by the direct way's bookkeeping and by the staged way's (a batch holding a stored reading goes that way)."""
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")  # libpq's session time zone, for the handler's next connection
    handler.database.reset()
    stream = Stream()
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    stored = stream.record(reading("dev-a", 0, hour + timedelta(minutes=50)))
    assert invoke(event([stored])) == {"batchItemFailures": []}
    assert invoke(event([stored, stream.record(reading("dev-b", 0, hour + timedelta(minutes=50)))])) == {
        "batchItemFailures": []
    }

    with handler.database.transaction() as conn:
        assert conn.execute("SHOW TimeZone").fetchone() == ("Asia/Kolkata",)
    assert rows(ingest_db, "SELECT device_id, hour_start FROM kpi_dirty_hours ORDER BY 1") == [
        ("dev-a", hour), ("dev-b", hour)
    ]  # fmt: skip


def row_locked(conn: psycopg.Connection, device_id: str) -> bool:
    """Whether another transaction holds the device registry's row (`conn` in autocommit: it keeps no lock)."""
    try:
        conn.execute("SELECT FROM devices WHERE device_id = %s FOR UPDATE NOWAIT", (device_id,))
    except psycopg.errors.LockNotAvailable:
        return True
    return False


def wait_for_lock_wait(conn: psycopg.Connection, pid: int) -> None:
    deadline = time.monotonic() + 30
    while conn.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() != ("Lock",):
        assert time.monotonic() < deadline, "the batch never waited for the row held"
        time.sleep(0.01)


@pytest.mark.parametrize("staged", [False, True], ids=["direct", "staged"])
def test_a_batch_locks_its_devices_rows_in_device_id_order(ingest_db, staged):
    """Concurrent batches (two shards, a replay) lock the registry's rows in one order, so they cannot deadlock.
    Its readings come c, b, a; while it waits for "b", which another transaction holds, it holds "a" and has
    not touched "c". Either way in: a batch holding a reading stored already goes through the staging table."""
    stream = Stream()
    now = datetime.now(UTC)
    seeds = [stream.record(reading(device, 0, now - timedelta(minutes=5))) for device in "abc"]
    assert invoke(event(seeds)) == {"batchItemFailures": []}
    batch = [stream.record(reading(device, 1, now)) for device in "cba"] + (seeds[:1] if staged else [])
    pid = handler.database.connection().info.backend_pid

    with psycopg.connect(ingest_db) as holder, psycopg.connect(ingest_db, autocommit=True) as probe:
        holder.execute("SELECT FROM devices WHERE device_id = 'b' FOR UPDATE")
        with ThreadPoolExecutor(max_workers=1) as pool:
            response = pool.submit(invoke, event(batch))
            try:
                wait_for_lock_wait(probe, pid)
                locked = (row_locked(probe, "a"), row_locked(probe, "c"))
            finally:
                holder.rollback()  # the batch goes on, whatever was found
            assert response.result() == {"batchItemFailures": []}

    assert locked == (True, False)
    assert rows(ingest_db, "SELECT device_id, last_seen FROM devices ORDER BY 1") == [(d, now) for d in "abc"]


def test_readings_without_extra_fields_store_an_empty_payload_whichever_way_in(ingest_db, capsys):
    """A batch of such readings is COPied without the payload column, whose default ('{}') is their payload:
    directly, and through the staging table when one of its readings is stored already."""
    stream = Stream()
    now = datetime.now(UTC)
    stored = stream.record(reading("dev-a", 1, now))
    assert invoke(event([stored])) == {"batchItemFailures": []}
    capsys.readouterr()

    assert invoke(event([stored, stream.record(reading("dev-a", 2, now))])) == {"batchItemFailures": []}

    assert rows(ingest_db, "SELECT seq, payload FROM telemetry ORDER BY seq") == [(1, {}), (2, {})]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Accepted"], metrics["Duplicates"], metrics["Rejected"]) == (1, 1, 0)


def test_extra_fields_land_in_payload_exactly_and_their_redelivery_is_a_duplicate(ingest_db, capsys):
    """The payload column's own encoder (postgres.PayloadDumper): empty for the usual reading, the extra fields
    otherwise, integers beyond 64 bits included (the stdlib encodes those); the staged path of a redelivery
    reuses the same encoding."""
    stream = Stream()
    now = datetime.now(UTC)
    extras = {"big": 2**70, "text": "\u00e9\u2603", "nested": {"list": [1, 2.5, None]}}
    batch = event([stream.record(reading("dev-a", 1, now, **extras)), stream.record(reading("dev-a", 2, now))])

    assert invoke(batch) == {"batchItemFailures": []}
    assert invoke(batch) == {"batchItemFailures": []}

    assert rows(ingest_db, "SELECT seq, payload FROM telemetry ORDER BY seq") == [(1, extras), (2, {})]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Accepted"], metrics["Duplicates"]) == (2, 2)


def test_poison_record_is_rejected_to_table_and_queue_and_does_not_block(ingest_db, aws_env, monkeypatch):
    sqs = aws_env.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"ingest-rejects-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("INGEST_REJECTS_QUEUE_URL", queue_url)
    stream = Stream()
    now = datetime.now(UTC)
    poison = b'{"device_id": "dev-a", "ts": "yesterday-ish", "seq": 2, "rss": -60}'
    records = [
        stream.record(reading("dev-a", 1, now)),
        stream.record(poison),
        stream.record(reading("dev-a", 3, now + timedelta(seconds=1))),
    ]

    response = invoke(event(records))
    invoke(event(records))  # redelivery does not duplicate the reject

    assert response == {"batchItemFailures": []}
    assert rows(ingest_db, "SELECT seq FROM telemetry ORDER BY seq") == [(1,), (3,)]
    rejects = rows(
        ingest_db, "SELECT shard_id, sequence_number, device_id, reason_code, reason, raw FROM ingest_rejects"
    )
    assert len(rejects) == 1
    shard, sequence, device, code, reason, raw = rejects[0]
    assert (shard, sequence, device, code, bytes(raw)) == (
        SHARD,
        records[1]["kinesis"]["sequenceNumber"],
        "dev-a",
        "bad_ts",
        poison,
    )
    assert "yesterday-ish" in reason
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])[
        "Messages"
    ]
    body = json.loads(messages[0]["Body"])
    assert base64.b64decode(body["raw_base64"]) == poison
    assert body["sequence_number"] == records[1]["kinesis"]["sequenceNumber"]
    assert body["reason"] == reason
    assert messages[0]["MessageAttributes"]["reason"]["StringValue"] == "bad_ts"


def test_a_rejects_queue_that_refuses_the_copy_fails_no_record_and_is_counted(ingest_db, aws_env, monkeypatch, capsys):
    missing = f"{aws_env.url}/123456789012/ingest-rejects-missing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("INGEST_REJECTS_QUEUE_URL", missing)
    stream = Stream()
    records = [stream.record(b"[1]"), stream.record(reading("dev-a", 1, datetime.now(UTC))), stream.record(b"{")]

    response = invoke(event(records))

    assert response == {"batchItemFailures": []}  # the rejects are stored: SQS being away blocks nothing
    assert rows(ingest_db, "SELECT count(*) FROM ingest_rejects") == [(2,)]
    assert rows(ingest_db, "SELECT seq FROM telemetry") == [(1,)]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Rejected"], metrics["RejectSendFailures"]) == (2, 2)


def test_a_reading_naming_another_device_than_its_topic_is_rejected_under_the_topics_device(ingest_db, capsys):
    stream = Stream()
    now = datetime.now(UTC)
    # dev-a's certificate may only publish to devices/dev-a/telemetry (the partition key); the payload says dev-b.
    impostor = stream.record(reading("dev-b", 1, now), partition_key="dev-a")

    response = invoke(
        event([impostor, stream.record(reading("dev-a", 2, now)), stream.record(reading("dev-b", 3, now))])
    )

    assert response == {"batchItemFailures": []}
    assert rows(ingest_db, "SELECT device_id, seq FROM telemetry ORDER BY seq") == [("dev-a", 2), ("dev-b", 3)]
    rejects = rows(ingest_db, "SELECT sequence_number, device_id, reason_code, reason FROM ingest_rejects")
    assert [r[:3] for r in rejects] == [(impostor["kinesis"]["sequenceNumber"], "dev-a", "device_id_mismatch")]
    assert "'dev-b'" in rejects[0][3] and "'dev-a'" in rejects[0][3]
    assert emitted_metrics(capsys.readouterr().out)["Rejected"] == 1


def test_records_unreadable_as_json_are_rejected_under_their_partition_key(ingest_db):
    stream = Stream()
    oversize = json.dumps({"device_id": "dev-big", "seq": 1, "rss": -60, "pad": "x" * 140_000}).encode()
    invoke(event([stream.record(oversize, partition_key="dev-big"), stream.record(b"\xff", partition_key="dev-bin")]))
    assert rows(ingest_db, "SELECT device_id, reason_code FROM ingest_rejects ORDER BY id") == [
        ("dev-big", "oversize"),
        ("dev-bin", "invalid_utf8"),
    ]


def test_late_reading_gets_its_partition_created(ingest_db, db_flavour):
    stream = Stream()
    late = datetime.now(UTC) - timedelta(days=40)
    assert day_tables(ingest_db, db_flavour, late.date()) == []

    response = invoke(event([stream.record(reading("dev-late", 7, late))]))

    assert response == {"batchItemFailures": []}
    (day_table,) = day_tables(ingest_db, db_flavour, late.date())  # partition or TimescaleDB chunk: one day
    assert rows(ingest_db, "SELECT tableoid::regclass::text, seq FROM telemetry") == [(day_table, 7)]


def test_a_batch_mixing_stored_readings_and_a_day_without_partition_lands_once(ingest_db, db_flavour, capsys):
    """The direct COPY fails on either (a reading already stored, a day with no partition yet): the batch then
    goes through the staging table, its days get their partitions, and only the new readings are stored."""
    stream = Stream()
    now = datetime.now(UTC)
    stored = stream.record(reading("dev-a", 1, now))
    invoke(event([stored]))
    late = datetime.now(UTC) - timedelta(days=41)
    assert day_tables(ingest_db, db_flavour, late.date()) == []
    capsys.readouterr()

    batch = event([stored, stream.record(reading("dev-a", 2, late)), stream.record(reading("dev-a", 3, now))])
    assert invoke(batch) == {"batchItemFailures": []}

    assert rows(ingest_db, "SELECT seq FROM telemetry ORDER BY seq") == [(1,), (2,), (3,)]
    assert len(day_tables(ingest_db, db_flavour, late.date())) == 1
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Accepted"], metrics["Duplicates"]) == (2, 1)
    late_hour = late.replace(minute=0, second=0, microsecond=0)
    assert rows(ingest_db, "SELECT count(*) FROM kpi_dirty_hours WHERE hour_start = %s", (late_hour,)) == [(1,)]


def test_a_record_whose_data_cannot_be_read_fails_alone_and_the_others_land(ingest_db):
    """powertools' partial batch semantics: the record the handler cannot read is reported, so the mapping
    retries it (then sends it to its OnFailure destination); the batch's other records are stored."""
    stream = Stream()
    now = datetime.now(UTC)
    records = [stream.record(reading("dev-a", 1, now)), stream.record(b""), stream.record(reading("dev-a", 3, now))]
    records[1]["kinesis"]["data"] = "not base64!"

    response = invoke(event(records))

    assert failed_sequences(response) == [records[1]["kinesis"]["sequenceNumber"]]
    assert rows(ingest_db, "SELECT seq FROM telemetry ORDER BY seq") == [(1,), (3,)]
    assert rows(ingest_db, "SELECT count(*) FROM ingest_rejects") == [(0,)]


def test_late_readings_for_a_compressed_day_land_and_their_redelivery_is_a_duplicate(ingest_db, db_flavour, capsys):
    if db_flavour != "timescale":
        pytest.skip("only TimescaleDB compresses old days (its compression policy); plain partitions stay as they are")
    stream = Stream()
    day = datetime.now(UTC) - timedelta(days=40)
    first = stream.record(reading("dev-old", 1, day))
    invoke(event([first]))
    assert compress_day(ingest_db, day.date()) == [True]
    capsys.readouterr()

    late = stream.record(reading("dev-old", 2, day + timedelta(minutes=1)))
    assert invoke(event([late])) == {"batchItemFailures": []}
    assert invoke(event([first, late])) == {"batchItemFailures": []}  # redelivered, one of them compressed

    assert rows(ingest_db, "SELECT seq FROM telemetry ORDER BY seq") == [(1,), (2,)]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert (metrics["Accepted"], metrics["Duplicates"]) == (1, 2)


def test_row_the_database_refuses_is_rejected_and_the_rest_land(ingest_db):
    # A constraint the validation does not know about (as a newer migration might add).
    execute(ingest_db, "ALTER TABLE telemetry ADD CONSTRAINT rss_plausible CHECK (rss > -150)")
    stream = Stream()
    now = datetime.now(UTC)
    records = [stream.record(reading("dev-a", i, now, rss=-180 if i == 1 else -60)) for i in range(3)]

    response = invoke(event(records))

    assert response == {"batchItemFailures": []}
    assert rows(ingest_db, "SELECT seq FROM telemetry ORDER BY seq") == [(0,), (2,)]
    assert rows(ingest_db, "SELECT sequence_number, reason_code FROM ingest_rejects") == [
        (records[1]["kinesis"]["sequenceNumber"], "db_refused")
    ]


@pytest.fixture
def own_cluster() -> Iterator[PostgresCluster]:
    """A server of this test's own, so stopping it disturbs no other test."""
    flavour = requested_flavour()
    if flavour == "timescale" and not has_timescaledb(find_bin_dir()):  # only under DATABASE_URL: see pg_cluster
        pytest.skip("stops a server of its own, and these PostgreSQL binaries have no TimescaleDB: set PG_BIN_DIR")
    with temporary_cluster("iotkpi-ingest-fault-", flavour=flavour) as cluster:
        yield cluster


def test_database_down_mid_stream_fails_the_batch_then_lands_exactly_once(own_cluster, monkeypatch):
    url = own_cluster.create_database("ingest_fault")
    migrate(url)
    monkeypatch.setenv("DATABASE_URL", url)
    handler.database.reset()
    stream = Stream()
    now = datetime.now(UTC)
    first = event([stream.record(reading("dev-a", i, now - timedelta(seconds=100 - i))) for i in range(5)])
    second = event([stream.record(reading("dev-a", i, now - timedelta(seconds=100 - i))) for i in range(5, 10)])
    second["Records"].insert(2, stream.record(b"not json"))
    try:
        assert invoke(first) == {"batchItemFailures": []}
        connection_before = handler.database.connection()

        own_cluster.stop(mode="immediate")
        response = invoke(second)
        assert failed_sequences(response) == [r["kinesis"]["sequenceNumber"] for r in second["Records"]]
        assert invoke(second)["batchItemFailures"]  # still down: still failed, nothing acknowledged

        own_cluster.start(flavour=requested_flavour())
        assert invoke(second) == {"batchItemFailures": []}  # the mapping redelivers from the lowest failure
        assert invoke(second) == {"batchItemFailures": []}  # and at-least-once may deliver it again
    finally:
        handler.database.reset()

    assert rows(url, "SELECT seq, count(*) FROM telemetry GROUP BY seq ORDER BY seq") == [(i, 1) for i in range(10)]
    assert rows(url, "SELECT count(*) FROM ingest_rejects") == [(1,)]
    assert connection_before.closed


def test_handler_module_reuses_its_connection_across_invocations(ingest_db):
    stream = Stream()
    now = datetime.now(UTC)
    invoke(event([stream.record(reading("dev-a", 1, now))]))
    backend = handler.database.connection().info.backend_pid
    invoke(event([stream.record(reading("dev-a", 2, now))]))
    assert handler.database.connection().info.backend_pid == backend
