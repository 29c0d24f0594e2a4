"""The local cloud's components, where each one listens, and how a detached server is (re)used or started."""

from __future__ import annotations

import os
import time

from localcloud.config import REPO_ROOT, Settings, read_env_file
from localcloud.errors import LocalCloudError
from localcloud.servers.postgres import private_cluster_state
from localcloud.servers.procs import ProcessRegistry, port_open

MOTO, MOSQUITTO, RUNTIME, POSTGRES = "moto", "mosquitto", "runtime", "postgres"
SIMULATOR = "simulator"  # the demo fleet (`localcloud demo`)
RUNTIME_STOP_TIMEOUT_S = 60.0  # above the runtime's own drain timeout (localcloud.runtime.process.DRAIN_TIMEOUT_S)


def registry_for(settings: Settings) -> ProcessRegistry:
    return ProcessRegistry(settings.run_dir, settings.logs_dir)


def mqtt_address(settings: Settings) -> tuple[str, int, bool]:
    """(host, port, external): MQTT_URL (mqtt://host:port) names a broker we do not start."""
    url = os.environ.get("MQTT_URL", "")
    if not url:
        return settings.mqtt_host, settings.mqtt_port, False
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "1883")
    return host, int(port), True


def external_database_url(settings: Settings) -> str:
    """DATABASE_URL, unless it is the one we wrote ourselves (a shell that sourced our env file)."""
    ours = (
        read_env_file(settings.env_file).get("DATABASE_URL")
        if private_cluster_state(settings.state_dir).exists()
        else None
    )
    return "" if settings.external_database_url == ours else settings.external_database_url


def uses_private_cluster(settings: Settings) -> bool:
    return private_cluster_state(settings.state_dir).exists() and not external_database_url(settings)


def ensure_server(registry: ProcessRegistry, name: str, port: int, argv: list[str], env: dict[str, str]) -> str:
    """Reuse our running server or start it; refuse to take over a port something else holds."""
    if registry.pid(name) is not None and port_open("127.0.0.1", port):
        return f"{name} already running (pid {registry.pid(name)}, port {port})"
    if port_open("127.0.0.1", port):
        raise LocalCloudError(f"port {port} is in use by a process we did not start; choose another port for {name}")
    registry.stop(name)  # a recorded pid whose server no longer listens
    pid = registry.start(name, argv, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if registry.pid(name) is None or time.monotonic() > deadline:
            raise LocalCloudError(f"{name} did not start listening on port {port}; see {registry.log_file(name)}")
        time.sleep(0.05)
    return f"{name} started (pid {pid}, port {port})"
