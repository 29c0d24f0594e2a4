"""MQTT in → KPIs out, through the real stack run by `localcloud up`: mosquitto, the IoT rules engine, moto
Kinesis, the event source mapping poller, the ingest and aggregate Lambdas, PostgreSQL.

The expected values below are computed by hand from the readings this test publishes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest

from tests.fixtures.local_cloud import LocalCloud, wait_until

pytestmark = pytest.mark.e2e

# A whole UTC hour in the past: every window the test checks is closed when the aggregate runs.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)


def reading(minute: int, seq: int, rss: float, **extra) -> dict:
    return {"ts": (BASE + timedelta(minutes=minute)).isoformat(), "seq": seq, "rss": rss, **extra}


class Publisher:
    """One paho client, QoS 1: `publish` returns once the broker has acknowledged the message."""

    def __init__(self, host: str, port: int) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-{uuid.uuid4().hex[:8]}")
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, device: str, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(f"devices/{device}/telemetry", body, qos=1).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def publisher(local_cloud: LocalCloud):
    settings = local_cloud.settings
    pub = Publisher(settings["MQTT_HOST"], int(settings["MQTT_PORT"]))
    yield pub
    pub.close()


def rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def test_readings_become_rows_rejects_and_kpi_windows(local_cloud: LocalCloud, publisher: Publisher):
    settings = local_cloud.settings
    db = settings["DATABASE_URL"]
    run = uuid.uuid4().hex[:8]
    a, b, c = f"e2e-{run}-a", f"e2e-{run}-b", f"e2e-{run}-c"

    # a: one reading a minute for ten minutes; seq 3 and 7 are published twice (redelivery by the device)
    for i in range(10):
        publisher.publish(a, reading(i, i + 1, -60 - i, battery=90 - i, temperature=20 + i))
        if i + 1 in (3, 7):
            publisher.publish(a, reading(i, i + 1, -60 - i, battery=90 - i, temperature=20 + i))
    # b: minutes 0-2 (seq 1-3) and 6 (seq 7); seq 4-6 are missing for now, seq 5 arrives late
    for minute, seq in ((0, 1), (1, 2), (2, 3), (6, 7)):
        publisher.publish(b, reading(minute, seq, -80))
    # c: bad readings, then a good one behind them in the same shard (same partition key)
    far_future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    bad = [
        {"ts": BASE.isoformat(), "seq": 1, "rss": "strong"},
        {"ts": BASE.isoformat(), "rss": -70},
        {"ts": far_future, "seq": 2, "rss": -70},
        {"ts": BASE.isoformat(), "seq": 3, "rss": -70, "note": "x" * 131_000},
    ]
    for payload in bad:
        publisher.publish(c, payload)
    publisher.publish(c, b"\xff not json")  # IoT Core itself drops a non-JSON payload for this rule's SQL
    publisher.publish(c, reading(0, 10, -70))

    def counts():
        return dict(
            rows(db, "SELECT device_id, count(*) FROM telemetry WHERE device_id LIKE %s GROUP BY 1", f"e2e-{run}-%")
        )

    wait_until(lambda: counts() == {a: 10, b: 4, c: 1}, timeout=90, what="rows for every valid reading")

    def reject_codes():
        return [
            code for (code,) in rows(db, "SELECT reason_code FROM ingest_rejects WHERE device_id = %s ORDER BY id", c)
        ]

    rejects = wait_until(lambda: len(reject_codes()) >= 4 and reject_codes(), timeout=30, what="rejects")
    assert rejects == ["wrong_type", "missing_field", "ts_in_future", "oversize"]
    raw = rows(db, "SELECT raw FROM ingest_rejects WHERE device_id = %s AND reason_code = 'wrong_type'", c)[0][0]
    assert json.loads(raw)["rss"] == "strong"  # the raw record bytes are kept
    assert {d for (d,) in rows(db, "SELECT device_id FROM devices WHERE device_id LIKE %s", f"e2e-{run}-%")} == {
        a,
        b,
        c,
    }

    local_cloud.check("fire", settings["AGGREGATE_SCHEDULE_NAME"], timeout=120)

    def window(device: str, minutes: int, start: datetime):
        found = rows(
            db,
            "SELECT message_count, active_minutes, inactive_minutes, uptime_pct, avg_rss, min_rss, max_rss,"
            " min_battery, avg_temperature, is_closed FROM device_kpi"
            " WHERE device_id = %s AND window_minutes = %s AND window_start = %s",
            device,
            minutes,
            start,
        )
        return found[0] if found else None

    # a, [BASE, BASE+5min): minutes 0-4, rss -60..-64, battery 90..86, temperature 20..24; duplicates once
    assert window(a, 5, BASE) == (5, 5, 0, 100.0, -62.0, -64.0, -60.0, 86.0, 22.0, True)
    assert window(a, 5, BASE + timedelta(minutes=5)) == (5, 5, 0, 100.0, -67.0, -69.0, -65.0, 81.0, 27.0, True)
    # a, the hour: 10 active minutes of 60
    assert window(a, 60, BASE)[:4] == (10, 10, 50, pytest.approx(100 * 10 / 60))
    # b before the late reading: minutes 0-2 of the first window, minute 6 of the second
    assert window(b, 5, BASE)[:4] == (3, 3, 2, 60.0)
    assert window(b, 5, BASE + timedelta(minutes=5))[:4] == (1, 1, 4, 20.0)
    # a silent window of a registered device is a row too: 0% uptime, not a missing value
    assert window(a, 5, BASE + timedelta(minutes=10)) == (0, 0, 5, 0.0, None, None, None, None, None, True)

    # the late reading (minute 4, seq 5) re-aggregates exactly the window it falls in
    publisher.publish(b, reading(4, 5, -80))
    wait_until(lambda: counts()[b] == 5, timeout=60, what="the late reading")
    local_cloud.check("fire", settings["AGGREGATE_SCHEDULE_NAME"], timeout=120)
    assert window(b, 5, BASE)[:4] == (4, 4, 1, 80.0)
    assert window(b, 60, BASE)[:4] == (5, 5, 55, pytest.approx(100 * 5 / 60))


@pytest.mark.usefixtures("passwords_checked")
def test_up_creates_the_read_only_grafana_login(local_cloud: LocalCloud):
    settings = local_cloud.settings
    host, port = settings["GRAFANA_DB_HOST"].rsplit(":", 1)
    login = dict(host=host, port=port, dbname=settings["GRAFANA_DB_NAME"], user=settings["GRAFANA_DB_USER"])
    with psycopg.connect(**login, password=settings["GRAFANA_DB_PASSWORD"]) as conn:
        conn.execute("SELECT count(*) FROM device_kpi").fetchone()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM devices")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**login, password="wrong").close()
