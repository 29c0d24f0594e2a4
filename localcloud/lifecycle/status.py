"""`localcloud status`: which components run where, what the runtime reports, and the disk the state uses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from localcloud.config import Settings
from localcloud.lifecycle.components import (
    MOSQUITTO,
    MOTO,
    POSTGRES,
    RUNTIME,
    mqtt_address,
    registry_for,
    uses_private_cluster,
)
from localcloud.runtime.client import runtime_request
from localcloud.servers.procs import port_open


def component_rows(settings: Settings) -> list[dict[str, Any]]:
    """One row per component we run: name, pid (None when not running), port, up."""
    registry = registry_for(settings)
    _, mqtt_port, external_mqtt = mqtt_address(settings)
    rows = []
    if not settings.uses_external_endpoint:
        rows.append((MOTO, registry.pid(MOTO), settings.moto_port))
    if not external_mqtt:
        rows.append((MOSQUITTO, registry.pid(MOSQUITTO), mqtt_port))
    rows.append((RUNTIME, registry.pid(RUNTIME), settings.control_port))
    if uses_private_cluster(settings):
        from localcloud.servers.postgres import private_cluster

        cluster = private_cluster(settings.state_dir)
        rows.append((POSTGRES, cluster.postmaster_pid() if cluster.is_running() else None, cluster.port))
    return [
        {"name": name, "pid": pid, "port": port, "up": pid is not None and port_open("127.0.0.1", port)}
        for name, pid, port in rows
    ]


def runtime_status(settings: Settings) -> dict[str, Any] | None:
    """The runtime's own report (mappings, schedules, rules engine, invocations), None when it is not up."""
    if not port_open("127.0.0.1", settings.control_port):
        return None
    return runtime_request(settings, "GET", "/status", timeout=10).json()


def tree_bytes(path: Path) -> int:
    """Bytes of the files under `path` (links not followed); what cannot be read, or vanishes meanwhile (a
    server's temporary files), is not counted."""
    try:
        if not path.is_dir() or path.is_symlink():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


def state_usage(settings: Settings) -> dict[str, Any]:
    """The state folder's size, per entry (the Kinesis store, PostgreSQL's data, logs, ...), and the private
    cluster's folder when it lives elsewhere (/var/tmp, LOCALCLOUD_PG_DIR)."""
    state_dir = settings.state_dir
    entries = sorted(state_dir.iterdir()) if state_dir.is_dir() else []
    parts = {entry.name: tree_bytes(entry) for entry in entries}
    elsewhere: dict[str, dict[str, Any]] = {}
    if uses_private_cluster(settings):
        from localcloud.servers.postgres import private_cluster

        root = private_cluster(settings.state_dir).root_dir
        if not root.resolve().is_relative_to(state_dir.resolve()):
            elsewhere["postgres"] = {"path": str(root), "bytes": tree_bytes(root)}
    return {"path": str(state_dir), "bytes": sum(parts.values()), "parts": parts, "elsewhere": elsewhere}
