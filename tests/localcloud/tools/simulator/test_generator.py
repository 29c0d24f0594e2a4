"""The device simulator's pure part (localcloud.tools.simulator): reproducible, realistic, each behaviour present at
about the requested rate, and its good and bad messages judged as the pipeline judges them: through the
stack's own topic rule (localcloud.runtime.iot.sql) and the ingest's validation (common.telemetry)."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from common.telemetry import DEFAULT_LIMITS, InvalidReading, parse_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localcloud.config import STACK_FILE
from localcloud.runtime.iot.sql import Message as MqttMessage
from localcloud.runtime.iot.sql import SqlEvaluationError, parse_rule
from localcloud.stack.model import load_stack
from localcloud.tools.simulator import OfflineSchedule, Options, Report, Simulation
from localcloud.tools.simulator.cli import add_arguments, options_from
from localcloud.tools.simulator.model import (
    DUPLICATE,
    LATE,
    LOST_OFFLINE,
    MALFORMED,
    OUT_OF_ORDER,
    OVERSIZE,
    STORED_KINDS,
    VALID,
)
from localcloud.tools.simulator.payloads import MALFORMED_VARIANTS
from localcloud.tools.simulator.signals import RSS_RANGE_DBM

START = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
EVERYTHING = dict(duplicates=0.05, late=0.04, out_of_order=0.03, malformed=0.05, oversize=0.02, clock_skew_s=30.0)


def telemetry_rule():
    """The stack's rule for device telemetry, parsed by the local rules engine."""
    (spec,) = [rule for rule in load_stack(STACK_FILE).topic_rules.values() if "devices/+/telemetry" in rule.sql]
    return parse_rule(spec.sql, spec.sql_version)


RULE = telemetry_rule()


def ingest_record(message) -> bytes:
    """What the ingest gets for a message: the rule's output (raises SqlEvaluationError when the rule fails)."""
    arrival_ms = int((START + timedelta(seconds=message.send_s)).timestamp() * 1000)
    return RULE.evaluate(MqttMessage(message.topic, message.payload, arrival_ms))


def ingest_now(message) -> datetime:
    return START + timedelta(seconds=message.send_s)


def run(**overrides):
    options = Options(**{"start": START, "devices": 5, "rate_per_minute": 6, "duration_s": 600, **overrides})
    simulation = Simulation(options)
    return simulation, list(simulation.messages())


def sent_bytes(messages) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in messages if m.kind != LOST_OFFLINE]


def within_binomial(count: int, trials: int, p: float) -> bool:
    """count is a plausible draw of Binomial(trials, p) (five standard deviations)."""
    return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p)) + 1


def test_same_seed_same_bytes_other_seed_other_bytes():
    _, first = run(seed=7, offline=(OfflineSchedule(2, 3),), **EVERYTHING)
    _, again = run(seed=7, offline=(OfflineSchedule(2, 3),), **EVERYTHING)
    _, other = run(seed=8, offline=(OfflineSchedule(2, 3),), **EVERYTHING)
    assert sent_bytes(first) == sent_bytes(again)
    assert [m.send_s for m in first] == [m.send_s for m in again]
    assert sent_bytes(first) != sent_bytes(other)


def test_the_prefix_names_the_devices_and_changes_nothing_else():
    _, first = run(seed=7, prefix="a-", **EVERYTHING)
    _, renamed = run(seed=7, prefix="site-b-", **EVERYTHING)
    assert [(m.kind, m.payload) for m in first] == [(m.kind, m.payload) for m in renamed]
    assert {m.device_id[len("site-b-") :] for m in renamed} == {m.device_id[len("a-") :] for m in first}


def test_device_ids_prefix_and_counts():
    simulation, messages = run(devices=12, prefix="plant7-", rate_per_minute=3, duration_s=120)
    assert [device.device_id for device in simulation.devices][:2] == ["plant7-0001", "plant7-0002"]
    per_device = Counter(m.device_id for m in messages)
    assert set(per_device) == {f"plant7-{n:04d}" for n in range(1, 13)}
    assert set(per_device.values()) == {6}  # 3 a minute for 2 minutes, nothing else asked for
    assert {m.kind for m in messages} == {VALID}


def test_behaviours_appear_at_about_the_requested_rate():
    _, messages = run(devices=40, rate_per_minute=12, duration_s=1800, **EVERYTHING)  # 14,400 readings
    kinds = Counter(m.kind for m in messages)
    readings = kinds[VALID] + kinds[LATE] + kinds[OUT_OF_ORDER]
    assert readings == 40 * 12 * 30
    for kind, p in ((LATE, 0.04), (OUT_OF_ORDER, 0.03), (DUPLICATE, 0.05), (MALFORMED, 0.05), (OVERSIZE, 0.02)):
        assert within_binomial(kinds[kind], readings, p), (kind, kinds[kind], readings * p)
    variants = Counter(m.detail for m in messages if m.kind == MALFORMED)
    assert set(variants) == set(MALFORMED_VARIANTS)


