"""Alert rules at their boundaries: exactly at the threshold is healthy, just beyond it is not."""

import statistics
from datetime import UTC, datetime, timedelta

import pytest
from alerts.rules import DeviceSnapshot, Rule, kpi_horizon, observe_kpis, observe_offline, temperature_z
from alerts.settings import Thresholds

NOW = datetime(2024, 3, 10, 12, 7, 30, tzinfo=UTC)
T = Thresholds()
# Twelve hourly averages: mean 20; squared deviations 16+16+4+4+1+1+1+1 = 44, sample variance 44 / 11 = 4,
# so the standard deviation is exactly 2 and a z-score of exactly 3 is 26.0 (or 14.0).
HISTORY = (24.0, 16.0, 22.0, 18.0, 21.0, 19.0, 21.0, 19.0, 20.0, 20.0, 20.0, 20.0)


def snapshot(**kpis) -> DeviceSnapshot:
    return DeviceSnapshot("dev-1", last_seen=NOW, **kpis)


def only(rule: Rule, **kpis):
    found = [o for o in observe_kpis(snapshot(**kpis), T) if o.rule is rule]
    return found[0] if found else None


@pytest.mark.parametrize(
    ("silent", "breached"),
    [
        (timedelta(minutes=15), False),  # exactly the limit: not "longer than"
        (timedelta(minutes=15, seconds=1), True),
        (timedelta(minutes=14, seconds=59), False),
    ],
)
def test_offline_after_longer_than_the_limit(silent, breached):
    observation = observe_offline(DeviceSnapshot("d", last_seen=NOW - silent), T, NOW)
    assert observation.rule is Rule.OFFLINE
    assert observation.breached is breached
    assert observation.value == pytest.approx(silent.total_seconds() / 60)
    assert (observation.threshold, observation.severity) == (15.0, "critical")


@pytest.mark.parametrize(
    ("rule", "field", "at", "below", "above"),
    [
        (Rule.LOW_UPTIME, "uptime_pct", 80.0, 79.999, 80.001),
        (Rule.WEAK_SIGNAL, "avg_rss", -85.0, -85.001, -84.999),
        (Rule.LOW_BATTERY, "battery_pct", 20.0, 19.999, 20.001),
    ],
)
def test_below_rules_breach_strictly_below_their_threshold(rule, field, at, below, above):
    assert only(rule, **{field: at}).breached is False
    assert only(rule, **{field: above}).breached is False
    observation = only(rule, **{field: below})
    assert observation.breached is True
    assert (observation.value, observation.threshold, observation.severity) == (below, at, "warning")


def test_rules_without_data_give_no_observation():
    assert observe_kpis(snapshot(), T) == []


def test_temperature_z_score_against_the_history():
    assert (statistics.fmean(HISTORY), statistics.stdev(HISTORY)) == (20.0, 2.0)
    for at_limit in (26.0, 14.0):
        observation = only(Rule.TEMPERATURE_ANOMALY, temperature=at_limit, temperature_history=HISTORY)
        assert observation.breached is False and abs(observation.value) == 3.0
    high = only(Rule.TEMPERATURE_ANOMALY, temperature=26.02, temperature_history=HISTORY)
    assert high.breached is True and high.value == pytest.approx(3.01)
    low = only(Rule.TEMPERATURE_ANOMALY, temperature=13.98, temperature_history=HISTORY)
    assert low.breached is True and low.value == pytest.approx(-3.01)  # a drop is as anomalous as a rise
    inside = only(Rule.TEMPERATURE_ANOMALY, temperature=25.98, temperature_history=HISTORY)
    assert inside.breached is False
    assert "20.0 ± 2.00 °C over the previous 12 hours" in high.detail


def test_temperature_needs_the_minimum_history():
    short = HISTORY[: T.temperature_min_history - 1]
    assert only(Rule.TEMPERATURE_ANOMALY, temperature=99.0, temperature_history=short) is None
    enough = HISTORY[: T.temperature_min_history]
    assert only(Rule.TEMPERATURE_ANOMALY, temperature=99.0, temperature_history=enough).breached is True
    assert only(Rule.TEMPERATURE_ANOMALY, temperature=None, temperature_history=HISTORY) is None


def test_flat_history_uses_the_minimum_spread():
    flat = (21.0,) * 12
    assert temperature_z(21.0, flat, 0.2) == 0.0
    assert temperature_z(21.5, flat, 0.2) == pytest.approx(2.5)  # not infinite
    assert only(Rule.TEMPERATURE_ANOMALY, temperature=21.61, temperature_history=flat).breached is True
    assert only(Rule.TEMPERATURE_ANOMALY, temperature=21.59, temperature_history=flat).breached is False


def test_kpi_horizon_is_the_aggregates_watermark_capped_at_the_last_boundary():
    lag = timedelta(minutes=15)
    assert kpi_horizon(NOW, None, lag) is None  # aggregate never ran
    assert kpi_horizon(NOW, NOW.replace(minute=5, second=0), lag) == NOW.replace(minute=5, second=0)
    assert kpi_horizon(NOW, NOW.replace(minute=0, second=0), lag) == NOW.replace(minute=0, second=0)  # lagging
    assert kpi_horizon(NOW, NOW + timedelta(hours=1), lag) == NOW.replace(minute=5, second=0)  # ahead: capped
    assert kpi_horizon(NOW, NOW - timedelta(minutes=30), lag) is None  # too stale to judge
