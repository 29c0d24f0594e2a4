"""The alerts function on real PostgreSQL and a real moto SNS topic fanned out to SQS queues.

Time is passed in (`now`), so a device "goes silent" by its last_seen staying put while the runs move on.
One queue takes everything (SNS envelope), a second one only critical alerts (FilterPolicy on the
`severity` message attribute, raw delivery).
"""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import boto3
import psycopg
import pytest
from alerts import postgres
from alerts.service import evaluate, run
from alerts.settings import AlertSettings
from alerts.sns import CLIENT_CONFIG, SnsPublisher
from common.db import Database
from common.migrations import migrate
from psycopg.conninfo import make_conninfo

from localcloud.servers.procs import free_port

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
SETTINGS = AlertSettings()  # the documented defaults: offline after 15 min, resolve after 10 clear minutes


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@dataclass
class Topic:
    arn: str
    everything: str  # queue URL: every notification, SNS JSON envelope
    critical: str  # queue URL: FilterPolicy {"severity": ["critical"]}, raw delivery
    sns: object
    sqs: object

    def publisher(self) -> SnsPublisher:
        return SnsPublisher(self.arn, client=self.sns)

    def drain_envelopes(self) -> list[dict]:
        return [json.loads(m["Body"]) for m in self._drain(self.everything)]

    def drain_raw(self) -> list[dict]:
        return self._drain(self.critical)

    def _drain(self, queue_url: str) -> list[dict]:
        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not batch:
                return messages
            for message in batch:
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            messages.extend(batch)


@pytest.fixture
def topic(aws_endpoint) -> Topic:
    sns, sqs = aws_endpoint.client("sns"), aws_endpoint.client("sqs")
    name = f"alerts-{uuid.uuid4().hex[:10]}"
    arn = sns.create_topic(Name=name)["TopicArn"]
    queues = {}
    for kind, attributes in (
        ("everything", {}),
        ("critical", {"FilterPolicy": json.dumps({"severity": ["critical"]}), "RawMessageDelivery": "true"}),
    ):
        queue_url = sqs.create_queue(QueueName=f"{name}-{kind}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        queues[kind] = queue_url
    return Topic(arn, queues["everything"], queues["critical"], sns, sqs)


def register(url: str, device: str, last_seen: datetime, is_test: bool = False) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, first_seen, last_seen, is_test) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET last_seen = EXCLUDED.last_seen",
            (device, last_seen - timedelta(days=2), last_seen, is_test),
        )


def kpi_window(url: str, device: str, minutes: int, start: datetime, closed: bool = True, **values) -> None:
    """A device_kpi row as the aggregate writes it; `values`: active_minutes, message_count, avg_rss, ..."""
    active = values.pop("active_minutes", minutes)
    row = {
        "message_count": values.pop("message_count", active),
        "avg_rss": values.pop("avg_rss", -60.0),
        "min_battery": values.pop("min_battery", None),
        "avg_temperature": values.pop("avg_temperature", None),
    }
    assert not values, values
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO device_kpi (device_id, window_minutes, window_start, window_end, is_closed, message_count,"
            " active_minutes, inactive_minutes, uptime_pct, avg_rss, min_battery, avg_temperature,"
            " distinct_seq_count, expected_count, computed_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            (device, minutes, start, start + timedelta(minutes=minutes), closed, row["message_count"], active,
             minutes - active, 100.0 * active / minutes, row["avg_rss"], row["min_battery"], row["avg_temperature"],
             row["message_count"], row["message_count"]),
        )  # fmt: skip


def rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def summary_of(envelope: dict) -> tuple[str, str, str, str]:
    attributes = {name: value["Value"] for name, value in envelope["MessageAttributes"].items()}
    return attributes["device_id"], attributes["rule"], attributes["event"], attributes["severity"]


