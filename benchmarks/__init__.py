"""Benchmarks: `make bench` runs every `benchmarks/bench_*.py` module's `run()`.

Each `run()` returns a list of `Figure`s; the harness prints one table and writes
`benchmarks/results/<module>.json` plus `benchmarks/results/latest.json` (all figures, with the machine).
Figures that compare two things are measured in the same run (these machines are noisy).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from localcloud.servers.postgres import PostgresCluster, temporary_cluster

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Figure:
    benchmark: str  # what was measured, e.g. "moto PutRecords, shard pre-filled with 50k records"
    metric: str  # e.g. "records/s"
    value: float
    volume: str  # the data volume it was measured on, e.g. "20,000 records x 100 B"
    goal: str = ""  # the goal from the issue, if any, e.g. ">= 0.5x raw COPY"
    met: bool | None = None  # whether the goal was met in this run (None when there is no goal)

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def private_postgres(name: str) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of the benchmark's own on a free port, removed afterwards."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    with temporary_cluster(f"iotkpi-bench-{name}-") as cluster:
        yield cluster


def machine_cpu() -> dict[str, float] | None:
    """CPU seconds of the whole machine so far, summed over its CPUs (/proc/stat's first line): busy (user, nice,
    system, irq, softirq), idle (with iowait) and stolen (a virtual machine's CPU time the hypervisor gave to
    others: time the machine could not use). None where there is no /proc/stat (not Linux)."""
    try:
        first_line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return None
    fields = [int(value) / CLOCK_TICKS for value in first_line.split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    return {"busy": user + nice + system + irq + softirq, "idle": idle + iowait, "stolen": steal}


def cpu_time_shares(before: dict[str, float] | None, after: dict[str, float] | None) -> dict[str, float] | None:
    """How the machine's CPU time went between two `machine_cpu()` readings, in % by kind; None without them."""
    if before is None or after is None:
        return None
    spent = {kind: after[kind] - before[kind] for kind in after}
    total = sum(spent.values())
    return {kind: seconds / total * 100 for kind, seconds in spent.items()} if total else None
