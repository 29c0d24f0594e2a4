"""What a simulation is asked for (`Options`) and what it produces (`Message`). Pure data, no I/O."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

# Message kinds. A reading is VALID (sent when measured), LATE (held back for minutes), OUT_OF_ORDER (held
# back past the device's next reading or two) or a DUPLICATE (the same bytes again); LOST_OFFLINE readings
# were measured while the device was offline and are never sent. MALFORMED and OVERSIZE messages come in
# addition to the device's readings and the ingest must reject them.
VALID, LATE, OUT_OF_ORDER, DUPLICATE = "valid", "late", "out_of_order", "duplicate"
LOST_OFFLINE, MALFORMED, OVERSIZE = "lost_offline", "malformed", "oversize"
KINDS = (VALID, LATE, OUT_OF_ORDER, DUPLICATE, MALFORMED, OVERSIZE, LOST_OFFLINE)
# Kinds whose reading the pipeline must store (once, whatever the duplicates).
STORED_KINDS = frozenset({VALID, LATE, OUT_OF_ORDER})

_OFFLINE_SPEC = re.compile(r"(?P<devices>\d+):(?P<minutes>\d+(?:\.\d+)?)(?:@(?P<at>\d+(?:\.\d+)?))?")


@dataclass(frozen=True)
class OfflineSchedule:
    """`devices` devices lose connectivity for `minutes`, from `at_minute` into the run (None: a seeded
    random start that keeps the whole span inside the run when it fits)."""

    devices: int
    minutes: float
    at_minute: float | None = None

    @classmethod
    def parse(cls, text: str) -> OfflineSchedule:
        """COUNT:MINUTES or COUNT:MINUTES@AT_MINUTE, e.g. `3:10` or `1:5@2`."""
        match = _OFFLINE_SPEC.fullmatch(text.strip())
        if not match:
            raise ValueError(f"offline schedule {text!r} is not COUNT:MINUTES[@AT_MINUTE]")
        at = match["at"]
        return cls(int(match["devices"]), float(match["minutes"]), None if at is None else float(at))


@dataclass(frozen=True)
class Options:
    """One simulation. Probabilities are per reading; delays are in simulated seconds."""

    start: datetime  # simulated time of the run's first instant (timezone-aware)
    devices: int = 10
    rate_per_minute: float = 6.0  # readings per device per minute
    duration_s: float = 60.0  # readings are measured in [start, start + duration)
    seed: int = 0
    prefix: str = "sim-"
    duplicates: float = 0.0
    late: float = 0.0
    late_delay_s: tuple[float, float] = (60.0, 600.0)
    out_of_order: float = 0.0
    malformed: float = 0.0
    oversize: float = 0.0
    clock_skew_s: float = 0.0  # each device's clock is off by a seeded amount within ±clock_skew_s
    offline: tuple[OfflineSchedule, ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone")
        if self.devices < 1 or self.rate_per_minute <= 0 or self.duration_s <= 0:
            raise ValueError("devices, rate and duration must be positive")
        for name in ("duplicates", "late", "out_of_order", "malformed", "oversize"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1]")
        if self.late + self.out_of_order > 1.0:
            raise ValueError("late + out_of_order cannot exceed 1 (a reading is held back at most once)")
        low, high = self.late_delay_s
        if not 0 < low <= high:
            raise ValueError("late_delay_s is (min, max) with 0 < min <= max")
        if self.clock_skew_s < 0:
            raise ValueError("clock_skew_s is a magnitude")
        if sum(schedule.devices for schedule in self.offline) > self.devices:
            raise ValueError("offline schedules name more devices than the fleet has")

    @property
    def interval_s(self) -> float:
        return 60.0 / self.rate_per_minute

    def device_ids(self) -> list[str]:
        width = max(4, len(str(self.devices)))
        return [f"{self.prefix}{number:0{width}d}" for number in range(1, self.devices + 1)]


@dataclass(frozen=True)
class OfflineSpan:
    """A device offline in [start_s, end_s) of simulated time (seconds since the run's start)."""

    device_id: str
    start_s: float
    end_s: float

    def covers(self, offset_s: float) -> bool:
        return self.start_s <= offset_s < self.end_s


@dataclass(frozen=True)
class Message:
    """One MQTT message of the run (LOST_OFFLINE ones are recorded, never sent).

    `send_s`: when to publish, in simulated seconds since the start; `measured_s`: when the device measured
    the reading (true time; the payload's `ts` adds the device's clock skew). `key` is the idempotency key
    the ingest stores, (device_id, ts as UTC ISO-8601, seq), for readings; None for malformed and oversize.
    """

    send_s: float
    measured_s: float
    device_id: str
    kind: str
    topic: str
    payload: bytes
    key: tuple[str, str, int] | None = None
    detail: str | None = None  # the malformed variant

    def as_record(self) -> dict:
        """The JSON-able line the report writes for this message."""
        return {
            "send_s": round(self.send_s, 3),
            "measured_s": round(self.measured_s, 3),
            "device_id": self.device_id,
            "kind": self.kind,
            "detail": self.detail,
            "topic": self.topic,
            "size": len(self.payload),
            "sha256": hashlib.sha256(self.payload).hexdigest(),
            "key": list(self.key) if self.key else None,
        }
