"""`localcloud status`: which components run where, and what the runtime reports."""

from __future__ import annotations

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