def test_duplicates_are_the_same_bytes_sent_again_later():
    _, messages = run(duplicates=0.2)
    originals = {m.key: m for m in messages if m.kind in STORED_KINDS}
    duplicates = [m for m in messages if m.kind == DUPLICATE]
    assert duplicates
    for duplicate in duplicates:
        original = originals[duplicate.key]
        assert (duplicate.topic, duplicate.payload) == (original.topic, original.payload)
        assert duplicate.send_s > original.send_s


def test_late_and_out_of_order_readings_carry_their_old_ts():
    _, messages = run(late=0.1, out_of_order=0.1, late_delay_s=(120, 300))
    late = [m for m in messages if m.kind == LATE]
    out_of_order = [m for m in messages if m.kind == OUT_OF_ORDER]
    assert late and out_of_order
    for m in late:
        assert 120 <= m.send_s - m.measured_s <= 300
        assert _ts(m) <= START + timedelta(seconds=m.send_s - 120)  # ts is minutes old when it is sent
    for m in out_of_order:  # sent after the device's next reading, which was measured (and sent) after it
        next_one = [o for o in messages if o.device_id == m.device_id and o.kind == VALID and o.key[2] == m.key[2] + 1]
        assert not next_one or (next_one[0].send_s < m.send_s and _ts(next_one[0]) > _ts(m))
    assert any(
        o.device_id == m.device_id and o.kind == VALID and o.key[2] == m.key[2] + 1
        for m in out_of_order
        for o in messages
    )


def _ts(message) -> datetime:
    return datetime.fromisoformat(message.key[1])


def test_clock_skew_offsets_each_device_within_the_bound():
    simulation, messages = run(clock_skew_s=45)
    skews = {device.device_id: device.clock_skew_ms for device in simulation.devices}
    assert len(set(skews.values())) == len(skews)  # each device its own
    assert all(abs(skew) <= 45_000 for skew in skews.values())
    for m in messages:
        true = START + timedelta(seconds=m.measured_s)
        offset = (_ts(m) - true) / timedelta(milliseconds=1)
        assert abs(offset - skews[m.device_id]) < 1  # ts is at millisecond precision


def test_valid_readings_pass_the_rule_and_the_ingest_with_their_key():
    _, messages = run(**EVERYTHING)
    for m in messages:
        if m.kind in STORED_KINDS | {DUPLICATE}:
            row = parse_row(ingest_record(m), ingest_now(m))
            assert (row[0], row[1], row[2]) == (m.key[0], datetime.fromisoformat(m.key[1]), m.key[2])


def test_malformed_and_oversize_are_refused():
    _, messages = run(devices=10, malformed=0.3, oversize=0.1)
    codes = Counter()
    for m in messages:
        if m.kind == OVERSIZE:
            assert len(m.payload) > DEFAULT_LIMITS.max_bytes
            codes[_refusal(m)] += 1
        elif m.kind == MALFORMED and m.detail == "invalid_json":
            with pytest.raises(SqlEvaluationError):  # IoT Core drops it: the rule's SELECT needs a JSON object
                ingest_record(m)
            with pytest.raises(InvalidReading):
                parse_row(m.payload, ingest_now(m))
        elif m.kind == MALFORMED:
            codes[_refusal(m)] += 1
    assert set(codes) == {"oversize", "wrong_type", "bad_seq", "missing_field", "bad_ts"}


def _refusal(message) -> str:
    with pytest.raises(InvalidReading) as caught:
        parse_row(ingest_record(message), ingest_now(message))
    return caught.value.code


def test_offline_devices_send_nothing_measured_in_their_span():
    simulation, messages = run(devices=8, offline=(OfflineSchedule(2, 3), OfflineSchedule(1, 2, at_minute=4)))
    spans = simulation.offline_spans
    assert len(spans) == 3 and len({span.device_id for span in spans}) == 3
    fixed = [span for span in spans if span.start_s == 240]
    assert len(fixed) == 1 and fixed[0].end_s == 360
    for span in spans:
        assert span.start_s >= 0 and span.end_s <= 600
        theirs = [m for m in messages if m.device_id == span.device_id and span.covers(m.measured_s)]
        assert theirs and {m.kind for m in theirs} == {LOST_OFFLINE}
    # the device measured on while offline: the seqs it did send leave a gap of exactly the lost ones
    for span in spans:
        sent = {m.key[2] for m in messages if m.device_id == span.device_id and m.kind in STORED_KINDS}
        lost = {m.key[2] for m in messages if m.device_id == span.device_id and m.kind == LOST_OFFLINE}
        assert sent.isdisjoint(lost) and sent | lost == set(range(1, len(sent | lost) + 1))


