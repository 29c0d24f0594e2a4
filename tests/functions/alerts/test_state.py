"""Alert state machine: opens once, stays open silently, resolves once the condition has been clear long
enough; flapping is damped. Time is passed in, runs are simulated every five minutes."""

from datetime import UTC, datetime, timedelta

from alerts.rules import DeviceSnapshot, Rule
from alerts.settings import AlertSettings, Damping
from alerts.state import CLEAR_SINCE_FOREVER, Condition, Event, evaluate_device

T0 = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
RUN = timedelta(minutes=5)
DEFAULT = AlertSettings()  # open at once, resolve after 10 clear minutes


class Device:
    """One device's stored alert state across runs, updated the way the service applies decisions."""

    def __init__(self, settings: AlertSettings = DEFAULT) -> None:
        self.settings = settings
        self.conditions: dict[Rule, Condition] = {}
        self.open: set[Rule] = set()
        self.events: list[tuple[int, Rule, Event]] = []  # (minutes after T0, rule, event)

    def run(self, at: int, **snapshot) -> list[Rule]:
        """Evaluate at T0 + `at` minutes; return the rules that had an observation."""
        now = T0 + timedelta(minutes=at)
        snapshot.setdefault("last_seen", now)
        decisions = evaluate_device(DeviceSnapshot("d", **snapshot), self.conditions, self.open, self.settings, now)
        for decision in decisions:
            rule = decision.observation.rule
            if decision.condition is not None:
                self.conditions[rule] = decision.condition
            if decision.event is Event.OPENED:
                self.open.add(rule)
            elif decision.event is Event.RESOLVED:
                self.open.discard(rule)
            if decision.event is not None:
                self.events.append((at, rule, decision.event))
        return [d.observation.rule for d in decisions]


def test_open_once_stay_open_then_resolve_after_ten_clear_minutes():
    device = Device()
    for at in range(0, 30, 5):  # battery low for half an hour
        device.run(at, battery_pct=10.0)
    assert device.events == [(0, Rule.LOW_BATTERY, Event.OPENED)]
    device.run(30, battery_pct=50.0)  # clear since 30
    device.run(35, battery_pct=50.0)
    assert Rule.LOW_BATTERY in device.open
    device.run(40, battery_pct=50.0)  # clear for 10 minutes
    device.run(45, battery_pct=50.0)
    assert device.events == [(0, Rule.LOW_BATTERY, Event.OPENED), (40, Rule.LOW_BATTERY, Event.RESOLVED)]
    assert device.open == set()


def test_flapping_keeps_one_open_alert():
    device = Device()
    # Alternating every run: never clear for 10 minutes, so the alert neither resolves nor re-opens.
    for at in range(0, 60, 5):
        device.run(at, avg_rss=-90.0 if at % 10 == 0 else -80.0)
    assert device.events == [(0, Rule.WEAK_SIGNAL, Event.OPENED)]
    device.run(60, avg_rss=-80.0)  # clear since the run at 55
    assert device.open == {Rule.WEAK_SIGNAL}
    device.run(65, avg_rss=-80.0)
    device.run(70, avg_rss=-80.0)
    assert device.events[1:] == [(65, Rule.WEAK_SIGNAL, Event.RESOLVED)]


def test_open_after_requires_the_breach_to_hold():
    device = Device(AlertSettings(damping=Damping(open_after=timedelta(minutes=10))))
    device.run(0, battery_pct=10.0)
    device.run(5, battery_pct=10.0)
    device.run(10, battery_pct=50.0)  # a blip: the breach streak restarts
    device.run(15, battery_pct=10.0)
    device.run(20, battery_pct=10.0)
    assert device.events == []
    device.run(25, battery_pct=10.0)
    assert device.events == [(25, Rule.LOW_BATTERY, Event.OPENED)]


def test_no_data_leaves_the_state_alone():
    device = Device()
    device.run(0, battery_pct=10.0)
    for at in range(5, 60, 5):  # battery not reported: no observation, no resolution
        assert Rule.LOW_BATTERY not in device.run(at)
    assert device.open == {Rule.LOW_BATTERY}
    assert device.conditions[Rule.LOW_BATTERY] == Condition(breached=True, since=T0)


def test_healthy_devices_store_nothing():
    device = Device()
    for at in range(0, 30, 5):
        device.run(at, battery_pct=90.0, avg_rss=-60.0, uptime_pct=100.0)
    assert device.conditions == {} and device.events == []


def test_offline_supersedes_the_kpi_rules():
    device = Device()
    silent_since = T0
    rules = device.run(16, last_seen=silent_since, battery_pct=5.0, uptime_pct=10.0, avg_rss=-99.0)
    assert rules == [Rule.OFFLINE]
    assert device.events == [(16, Rule.OFFLINE, Event.OPENED)]
    for at in range(21, 60, 5):
        device.run(at, last_seen=silent_since, battery_pct=5.0, uptime_pct=0.0)
    assert device.events == [(16, Rule.OFFLINE, Event.OPENED)]  # once, and nothing else while offline


def test_low_uptime_waits_until_the_outage_has_left_the_rolling_hour():
    device = Device()
    device.run(16, last_seen=T0)  # offline opens
    device.run(30)  # reporting again: offline clear since 30
    assert Rule.LOW_UPTIME not in device.run(40, uptime_pct=50.0)  # the outage is in the rolling hour
    assert Rule.LOW_UPTIME not in device.run(85, uptime_pct=50.0)
    assert device.events == [(16, Rule.OFFLINE, Event.OPENED), (40, Rule.OFFLINE, Event.RESOLVED)]
    assert Rule.LOW_UPTIME in device.run(90, uptime_pct=50.0)  # back for an hour: an intermittent device
    assert device.events[-1] == (90, Rule.LOW_UPTIME, Event.OPENED)


def test_a_device_never_offline_gets_uptime_evaluated_at_once():
    device = Device()
    assert device.run(0, uptime_pct=79.0) == [Rule.OFFLINE, Rule.LOW_UPTIME]
    assert device.events == [(0, Rule.LOW_UPTIME, Event.OPENED)]
    assert CLEAR_SINCE_FOREVER.breached is False
