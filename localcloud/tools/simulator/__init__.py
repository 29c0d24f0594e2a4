"""The device simulator: a seeded, pure generator of a fleet's MQTT messages (`Simulation`) with realistic
signals and faults on demand, and a QoS 1 publisher that sends them over a real broker and reports what it sent.

    python -m localcloud.simulator --devices 20 --rate 6 --duration 120 --seed 7 --duplicates 0.02
"""

from localcloud.simulator.generator import Simulation
from localcloud.simulator.model import Message, OfflineSchedule, OfflineSpan, Options
from localcloud.simulator.publisher import publish_simulation
from localcloud.simulator.report import Report

__all__ = ["Message", "OfflineSchedule", "OfflineSpan", "Options", "Report", "Simulation", "publish_simulation"]
