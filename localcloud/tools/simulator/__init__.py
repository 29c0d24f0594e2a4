"""The device simulator: a seeded, pure generator of a fleet's MQTT messages (`Simulation`) with realistic
signals and faults on demand, and a QoS 1 publisher that sends them over a real broker and reports what it sent.

    python -m localcloud.tools.simulator --devices 20 --rate 6 --duration 120 --seed 7 --duplicates 0.02
"""

from localcloud.tools.simulator.generator import Simulation
from localcloud.tools.simulator.model import Message, OfflineSchedule, OfflineSpan, Options
from localcloud.tools.simulator.publisher import publish_simulation
from localcloud.tools.simulator.report import Report

__all__ = ["Message", "OfflineSchedule", "OfflineSpan", "Options", "Report", "Simulation", "publish_simulation"]
