"""The whole local pipeline, MQTT in to PostgreSQL rows: mosquitto, the IoT rules engine, moto Kinesis (patched),
the event source mapping poller, the ingest Lambda, PostgreSQL, all started by `localcloud up` in this run.

Latency: readings from 1,000 device ids, paced at a fixed rate through one QoS 1 MQTT connection; per reading,
the wall-clock time of the publish call to the row's `telemetry.ingested_at` (same machine clock; ingested_at is
the storing transaction's start, so it is a few ms early for a large batch). Loss: readings never stored
within 60 s after the last publish. When p99 misses the goal at 1,000 msg/s and the pipeline sustains less than
1,000/0.7 readings/s, the same is measured at 70% of the throughput figure. Then again at 1,000 msg/s on a second
local cloud whose ingest mapping has no batching window (0 s, AWS's default for streams; the stack's is 1 s, in
which a shard that receives 500 readings a second gathers a batch): a reading's wait in the window is then gone,
and what is left is what the emulation and the functions add.

Throughput: N readings published unpaced; records/s from the first publish to the last row's ingested_at, the
readings lost, and those stored before an earlier reading of their device (per-device order).
Beside it, the CPU time each component used per reading during that run (from /proc: the AWS endpoint, the
runtime with its Lambda workers, the rules engine's process, mosquitto, PostgreSQL, and this process, which
plays the devices), and the ceiling those costs allow on this machine's CPUs if every one of them were busy
all the time: the profile that says what a throughput goal needs. And how the machine's CPU time went during the
run: busy, idle, and stolen by the hypervisor (a virtual machine's CPU time given to others, which no component
could use).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml

from benchmarks import Figure, cpu_time_shares, machine_cpu, processes
from localcloud.config import STACK_FILE
from localcloud.tools.simulator.publisher import MqttPublisher
from tests.fixtures.local_cloud import LocalCloud

DEVICES = 1_000
TARGET_RATE = 1_000  # msg/s, from the issue
LATENCY_SECONDS = 30
FALLBACK_SECONDS = 20
# 30 s at the goal's rate: the last readings' fixed wait (the mapping's 1 s batching window) is a few % of the run
THROUGHPUT_READINGS = 150_000
P99_GOAL_S = 1.0
THROUGHPUT_GOAL = 5_000  # readings/s: 300,000 devices reporting once a minute
DRAIN_TIMEOUT_S = 60
MACHINE = f"{os.cpu_count()} CPUs, every server on this machine"


def payload(seq: int) -> bytes:
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    return json.dumps({"ts": ts, "seq": seq, "rss": -67, "battery": 88.5, "temperature": 21.25}).encode()


class Run:
    def __init__(self, cloud: LocalCloud) -> None:
        settings = cloud.settings
        self.host, self.port, self.db = settings["MQTT_HOST"], int(settings["MQTT_PORT"]), settings["DATABASE_URL"]
        self.cloud = cloud

    def backlog(self) -> tuple[int, int]:
        """Where readings wait: (records the rules engine has not put into Kinesis yet, Kinesis records the
        ingest mapping has not processed yet)."""
        status = processes.runtime_status(self.cloud)
        behind = sum(m["records_behind"] or 0 for m in status["event_source_mappings"] if "ingest" in m["function"])
        return status["rules_engine"]["pending_records"], behind

    def count(self, prefix: str) -> int:
        with psycopg.connect(self.db) as conn:
            return conn.execute(
                "SELECT count(*) FROM telemetry WHERE starts_with(device_id, %s)", (prefix,)
            ).fetchone()[0]

    def ingested(self, prefix: str) -> dict[tuple[str, int], float]:
        with psycopg.connect(self.db) as conn:
            found = conn.execute(
                "SELECT device_id, seq, extract(epoch FROM ingested_at) FROM telemetry WHERE starts_with(device_id, %s)",
                (prefix,),
            ).fetchall()
        return {(device_id, seq): float(at) for device_id, seq, at in found}

    def publish(self, prefix: str, readings: int, rate: float | None) -> tuple[dict[tuple[str, int], float], list]:
        """Publish `readings` round-robin over DEVICES ids, paced at `rate`/s (None: unpaced). Returns each
        reading's publish time and (seconds since start, published, stored) samples taken every second."""
        publisher = MqttPublisher(self.host, self.port, window=1_000)
        publisher.connect()
        sent: dict[tuple[str, int], float] = {}
        samples = []
        started = time.monotonic()
        next_sample = started + 1
        try:
            for i in range(readings):
                if rate is not None:
                    ahead = started + i / rate - time.monotonic()
                    if ahead > 0:
                        publisher.idle(ahead)
                device, seq = f"{prefix}{i % DEVICES:04d}", i // DEVICES
                sent[device, seq] = time.time()
                publisher.publish(f"devices/{device}/telemetry", payload(seq))
                if time.monotonic() >= next_sample:
                    samples.append((round(time.monotonic() - started, 1), i + 1, self.count(prefix), *self.backlog()))
                    next_sample += 1
            assert publisher.wait_all_acknowledged(60), "the broker did not acknowledge every reading"
        finally:
            publisher.close()
        return sent, samples

    def drain(self, prefix: str, expected: int) -> list[tuple]:
        """Wait until every reading is stored, or no progress for DRAIN_TIMEOUT_S; (s, stored, backlog...)
        samples taken meanwhile."""
        started, samples = time.monotonic(), []
        last, last_change = -1, time.monotonic()
        while (stored := self.count(prefix)) < expected and time.monotonic() - last_change < DRAIN_TIMEOUT_S:
            if stored != last:
                last, last_change = stored, time.monotonic()
            samples.append((round(time.monotonic() - started, 1), stored, *self.backlog()))
            time.sleep(1)
        return samples


