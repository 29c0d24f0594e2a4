"""Soak: the whole local cloud at 1,000 readings/s from 1,000 devices for BENCH_SOAK_SECONDS (600), started by
`localcloud up` in this run. Reports the memory of every local-cloud component at the start (after a warm-up that
also runs each scheduled function once, so every Lambda worker exists) and at the end (after every reading is
stored): the AWS endpoint, the runtime (with its Lambda worker processes), mosquitto, PostgreSQL (postmaster and
backends) and the log pumps; the rows stored against the readings the broker acknowledged; the largest backlog
(acknowledged, not yet stored) seen; the state folder's size.

Memory is the proportional set size (PSS, /proc/<pid>/smaps_rollup): a page shared by several processes (a
forked worker's pages) counts once in a component's sum, not once per process; where it cannot be read, the
resident set size. The goal, a growth under 50 MB per component over the run (memory that does not follow the
volume), is checked on PSS without shared-memory segments: PostgreSQL's shared buffers are such a segment, a
cache of fixed size (reported on its own) that fills as the tables grow. Processes are found by the pids `up`
recorded (and their children); the log pumps by their command line, which names this run's private folders.
Nothing is signalled but through `localcloud down`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from benchmarks import Figure, processes
from benchmarks.bench_pipeline import DEVICES, payload
from localcloud.tools.simulator.publisher import MqttPublisher
from tests.fixtures.local_cloud import LocalCloud

SECONDS = int(os.environ.get("BENCH_SOAK_SECONDS", "600"))
RATE = 1_000  # readings/s, from the issue
GROWTH_GOAL_MB = 50
SAMPLE_EVERY_S = 30
DRAIN_TIMEOUT_S = 300


Memory = tuple[int, int]  # (PSS bytes, of which in shared-memory segments)


def _memory(pid: int) -> Memory:
    """PSS of the process and its shared-memory part; else its RSS (smaps_rollup unreadable); else 0 (gone)."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
        return int(fields["Pss"].split()[0]) * 1024, int(fields["Pss_Shmem"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024, 0
    except OSError:
        pass
    return 0, 0


def summed_memory(pids: list[int]) -> Memory:
    """Memory of the processes `pids`, summed."""
    found = [_memory(pid) for pid in pids]
    return sum(pss for pss, _ in found), sum(shared for _, shared in found)


def log_pumps(folders: list[Path]) -> list[int]:
    """The log pumps writing into `folders` (this run's state folder and cluster folder)."""
    names = [str(folder).encode() for folder in folders]
    pumps = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if any(part.endswith(b"log_pump.py") for part in cmdline) and any(
            name in part for part in cmdline for name in names
        ):
            pumps.append(int(entry.name))
    return pumps


def memory(cloud: LocalCloud) -> dict[str, Memory]:
    """Memory per local-cloud component (each with its child processes)."""
    found = {name: summed_memory(pids) for name, pids in processes.components(cloud).items()}
    cluster = Path(json.loads((cloud.state_dir / "postgres.json").read_text())["root"])
    found["log pumps"] = summed_memory(log_pumps([cloud.state_dir, cluster]))
    return found


def count(database_url: str, prefix: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM telemetry WHERE starts_with(device_id, %s)", (prefix,)).fetchone()[0]


def publish(cloud: LocalCloud, prefix: str, readings: int, rate: float | None, samples: list) -> int:
    """Readings round-robin over DEVICES ids at `rate`/s (None: unpaced), QoS 1; the number acknowledged.
    Every SAMPLE_EVERY_S: (s, published, stored, memory per component) into `samples`."""
    settings = cloud.settings
    publisher = MqttPublisher(settings["MQTT_HOST"], int(settings["MQTT_PORT"]), window=1_000)
    publisher.connect()
    started = time.monotonic()
    next_sample = started + SAMPLE_EVERY_S
    try:
        for i in range(readings):
            if rate is not None and (ahead := started + i / rate - time.monotonic()) > 0:
                publisher.idle(ahead)
            publisher.publish(f"devices/{prefix}{i % DEVICES:04d}/telemetry", payload(i // DEVICES))
            if time.monotonic() >= next_sample:
                stored = count(settings["DATABASE_URL"], prefix)
                samples.append((round(time.monotonic() - started), i + 1, stored, megabytes(memory(cloud))))
                next_sample += SAMPLE_EVERY_S
        assert publisher.wait_all_acknowledged(120), "the broker did not acknowledge every reading"
    finally:
        publisher.close()
    return publisher.published


def drain(database_url: str, prefix: str, expected: int) -> int:
    """Wait until every reading is stored, or no progress for DRAIN_TIMEOUT_S; the rows stored."""
    last, last_change = -1, time.monotonic()
    while (stored := count(database_url, prefix)) < expected and time.monotonic() - last_change < DRAIN_TIMEOUT_S:
        if stored != last:
            last, last_change = stored, time.monotonic()
        time.sleep(2)
    return stored


def megabytes(values: dict[str, Memory]) -> dict[str, float]:
    """PSS per component, in MB."""
    return {name: round(pss / 1e6, 1) for name, (pss, _) in values.items()}


def run() -> list[Figure]:
    state_dir = Path(tempfile.mkdtemp(prefix="iotkpi-bench-soak-"))
    cloud = LocalCloud(state_dir / "state")
    try:
        cloud.check("up")
        database_url = cloud.settings["DATABASE_URL"]
        warm = f"warm-{uuid.uuid4().hex[:4]}-"
        publish(cloud, warm, 10_000, rate=None, samples=[])  # modules loaded, workers and connections up
        drain(database_url, warm, 10_000)
        for schedule in ("AGGREGATE_SCHEDULE_NAME", "ALERTS_SCHEDULE_NAME", "ARCHIVE_SCHEDULE_NAME"):
            cloud.check("fire", cloud.settings[schedule], timeout=300)  # their workers exist before the start
        at_start = memory(cloud)

        prefix, samples = f"soak-{uuid.uuid4().hex[:4]}-", []
        readings = RATE * SECONDS
        started = time.monotonic()
        acknowledged = publish(cloud, prefix, readings, rate=RATE, samples=samples)
        published_s = time.monotonic() - started
        stored = drain(database_url, prefix, acknowledged)
        at_end = memory(cloud)
        usage = cloud.status()["state"]
        print(f"soak samples (s, published, stored, MB per component): {samples}")
        print(f"memory MB at start {megabytes(at_start)}, at end {megabytes(at_end)}")
        print(f"state folder: {usage}")
    finally:
        cloud.teardown()
        shutil.rmtree(state_dir, ignore_errors=True)

    volume = (
        f"{acknowledged:,} readings (~110 B) acknowledged from {DEVICES:,} devices at {RATE:,}/s for {SECONDS} s "
        f"(published in {published_s:.0f} s); {os.cpu_count()} CPUs, every server on this machine"
    )
    figures = []
    for name, (start, start_shared) in at_start.items():
        end, end_shared = at_end[name]
        growth = ((end - end_shared) - (start - start_shared)) / 1e6
        what = f"soak: memory (PSS) of {name}"
        figures.append(Figure(f"{what} at start", "MB", round(start / 1e6, 1), volume))
        figures.append(Figure(f"{what} at end", "MB", round(end / 1e6, 1), volume))
        figures.append(
            Figure(
                f"{what}, growth over the run without shared memory",
                "MB",
                round(growth, 1),
                volume,
                goal=f"< {GROWTH_GOAL_MB} MB",
                met=growth < GROWTH_GOAL_MB,
            )
        )
    figures.append(
        Figure("soak: PostgreSQL shared memory (buffers) at end", "MB", round(at_end["postgres"][1] / 1e6, 1), volume)
    )
    backlog = max((published - stored_then for _, published, stored_then, _ in samples), default=0)
    figures.append(Figure("soak: largest backlog, acknowledged but not yet stored", "readings", backlog, volume))
    lost = acknowledged - stored
    figures.append(Figure("soak: readings lost (acknowledged, not stored)", "readings", lost, volume, "0", lost == 0))
    figures.append(Figure("soak: state folder at the end", "MB", round(usage["bytes"] / 1e6, 1), volume))
    figures.append(
        Figure("soak: Kinesis store at the end", "MB", round(usage["parts"].get("kinesis.db", 0) / 1e6, 1), volume)
    )
    return figures
