"""The local cloud's processes, by component, as /proc shows them: what the soak's memory figures and the
pipeline's CPU figures are summed over. Processes are found by the pids `up` recorded and their children
(Lambda workers under the runtime, backends under the postmaster); the rules engine, a child of the runtime,
counts as a component of its own (the pid the runtime's status gives). Nothing is signalled."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from benchmarks import CLOCK_TICKS
from tests.fixtures.local_cloud import LocalCloud

COMPONENTS = ("moto", "runtime", "mosquitto", "postgres")
RULES_ENGINE = "rules engine (the runtime's child)"


def children() -> dict[int, list[int]]:
    """Each process's children, by parent pid."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            found.setdefault(parent, []).append(int(entry.name))
    return found


def tree(pid: int, by_parent: dict[int, list[int]]) -> list[int]:
    """`pid` and all its descendants."""
    pending, found = [pid], []
    while pending:
        current = pending.pop()
        found.append(current)
        pending += by_parent.get(current, [])
    return found


def runtime_status(cloud: LocalCloud) -> dict:
    """The runtime's GET /status, asked in this process (`localcloud status` would run a CLI whose CPU time
    counts as this process's, the benchmark's devices)."""
    settings = cloud.settings
    headers = {"Authorization": f"Bearer {settings['LOCALCLOUD_CONTROL_TOKEN']}"}
    return requests.get(settings["LOCALCLOUD_CONTROL_URL"] + "/status", headers=headers, timeout=10).json()


def components(cloud: LocalCloud) -> dict[str, list[int]]:
    """The pids of each component (with its children)."""
    pids, by_parent = cloud.recorded_pids(), children()
    found = {name: tree(pids[name], by_parent) for name in COMPONENTS}
    engine = runtime_status(cloud)["rules_engine"].get("pid")
    if engine in found["runtime"]:
        found[RULES_ENGINE] = tree(engine, by_parent)
        found["runtime"] = [pid for pid in found["runtime"] if pid not in found[RULES_ENGINE]]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process and of its children it waited for; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(ticks) for ticks in fields[11:15]) / CLOCK_TICKS


def component_cpu(cloud: LocalCloud) -> dict[str, float]:
    """CPU seconds used so far by each component's processes, and by this process (the benchmark's devices)."""
    used = {name: sum(map(cpu_seconds, pids)) for name, pids in components(cloud).items()}
    used["devices (the benchmark's publisher)"] = cpu_seconds(os.getpid())
    return used