def test_silent_device_notifies_offline_once_and_resolved_once(url, db, topic):
    register(url, "silent", T0)
    register(url, "rig", T0, is_test=True)  # test devices never alert
    register(url, "low-batt", T0)
    kpi_window(url, "low-batt", 5, T0, min_battery=12.0)
    publisher = topic.publisher()

    for minute in (10, 15, 16, 21, 26):  # silent for 10, 15 (exactly the limit), 16, 21, 26 minutes
        register(url, "low-batt", at(minute))  # keeps reporting
        run(db, publisher, SETTINGS, now=at(minute))
    first = topic.drain_envelopes()
    assert sorted(summary_of(e) for e in first) == [
        ("low-batt", "low_battery", "opened", "warning"),
        ("silent", "offline", "opened", "critical"),
    ]
    offline = next(e for e in first if e["MessageAttributes"]["rule"]["Value"] == "offline")
    assert offline["Subject"] == "[CRITICAL] silent: offline for 16 min"
    assert offline["Message"].startswith("Device silent has sent no reading for 16 minutes (limit 15).")
    assert offline["MessageAttributes"]["notification_id"]["Value"].endswith("-opened")
    assert rows(url, "SELECT rule, severity, status, opened_at FROM alerts WHERE device_id = 'silent'") == [
        ("offline", "critical", "open", at(16))
    ]
    assert rows(url, "SELECT last_value FROM alerts WHERE device_id = 'silent'") == [(26.0,)]  # kept current

    for minute in (31, 36, 41, 46, 51):  # it reports again from 30 on
        register(url, "silent", at(minute - 1))
        register(url, "low-batt", at(minute))
        run(db, publisher, SETTINGS, now=at(minute))
        if minute == 36:  # clear for 0 and 5 minutes: damped
            assert topic.drain_envelopes() == []
    resolved = topic.drain_envelopes()
    assert [summary_of(e) for e in resolved] == [("silent", "offline", "resolved", "critical")]
    assert resolved[0]["Subject"] == "[RESOLVED] silent: offline"
    assert rows(url, "SELECT status, resolved_at FROM alerts WHERE device_id = 'silent'") == [("resolved", at(41))]

    critical = topic.drain_raw()  # the filter policy let only the critical ones through, raw
    headlines = sorted(
        (m["MessageAttributes"]["event"]["StringValue"], m["Body"].splitlines()[0][:25]) for m in critical
    )
    assert headlines == [("opened", "Device silent has sent no"), ("resolved", "Resolved after 25 minutes")]
    assert {m["MessageAttributes"]["severity"]["StringValue"] for m in critical} == {"critical"}
    assert rows(url, "SELECT count(*), count(sent_at), count(message_id) FROM alert_notifications") == [(3, 3, 3)]


@pytest.fixture(params=["missing-topic", "closed-port"])
def broken_publisher(request, topic, aws_endpoint) -> SnsPublisher:
    if request.param == "missing-topic":
        return SnsPublisher(topic.arn + "-missing", client=topic.sns)
    client = boto3.client(
        "sns",
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=CLIENT_CONFIG,
    )
    return SnsPublisher(topic.arn, client=client)