def test_signals_are_realistic():
    _, messages = run(devices=3, rate_per_minute=1 / 30, duration_s=3 * 86_400)  # every 30 minutes, 3 days
    per_device = defaultdict(list)
    for m in messages:
        per_device[m.device_id].append(json.loads(m.payload))
    for readings in per_device.values():
        assert all(RSS_RANGE_DBM[0] <= r["rss"] <= RSS_RANGE_DBM[1] for r in readings)
        assert len({r["rss"] for r in readings}) > 10  # it wanders
        batteries = [r["battery"] for r in readings]
        assert batteries == sorted(batteries, reverse=True) and batteries[0] > batteries[-1]
        assert all(0 <= r["humidity"] <= 100 for r in readings)
    for device in per_device:  # warmer in the afternoon than at night, device by device
        warm = [json.loads(m.payload)["temperature"] for m in messages if m.device_id == device and _hour(m) == 15]
        cold = [json.loads(m.payload)["temperature"] for m in messages if m.device_id == device and _hour(m) == 3]
        assert warm and cold and min(warm) > max(cold)


def _hour(message) -> int:
    return (START + timedelta(seconds=message.measured_s)).hour


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    devices=st.integers(1, 6),
    rate=st.floats(0.5, 30),
    duration=st.floats(5, 900),
    seed=st.integers(0, 2**32),
    probabilities=st.tuples(*[st.floats(0, 0.5)] * 5),
    offline=st.lists(st.tuples(st.integers(0, 1), st.floats(0.1, 20)), max_size=2),
)
def test_stream_invariants(devices, rate, duration, seed, probabilities, offline):
    duplicates, late, out_of_order, malformed, oversize = probabilities
    schedules = tuple(OfflineSchedule(count, minutes) for count, minutes in offline)
    if sum(s.devices for s in schedules) > devices:
        schedules = ()
    simulation, messages = run(
        devices=devices, rate_per_minute=rate, duration_s=duration, seed=seed, duplicates=duplicates, late=late,
        out_of_order=out_of_order, malformed=malformed, oversize=oversize, offline=schedules,
    )  # fmt: skip
    sends = [m.send_s for m in messages]
    assert sends == sorted(sends)
    assert all(m.send_s >= m.measured_s and 0 <= m.measured_s < duration for m in messages)
    stored = [m.key for m in messages if m.kind in STORED_KINDS]
    assert len(stored) == len(set(stored))  # a key is sent once, its duplicates aside
    assert {m.key for m in messages if m.kind == DUPLICATE} <= set(stored)
    for device in simulation.devices:  # seq counts every reading the device measured, 1, 2, ...
        seqs = sorted(
            m.key[2] for m in messages if m.device_id == device.device_id and m.kind in STORED_KINDS | {LOST_OFFLINE}
        )
        assert seqs == list(range(1, len(seqs) + 1))


def test_report_counts_and_summary():
    simulation, messages = run(offline=(OfflineSchedule(1, 2),), **EVERYTHING)
    report = Report(simulation.options, simulation.offline_spans)
    for m in messages:
        report.record(m)
    kinds = Counter(m.kind for m in messages)
    assert report.as_dict()["counts"] == {kind: kinds[kind] for kind in report.as_dict()["counts"]}
    assert report.sent == len(messages) - kinds[LOST_OFFLINE]
    summary = report.summary()
    assert f"{kinds[VALID]:>9,}" in summary and simulation.offline_spans[0].device_id in summary
    assert f"sent {report.sent:,}" in report.progress_line()


def test_options_from_the_command_line():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    now = datetime(2024, 6, 1, 12, tzinfo=UTC)
    args = parser.parse_args(["--devices", "20", "--total-rate", "4", "--duration", "120", "--no-pace",
                              "--offline", "3:10", "--offline", "1:2@5", "--late-delay", "5", "10"])  # fmt: skip
    options = options_from(args, now)
    assert options.rate_per_minute == pytest.approx(12.0)  # 4 msg/s over 20 devices
    assert options.start == now - timedelta(seconds=120)  # unpaced runs end now: no ts in the future
    assert options.offline == (OfflineSchedule(3, 10), OfflineSchedule(1, 2, 5))
    assert options.late_delay_s == (5.0, 10.0)
    paced = options_from(parser.parse_args(["--start", "2024-01-02T03:04:05"]), now)
    assert paced.start == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC) and paced.rate_per_minute == 6.0


@pytest.mark.parametrize(
    "bad",
    [dict(devices=0), dict(late=1.5), dict(late=0.6, out_of_order=0.6), dict(clock_skew_s=-1),
     dict(late_delay_s=(10, 5)), dict(offline=(OfflineSchedule(6, 1),)), dict(start=START.replace(tzinfo=None))],
)  # fmt: skip
def test_options_refuse_nonsense(bad):
    with pytest.raises(ValueError):
        Options(**{"start": START, "devices": 5, **bad})


@pytest.mark.parametrize("text", ["three:10", "3", "3:", "3:10@", "-1:5"])
def test_offline_schedule_syntax(text):
    with pytest.raises(ValueError):
        OfflineSchedule.parse(text)
