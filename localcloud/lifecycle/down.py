"""`localcloud down`: stop everything `up` and `demo` started (only pids we recorded; never by name)."""

from __future__ import annotations

from localcloud.config import Settings
from localcloud.lifecycle.components import (
    MOSQUITTO,
    MOTO,
    RUNTIME,
    RUNTIME_STOP_TIMEOUT_S,
    SIMULATOR,
    registry_for,
    uses_private_cluster,
)
from localcloud.progress import step


def down(settings: Settings) -> None:
    registry = registry_for(settings)
    for name in (SIMULATOR, RUNTIME, MOSQUITTO, MOTO):
        # The runtime drains the stream before it exits (an optimisation: streams are kept on disk): give it the time.
        timeout = RUNTIME_STOP_TIMEOUT_S if name == RUNTIME else 10.0
        step(f"{name}: " + ("stopped" if registry.stop(name, timeout) else "was not running"))
    if uses_private_cluster(settings):
        from localcloud.servers.postgres import private_cluster

        cluster = private_cluster(settings.state_dir)
        running = cluster.is_running()
        cluster.stop()
        step("postgres: " + ("stopped" if running else "was not running"))