def test_publish_failure_keeps_the_alert_and_the_next_run_delivers_exactly_once(url, db, topic, broken_publisher):
    register(url, "silent", T0)
    first = run(db, broken_publisher, SETTINGS, now=at(20))
    assert (first.evaluation.opened, first.delivery.failed, first.delivery.sent, first.delivery.unsent) == (
        {"offline": 1}, 1, 0, 1,
    )  # fmt: skip
    assert rows(url, "SELECT status FROM alerts") == [("open",)]
    unsent = "SELECT event, sent_at IS NULL, attempts, last_error IS NOT NULL FROM alert_notifications ORDER BY id"
    assert rows(url, unsent) == [("opened", True, 1, True)]

    register(url, "silent", at(25))  # it recovers while SNS is still unreachable
    run(db, broken_publisher, SETTINGS, now=at(25))
    register(url, "silent", at(35))
    second = run(db, broken_publisher, SETTINGS, now=at(35))
    assert second.evaluation.resolved == {"offline": 1}
    # The resolved notification waits behind its opened one: never published out of order.
    assert (second.delivery.failed, second.delivery.unsent) == (1, 2)
    assert rows(url, unsent) == [("opened", True, 3, True), ("resolved", True, 0, False)]
    assert topic.drain_envelopes() == []

    register(url, "silent", at(40))
    third = run(db, topic.publisher(), SETTINGS, now=at(40))
    assert (third.delivery.sent, third.delivery.failed, third.delivery.unsent) == (2, 0, 0)
    fourth = run(db, topic.publisher(), SETTINGS, now=at(45))
    assert (fourth.evaluation.opened, fourth.delivery.sent) == ({}, 0)
    delivered = topic.drain_envelopes()
    assert [summary_of(e)[2] for e in delivered] == ["opened", "resolved"]
    sent_order = rows(url, "SELECT event FROM alert_notifications ORDER BY sent_at, id")
    assert sent_order == [("opened",), ("resolved",)]
    assert len(topic.drain_raw()) == 2


def test_a_failing_topic_stops_the_delivery_pass_early(url, db, topic):
    for device in ("a", "b", "c", "d", "e"):
        register(url, device, T0)
    broken = SnsPublisher(topic.arn + "-missing", client=topic.sns)
    summary = run(db, broken, SETTINGS, now=at(20))
    assert (summary.evaluation.opened, summary.delivery.failed, summary.delivery.unsent) == ({"offline": 5}, 3, 5)
    assert rows(url, "SELECT count(*) FROM alert_notifications WHERE attempts = 0") == [(2,)]
    assert run(db, topic.publisher(), SETTINGS, now=at(25)).delivery.sent == 5
    assert sorted(summary_of(e)[0] for e in topic.drain_envelopes()) == ["a", "b", "c", "d", "e"]


def test_kpi_rules_read_the_rolling_hour_and_the_hourly_history(database_url, topic):
    migrate(database_url)
    # A session time zone half an hour off UTC: hours and windows must still be UTC-aligned.
    url = make_conninfo(database_url, options="-c TimeZone=Asia/Kolkata")
    horizon = datetime(2024, 3, 10, 13, 5, tzinfo=UTC)
    now = horizon + timedelta(minutes=2)
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE kpi_aggregate_state SET closed_until = %s", (horizon,))
    for device in ("kpi", "rig", "young"):
        register(url, device, now, is_test=device == "rig")
    # Rolling hour = the twelve closed windows 12:05 .. 13:00. Active minutes 5,2,5,2,...: 42 of 60 -> 70 %.
    # RSS weighted by readings: 6 windows x 30 readings at -90 and 6 x 10 at -70 -> -20400 / 240 = -85.0.
    for i in range(12):
        start = horizon - timedelta(minutes=60 - 5 * i)
        busy = i % 2 == 0
        kpi_window(url, "kpi", 5, start, active_minutes=5 if busy else 2, message_count=30 if busy else 10,
                   avg_rss=-90.0 if busy else -70.0)  # fmt: skip
        kpi_window(url, "rig", 5, start, active_minutes=0, message_count=0, avg_rss=None)
        if i > 0:
            kpi_window(url, "young", 5, start, active_minutes=1)  # only eleven windows: no uptime verdict
    kpi_window(url, "kpi", 5, horizon - timedelta(minutes=65), active_minutes=0, message_count=0, avg_rss=None)
    kpi_window(url, "kpi", 5, horizon, closed=False, active_minutes=0, message_count=0, avg_rss=None, min_battery=55.0)
    # Hourly temperature: latest closed hour 12:00 (UTC) at 30 °C; the 24 hours before alternate 20/22 °C;
    # an older hour outside the history would drag the mean down if it were read.
    kpi_window(url, "kpi", 60, datetime(2024, 3, 10, 12, tzinfo=UTC), avg_temperature=30.0)
    for hour in range(1, 25):
        kpi_window(url, "kpi", 60, datetime(2024, 3, 10, 12, tzinfo=UTC) - timedelta(hours=hour),
                   avg_temperature=20.0 if hour % 2 else 22.0)  # fmt: skip
    kpi_window(url, "kpi", 60, datetime(2024, 3, 9, 11, tzinfo=UTC), avg_temperature=-40.0)

    db = Database(lambda: url)
    try:
        with db.transaction() as conn:
            snapshots = {s.device_id: s for s in postgres.load_snapshots(conn, now, horizon, 24)}
        assert set(snapshots) == {"kpi", "young"}
        kpi = snapshots["kpi"]
        assert kpi.uptime_pct == pytest.approx(70.0)
        assert kpi.avg_rss == pytest.approx(-85.0)
        assert kpi.battery_pct == 55.0  # the latest window carrying a battery level, open or not
        assert kpi.temperature == 30.0
        assert kpi.temperature_history == (22.0, 20.0) * 12  # oldest first, 24 hours
        assert snapshots["young"].uptime_pct is None

        evaluation = evaluate(db, SETTINGS, now=now)
        assert evaluation.kpi_horizon == horizon.isoformat()
        # Uptime 70 % < 80 % and a 30 °C hour against 21 ± 1 °C open; -85.0 dBm is not below -85.
        assert evaluation.opened == {"low_uptime": 1, "temperature_anomaly": 1}
        opened = dict(rows(url, "SELECT rule, last_value FROM alerts WHERE device_id = 'kpi'"))
        assert opened["low_uptime"] == pytest.approx(70.0)
        # (30 - 21) / s, s = sample standard deviation of twelve 20s and twelve 22s = sqrt(24 / 23)
        assert opened["temperature_anomaly"] == pytest.approx(9 / (24 / 23) ** 0.5)
    finally:
        db.reset()


