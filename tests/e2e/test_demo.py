"""`localcloud demo`, the first-run experience: within a minute of `up`, KPIs and an offline alert, and the
simulator it leaves running is a recorded process that `down` stops."""

from __future__ import annotations

import pytest

from tests.fixtures.local_cloud import LocalCloud

pytestmark = pytest.mark.e2e


def test_demo_shows_kpis_and_an_offline_alert(local_cloud: LocalCloud):
    output = local_cloud.check("demo", "--devices", "6", timeout=300)

    assert "simulator started" in output
    assert "SNS notification: [CRITICAL] demo-0001: offline for" in output
    table = output[output.index("Devices:") :].splitlines()
    devices = [line.split()[0] for line in table if line.startswith("demo-")]
    assert devices == [f"demo-{n:04d}" for n in range(1, 7)]
    assert "simulator" in local_cloud.recorded_pids()
    again = local_cloud.check("demo", "--devices", "6", timeout=300)  # a second run reuses the simulator
    assert "simulator already running" in again