def stored_out_of_order(stored: dict[tuple[str, int], float]) -> int:
    """Readings whose row was stored before the row of an earlier reading (a lower seq) of the same device: each
    device's readings travel one shard, so the pipeline must keep their order. Rows of one batch share their
    transaction's ingested_at."""
    by_device: dict[str, list[tuple[int, float]]] = {}
    for (device, seq), at in stored.items():
        by_device.setdefault(device, []).append((seq, at))
    disordered = 0
    for readings in by_device.values():
        latest = float("-inf")
        for _, at in sorted(readings):
            disordered += at < latest
            latest = max(latest, at)
    return disordered


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def latency_figures(run: Run, rate: float, seconds: int, setup: str = "") -> list[Figure]:
    """`setup`: how the stack differs from infrastructure/stack.yaml, if it does (it names the figures)."""
    prefix = f"lat{int(rate)}-{uuid.uuid4().hex[:4]}-"
    readings = int(rate * seconds)
    sent, samples = run.publish(prefix, readings, rate)
    published_s = samples[-1][0] if samples else seconds
    backlog = samples[-1][1] - samples[-1][2] if samples else 0
    drained = run.drain(prefix, readings)
    stored = run.ingested(prefix)
    latencies = [stored[key] - at for key, at in sent.items() if key in stored]
    if not latencies:
        raise RuntimeError(f"none of {readings:,} readings stored; samples while publishing {samples}, then {drained}")
    lost = readings - len(latencies)
    p99 = percentile(latencies, 99)
    what = f"MQTT->DB latency at {rate:,.0f} msg/s from {DEVICES:,} devices{setup}"
    volume = (
        f"{readings:,} readings over {published_s:.0f} s of publishing (~110 B), one QoS 1 connection; "
        f"backlog not yet stored when publishing ended: {backlog:,}; {MACHINE}"
    )
    print(
        f"{what}: samples (s, published, stored, rules engine pending, ESM behind): {samples[:: max(1, len(samples) // 10)]}"
    )
    return [
        Figure(f"{what}, p50", "s", round(percentile(latencies, 50), 3), volume),
        Figure(f"{what}, p99", "s", round(p99, 3), volume, goal=f"<= {P99_GOAL_S} s", met=p99 <= P99_GOAL_S),
        Figure(f"{what}, max", "s", round(max(latencies), 3), volume),
        Figure(f"{what}, readings lost", "readings", lost, volume, goal="0", met=lost == 0),
    ]


