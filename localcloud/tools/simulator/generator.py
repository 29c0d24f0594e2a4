"""The simulation itself: options in, the run's messages out in send order. Pure and deterministic.

Every device has its own random streams, derived from the seed and its number (not its id: another prefix
gives the same run under other names): one for its signals, one for the behaviour draws (a fixed number per
reading, so turning one behaviour on does not move the others), and one for the details of faults (delays,
variants). The same options and seed give the same messages, bytes included. Simulated time only: `send_s`/`measured_s` are seconds since `options.start`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from localcloud.tools.simulator import payloads
from localcloud.tools.simulator.model import (
    DUPLICATE,
    LATE,
    LOST_OFFLINE,
    MALFORMED,
    OUT_OF_ORDER,
    OVERSIZE,
    VALID,
    Message,
    OfflineSpan,
    Options,
)
from localcloud.tools.simulator.signals import DeviceSignals

DUPLICATE_DELAY_S = (0.05, 5.0)  # a device re-sends when it missed the acknowledgement
OUT_OF_ORDER_DELAY_INTERVALS = (1.2, 2.5)  # held back past the next reading or two


def topic(device_id: str) -> str:
    return f"devices/{device_id}/telemetry"


@dataclass(frozen=True)
class DeviceProfile:
    device_id: str
    number: int  # 1, 2, ...: what its random streams derive from
    phase_s: float  # offset of the first reading within the first interval
    clock_skew_ms: int
    ts_format: str  # payloads.ISO or payloads.EPOCH_MS


def _rng(options: Options, owner: str, stream: str) -> random.Random:
    # String seeds hash with SHA-512: stable across processes and Python runs. Simulation, not security.
    return random.Random(f"{options.seed}/{owner}/{stream}")  # noqa: S311


class Simulation:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.devices = [self._profile(number, device_id) for number, device_id in enumerate(options.device_ids(), 1)]
        self.offline_spans = self._offline_spans()

    def _profile(self, number: int, device_id: str) -> DeviceProfile:
        rng = _rng(self.options, f"device {number}", "profile")
        skew = self.options.clock_skew_s
        return DeviceProfile(
            device_id=device_id,
            number=number,
            phase_s=rng.uniform(0.0, self.options.interval_s),
            clock_skew_ms=round(rng.uniform(-skew, skew) * 1000),
            ts_format=rng.choice((payloads.ISO, payloads.EPOCH_MS)),
        )

    def _offline_spans(self) -> list[OfflineSpan]:
        """Each schedule picks its own devices (no device in two schedules) and, unless fixed, a start."""
        rng = _rng(self.options, "fleet", "offline")
        candidates = [device.device_id for device in self.devices]
        spans = []
        for schedule in self.options.offline:
            chosen = rng.sample(candidates, schedule.devices)
            candidates = [device_id for device_id in candidates if device_id not in chosen]
            length = schedule.minutes * 60
            for device_id in chosen:
                if schedule.at_minute is not None:
                    start = schedule.at_minute * 60
                else:
                    start = rng.uniform(0.0, max(0.0, self.options.duration_s - length))
                spans.append(OfflineSpan(device_id, start, start + length))
        return spans

    def messages(self) -> Iterator[Message]:
        """Every message of the run in send order (ties keep the order they were made in)."""
        options = self.options
        offline: dict[str, list[OfflineSpan]] = {}
        for span in self.offline_spans:
            offline.setdefault(span.device_id, []).append(span)
        pending: list[tuple[float, int, int, Message | None]] = []  # (send_s, order, device index, message)
        order = 0
        for index, device in enumerate(self.devices):
            if device.phase_s < options.duration_s:
                heapq.heappush(pending, (device.phase_s, order, index, None))
                order += 1
        streams = [_DeviceStreams(options, device) for device in self.devices]
        while pending:
            at_s, _, index, message = heapq.heappop(pending)
            if message is not None:
                yield message
                continue
            device, streams_of_device = self.devices[index], streams[index]
            spans = offline.get(device.device_id, ())
            for produced in streams_of_device.tick(at_s, any(span.covers(at_s) for span in spans)):
                heapq.heappush(pending, (produced.send_s, order, index, produced))
                order += 1
            next_s = at_s + options.interval_s
            if next_s < options.duration_s:
                heapq.heappush(pending, (next_s, order, index, None))
                order += 1


class _DeviceStreams:
    """One device's state between readings: its counter, signals and random streams."""

    def __init__(self, options: Options, device: DeviceProfile) -> None:
        self.options = options
        self.device = device
        self.topic = topic(device.device_id)
        self.seq = 0
        owner = f"device {device.number}"
        self.signals = DeviceSignals(_rng(options, owner, "signals"))
        self.behaviour = _rng(options, owner, "behaviour")
        self.faults = _rng(options, owner, "faults")

    def tick(self, at_s: float, offline: bool) -> list[Message]:
        """The reading measured `at_s` seconds into the run, and whatever the behaviours add to it."""
        options, device = self.options, self.device
        self.seq += 1
        true_time = options.start + timedelta(seconds=at_s)
        measurements = self.signals.measure(true_time, at_s)
        # Always the same four draws, whichever behaviours are on.
        held, duplicate, spoiled, padded = (self.behaviour.random() for _ in range(4))
        ts = _device_clock(true_time, device.clock_skew_ms)
        document = payloads.reading(ts, device.ts_format, self.seq, measurements)
        raw = payloads.encode(document)
        key = (device.device_id, ts.isoformat(timespec="milliseconds"), self.seq)
        if offline:
            return [Message(at_s, at_s, device.device_id, LOST_OFFLINE, self.topic, raw, key)]
        kind, send_s = VALID, at_s
        if held < options.late:
            kind, send_s = LATE, at_s + self.faults.uniform(*options.late_delay_s)
        elif held < options.late + options.out_of_order:
            delay = self.faults.uniform(*OUT_OF_ORDER_DELAY_INTERVALS) * options.interval_s
            kind, send_s = OUT_OF_ORDER, at_s + delay
        produced = [Message(send_s, at_s, device.device_id, kind, self.topic, raw, key)]
        if duplicate < options.duplicates:
            again = send_s + self.faults.uniform(*DUPLICATE_DELAY_S)
            produced.append(Message(again, at_s, device.device_id, DUPLICATE, self.topic, raw, key))
        if spoiled < options.malformed:
            variant, bad = payloads.malformed(document, self.faults)
            produced.append(Message(at_s, at_s, device.device_id, MALFORMED, self.topic, bad, detail=variant))
        if padded < options.oversize:
            big = payloads.oversize(document, self.faults)
            produced.append(Message(at_s, at_s, device.device_id, OVERSIZE, self.topic, big))
        return produced


def _device_clock(true_time: datetime, skew_ms: int) -> datetime:
    """The device's idea of the time, at millisecond precision (what it writes in `ts`)."""
    ts = true_time + timedelta(milliseconds=skew_ms)
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)
