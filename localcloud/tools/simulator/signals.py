"""Realistic measurements of one device, from its own seeded random stream. Pure.

RSS wanders (a random walk kept inside the radio's range by reflection); the battery drains at the device's
own rate; temperature follows the UTC day (warmest mid-afternoon) plus sensor noise; relative humidity moves
against temperature.
"""

from __future__ import annotations

import math
import random
from datetime import datetime

RSS_RANGE_DBM = (-110.0, -50.0)
RSS_STEP_DBM = 1.5  # standard deviation of one step of the walk
FIRMWARES = ("1.4.2", "1.5.0", "2.0.1")
SECONDS_PER_DAY = 86_400
WARMEST_HOUR_UTC = 15


def _reflect(value: float, low: float, high: float) -> float:
    """Fold a value that stepped outside [low, high] back in, as a walk bouncing off the walls."""
    span = high - low
    folded = (value - low) % (2 * span)
    return low + (folded if folded <= span else 2 * span - folded)


class DeviceSignals:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.rss = rng.uniform(-95.0, -60.0)
        self.battery_start = rng.uniform(60.0, 100.0)
        self.drain_pct_per_hour = rng.uniform(0.1, 1.5)
        self.temperature_mean = rng.uniform(16.0, 26.0)
        self.temperature_amplitude = rng.uniform(2.0, 6.0)
        self.humidity_mean = rng.uniform(35.0, 65.0)
        self.firmware = rng.choice(FIRMWARES)

    def measure(self, at: datetime, elapsed_s: float) -> dict[str, float | str]:
        """The next reading's measurements at true time `at`, `elapsed_s` after the run started."""
        rng = self._rng
        self.rss = _reflect(self.rss + rng.gauss(0.0, RSS_STEP_DBM), *RSS_RANGE_DBM)
        battery = max(0.0, self.battery_start - self.drain_pct_per_hour * elapsed_s / 3600)
        seconds_of_day = at.hour * 3600 + at.minute * 60 + at.second
        phase = 2 * math.pi * (seconds_of_day / SECONDS_PER_DAY - WARMEST_HOUR_UTC / 24)
        daily = self.temperature_amplitude * math.cos(phase)
        temperature = self.temperature_mean + daily + rng.gauss(0.0, 0.3)
        humidity = min(100.0, max(0.0, self.humidity_mean - 1.5 * daily + rng.gauss(0.0, 1.0)))
        return {
            "rss": round(self.rss, 1),
            "battery": round(battery, 2),
            "temperature": round(temperature, 2),
            "humidity": round(humidity, 1),
            "firmware": self.firmware,
        }