def throughput_figures(run: Run, cloud: LocalCloud) -> tuple[list[Figure], float]:
    prefix = f"tput-{uuid.uuid4().hex[:4]}-"
    cpu_before, machine_before = processes.component_cpu(cloud), machine_cpu()
    first = time.time()
    _, samples = run.publish(prefix, THROUGHPUT_READINGS, rate=None)
    published = time.time() - first
    samples += run.drain(prefix, THROUGHPUT_READINGS)
    cpu_after, machine_after = processes.component_cpu(cloud), machine_cpu()
    print(f"throughput: samples (s, [published,] stored, rules engine pending, ESM behind): {samples[::3]}")
    stored = run.ingested(prefix)
    elapsed = max(stored.values()) - first
    rate = len(stored) / elapsed
    volume = (
        f"{THROUGHPUT_READINGS:,} readings (~110 B) from {DEVICES:,} devices, published unpaced in {published:.1f} s; "
        f"{len(stored):,} stored in {elapsed:.1f} s; {MACHINE}"
    )
    goal = f">= {THROUGHPUT_GOAL:,}"
    what = "whole local pipeline, MQTT publish to row stored"
    lost, disordered = THROUGHPUT_READINGS - len(stored), stored_out_of_order(stored)
    figures = [
        Figure(f"{what}, sustained", "records/s", round(rate), volume, goal, rate >= THROUGHPUT_GOAL),
        Figure(f"{what}, readings lost", "readings", lost, volume, "0", lost == 0),
        Figure(f"{what}, readings stored before an earlier one of their device", "readings", disordered, volume,
               "0", disordered == 0),
    ]  # fmt: skip
    per_reading = {name: (cpu_after[name] - cpu_before[name]) / len(stored) * 1e6 for name in cpu_before}
    for name, micros in sorted(per_reading.items(), key=lambda item: -item[1]):
        figures.append(Figure(f"{what}: CPU per reading, {name}", "us", round(micros), volume))
    total = sum(per_reading.values())
    ceiling = (os.cpu_count() or 1) / total * 1e6
    figures += [
        Figure(f"{what}: CPU per reading, all components", "us", round(total), volume),
        Figure(f"{what}: ceiling at that cost, every CPU busy", "records/s", round(ceiling), volume, goal,
               ceiling >= THROUGHPUT_GOAL),
    ]  # fmt: skip
    for kind, share in (cpu_time_shares(machine_before, machine_after) or {}).items():
        figures.append(Figure(f"{what}: the machine's CPU time {kind} during the run", "%", round(share, 1), volume))
    return figures, rate


def started(cloud: LocalCloud) -> Run:
    """`cloud` up, its functions imported, connections open and partitions created."""
    cloud.check("up")
    pipeline = Run(cloud)
    warm = f"warm-{uuid.uuid4().hex[:4]}-"
    pipeline.publish(warm, 2_000, rate=None)
    pipeline.drain(warm, 2_000)
    return pipeline


def stack_without_batching_window(path: Path) -> tuple[Path, int]:
    """A copy of infrastructure/stack.yaml, written to `path`, whose ingest mapping has no batching window; and the
    stack's own window, in seconds."""
    stack = yaml.safe_load(STACK_FILE.read_text())
    trigger = stack["functions"]["ingest"]["kinesis_trigger"]
    window_s, trigger["maximum_batching_window_s"] = trigger["maximum_batching_window_s"], 0
    path.write_text(yaml.safe_dump(stack, sort_keys=False))
    return path, window_s


def run() -> list[Figure]:
    state_dir = Path(tempfile.mkdtemp(prefix="iotkpi-bench-pipeline-"))
    try:
        cloud = LocalCloud(state_dir / "state")
        try:
            pipeline = started(cloud)
            figures, sustained = throughput_figures(pipeline, cloud)
            latency = latency_figures(pipeline, TARGET_RATE, LATENCY_SECONDS)
            figures += latency
            fallback_rate = round(0.7 * sustained, -1)
            if not (latency[1].met and latency[3].met) and fallback_rate < TARGET_RATE:
                figures += latency_figures(pipeline, fallback_rate, FALLBACK_SECONDS)
        finally:
            cloud.teardown()
        stack_file, window_s = stack_without_batching_window(state_dir / "stack.yaml")
        unbatched = LocalCloud(state_dir / "state-window-0", stack_file)
        try:
            setup = f", ingest batching window 0 s (the stack's: {window_s} s)"
            figures += latency_figures(started(unbatched), TARGET_RATE, FALLBACK_SECONDS, setup)
        finally:
            unbatched.teardown()
        return figures
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
