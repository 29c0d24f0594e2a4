"""The simulator drives the real stack (`localcloud up`): every behaviour on, and the database ends up with
exactly what the simulator's report predicts — each valid reading once, each refused message a reject with its
reason, offline gaps as silent KPI windows — and `localcloud kpis` prints those tables' numbers."""

from __future__ import annotations

import argparse
import json
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from common.telemetry import DEFAULT_LIMITS, InvalidReading, parse_row

from localcloud.tools.kpi_report import fleet_summary
from localcloud.tools.simulator import Simulation
from localcloud.tools.simulator.cli import add_arguments, main, options_from
from localcloud.tools.simulator.model import LATE, LOST_OFFLINE, MALFORMED, OVERSIZE, STORED_KINDS
from tests.fixtures.local_cloud import LocalCloud, wait_until

pytestmark = pytest.mark.e2e

# Whole UTC hours in the past: every window the test checks is closed when the aggregate runs.
BASE = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
DEVICES, DURATION_S, OFFLINE_AT_MINUTE, OFFLINE_MINUTES = 6, 1800, 10, 10


def rows(url: str, query: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def expected_reject_code(message) -> str:
    """What the ingest says about a refused message: the real validation on the rule's output (payload plus
    the fields the rule adds)."""
    record = {**json.loads(message.payload), "device_id": message.device_id, "received_at": 0}
    raw = json.dumps(record).encode()
    with pytest.raises(InvalidReading) as caught:
        parse_row(raw, datetime.now(UTC))
    return caught.value.code


def floor_to(ts: datetime, minutes: int) -> datetime:
    return ts.replace(minute=ts.minute - ts.minute % minutes, second=0, microsecond=0)


@pytest.fixture(scope="module")
def simulated(local_cloud: LocalCloud, tmp_path_factory):
    """Run the simulator CLI once against the local cloud; its argv, report lines, summary and messages."""
    settings = local_cloud.settings
    prefix = f"e2esim-{uuid.uuid4().hex[:6]}-"
    out = tmp_path_factory.mktemp("simulator")
    argv = ["--devices", str(DEVICES), "--rate", "6", "--duration", str(DURATION_S), "--seed", "7",
            "--prefix", prefix, "--start", BASE.isoformat(), "--no-pace",
            "--duplicates", "0.03", "--late", "0.02", "--late-delay", "60", "300", "--out-of-order", "0.02",
            "--malformed", "0.02", "--oversize", "0.005", "--clock-skew", "20",
            "--offline", f"2:{OFFLINE_MINUTES}@{OFFLINE_AT_MINUTE}",
            "--host", settings["MQTT_HOST"], "--port", settings["MQTT_PORT"],
            "--report", str(out / "sent.jsonl"), "--summary-json", str(out / "summary.json")]  # fmt: skip
    assert main(argv) == 0
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    # The same options give the same messages: the payloads behind the report's lines.
    simulation = Simulation(options_from(parser.parse_args(argv), datetime.now(UTC)))
    lines = [json.loads(line) for line in (out / "sent.jsonl").read_text().splitlines()]
    messages = list(simulation.messages())
    assert [(m.kind, list(m.key) if m.key else None) for m in messages] == [
        (line["kind"], line["key"]) for line in lines
    ]
    return {
        "prefix": prefix,
        "db": settings["DATABASE_URL"],
        "lines": lines,
        "summary": json.loads((out / "summary.json").read_text()),
        "messages": messages,
        "simulation": simulation,
    }


def stored_keys(lines) -> set[tuple[str, datetime, int]]:
    return {
        (line["key"][0], datetime.fromisoformat(line["key"][1]), line["key"][2])
        for line in lines
        if line["kind"] in STORED_KINDS
    }


def test_every_valid_reading_stored_once_and_every_refused_message_rejected(simulated):
    db, prefix, lines = simulated["db"], simulated["prefix"], simulated["lines"]
    expected = stored_keys(lines)
    counts = simulated["summary"]["counts"]
    assert all(counts[kind] > 0 for kind in counts)  # every behaviour happened in this run

    def stored():
        return rows(db, "SELECT device_id, ts, seq FROM telemetry WHERE device_id LIKE %s", prefix + "%")

    found = wait_until(lambda: len(stored()) >= len(expected) and stored(), timeout=240, what="telemetry rows")
    assert len(found) == len(set(found))  # duplicates stored once
    assert set(found) == expected
    late = {key for key in expected if key in stored_keys([line for line in lines if line["kind"] == LATE])}
    assert late and late <= set(found)

    refused = [m for m in simulated["messages"] if m.kind in (MALFORMED, OVERSIZE)]
    # A payload that is not JSON never reaches the ingest: the rule's SELECT *, topic(2) needs a JSON object.
    reaching = [m for m in refused if m.detail != "invalid_json"]
    assert len(reaching) < len(refused)
    expected_rejects = Counter((m.device_id, expected_reject_code(m)) for m in reaching)

    def rejects():
        # Every reject carries its device (an oversize one, refused unparsed, from the record's partition key).
        found = rows(db, "SELECT device_id, reason_code, raw FROM ingest_rejects WHERE device_id LIKE %s", prefix + "%")
        return [(device_id, code, len(raw)) for device_id, code, raw in found]

    got = wait_until(
        lambda: len(rejects()) >= len(reaching) and rejects(), timeout=120, what="a reject for every refused message"
    )
    assert Counter((device, code) for device, code, _ in got) == expected_rejects
    assert all(size > DEFAULT_LIMITS.max_bytes for _, code, size in got if code == "oversize")
    assert {code for _, code, _ in got} >= {"oversize", "wrong_type", "missing_field"}


def test_offline_gaps_lower_uptime_and_kpis_match_the_report(simulated, local_cloud: LocalCloud):
    db, prefix = simulated["db"], simulated["prefix"]
    expected = stored_keys(simulated["lines"])
    wait_until(
        lambda: rows(db, "SELECT count(*) FROM telemetry WHERE device_id LIKE %s", prefix + "%")[0][0] == len(expected),
        timeout=240, what="every reading stored",
    )  # fmt: skip
    local_cloud.check("fire", local_cloud.settings["AGGREGATE_SCHEDULE_NAME"], timeout=180)

    # Per device and 5-minute window, from the report: readings and the UTC minutes that had one.
    readings, minutes = defaultdict(set), defaultdict(set)
    for device_id, ts, seq in expected:
        readings[device_id, floor_to(ts, 5)].add((ts, seq))
        minutes[device_id, floor_to(ts, 5)].add(floor_to(ts, 1))
    kpi = {
        (device_id, start): (count, active, uptime)
        for device_id, start, count, active, uptime in rows(
            db,
            "SELECT device_id, window_start, message_count, active_minutes, uptime_pct FROM device_kpi"
            " WHERE device_id LIKE %s AND window_minutes = 5",
            prefix + "%",
        )
    }
    offline = {span.device_id: span for span in simulated["simulation"].offline_spans}
    assert len(offline) == 2
    for device in simulated["simulation"].devices:
        windows = sorted(start for device_id, start in readings if device_id == device.device_id)
        start = windows[0]
        while start <= windows[-1]:
            count = len(readings.get((device.device_id, start), ()))
            active = len(minutes.get((device.device_id, start), ()))
            assert kpi[device.device_id, start] == (count, active, pytest.approx(100 * active / 5)), (device, start)
            start += timedelta(minutes=5)
    # The windows wholly inside an offline span, as the device's clock has it, are silent.
    skews = {
        device.device_id: timedelta(milliseconds=device.clock_skew_ms) for device in simulated["simulation"].devices
    }
    for device_id, span in offline.items():
        silent_from = BASE + timedelta(seconds=span.start_s) + skews[device_id]
        silent_to = BASE + timedelta(seconds=span.end_s) + skews[device_id]
        inside = [
            start
            for (d, start) in kpi
            if d == device_id and silent_from <= start and start + timedelta(minutes=5) <= silent_to
        ]
        assert inside and all(kpi[device_id, start][:2] == (0, 0) for start in inside)
    hourly = dict(rows(db, "SELECT device_id, uptime_pct FROM device_kpi WHERE device_id LIKE %s AND window_minutes = 60"
                           " AND window_start = %s", prefix + "%", BASE))  # fmt: skip
    online = [hourly[d.device_id] for d in simulated["simulation"].devices if d.device_id not in offline]
    assert max(hourly[device_id] for device_id in offline) < min(online)


def test_fleet_summary_prints_the_tables_numbers(simulated, local_cloud: LocalCloud):
    db, prefix = simulated["db"], simulated["prefix"]
    now = BASE + timedelta(seconds=DURATION_S + 300)
    wait_until(lambda: rows(db, "SELECT count(*) FROM device_kpi WHERE device_id LIKE %s", prefix + "%")[0][0] > 0,
               timeout=60, what="KPI windows")  # fmt: skip
    registered_query = "SELECT count(*) FROM devices WHERE NOT is_test"
    registered_before = rows(db, registered_query)[0][0]
    alerts_before = dict(rows(db, "SELECT device_id, count(*) FROM alerts WHERE status = 'open' GROUP BY 1"))
    text = fleet_summary(db, now=now, prefix=prefix)
    alerts_after = dict(rows(db, "SELECT device_id, count(*) FROM alerts WHERE status = 'open' GROUP BY 1"))

    # Other tests share the local cloud: their devices may register meanwhile.
    registered_after = rows(db, registered_query)[0][0]
    assert any(f"of {registered} registered" in text for registered in (registered_before, registered_after))
    table = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            cells = re.split(r"\s{2,}", line.strip())
            table[cells[0]] = cells
    assert set(table) == {device.device_id for device in simulated["simulation"].devices}

    windows = defaultdict(list)
    for device_id, *values in rows(
        db,
        "SELECT device_id, active_minutes, message_count, avg_rss, min_battery, distinct_seq_count, expected_count"
        " FROM device_kpi WHERE device_id LIKE %s AND window_minutes = 5 AND window_start >= %s AND window_end <= %s",
        prefix + "%", now - timedelta(hours=1), now,
    ):  # fmt: skip
        windows[device_id].append(values)
    last_seen = dict(rows(db, "SELECT device_id, last_seen FROM devices WHERE device_id LIKE %s", prefix + "%"))
    for device_id, cells in table.items():
        values = windows[device_id]
        assert values
        uptime = 100 * sum(v[0] for v in values) / (5 * len(values))
        count = sum(v[1] for v in values if v[2] is not None)
        avg_rss = sum(v[2] * v[1] for v in values if v[2] is not None) / count
        battery = min(v[3] for v in values if v[3] is not None)
        complete = 100 * sum(v[4] for v in values) / sum(v[5] for v in values)
        status = "inactive"  # status is the present's: these devices last sent over an hour ago
        assert cells[1:7] == [
            status,
            f"{last_seen[device_id].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            f"{uptime:.1f}%",
            f"{avg_rss:.1f} dBm",
            f"{battery:.1f}%",
            f"{complete:.1f}%",
        ]
        assert int(cells[7]) in {alerts_before.get(device_id, 0), alerts_after.get(device_id, 0)}
    offline = {span.device_id for span in simulated["simulation"].offline_spans}
    uptimes = {device_id: float(cells[3].rstrip("%")) for device_id, cells in table.items()}
    assert max(uptimes[d] for d in offline) < min(u for d, u in uptimes.items() if d not in offline)
    assert not any(line["kind"] == LOST_OFFLINE and line["device_id"] not in offline for line in simulated["lines"])