def test_one_open_alert_per_device_and_rule(url):
    insert = (
        "INSERT INTO alerts (device_id, rule, severity, status, opened_at, threshold, message, last_evaluated_at)"
        " VALUES ('d', 'offline', 'critical', 'open', now(), 15, 'm', now())"
    )
    with psycopg.connect(url) as conn:
        conn.execute(insert)
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert)


def test_handler_runs_on_a_scheduled_event(url, topic, aws_env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ALERTS_TOPIC_ARN", topic.arn)
    from alerts import handler

    handler.db.reset()
    register(url, "gone", datetime.now(UTC) - timedelta(days=1))  # the handler uses the database clock
    try:
        summary = handler.lambda_handler(SCHEDULED_EVENT, LambdaContext())
        assert summary["evaluation"]["opened"] == {"offline": 1}
        assert summary["delivery"] == {"sent": 1, "failed": 0, "unsent": 0, "errors": []}
        assert [summary_of(e) for e in topic.drain_envelopes()] == [("gone", "offline", "opened", "critical")]

        monkeypatch.setenv("ALERTS_TOPIC_ARN", topic.arn + "-missing")
        register(url, "gone-too", datetime.now(UTC) - timedelta(days=1))
        with pytest.raises(handler.NotificationDeliveryError, match="1 notification"):
            handler.lambda_handler(SCHEDULED_EVENT, LambdaContext())
        assert rows(url, "SELECT count(*) FROM alerts WHERE device_id = 'gone-too' AND status = 'open'") == [(1,)]
    finally:
        handler.db.reset()


SCHEDULED_EVENT = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2024-03-10T12:10:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:events:us-east-1:123456789012:rule/iotkpi-alerts"],
    "detail": {},
}


class LambdaContext:
    function_name = "iotkpi-alerts"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:iotkpi-alerts"
    aws_request_id = "0f7d3c4e-2b7a-4d8e-9a57-7f6c1f0b2a11"
