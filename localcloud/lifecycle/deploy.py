"""Deploying `infrastructure/stack.yaml` to the endpoint, on `up` and on `localcloud deploy`."""

from __future__ import annotations

from localcloud.config import Settings, read_env_file, write_env_file
from localcloud.errors import LocalCloudError
from localcloud.lifecycle.components import external_database_url
from localcloud.progress import step
from localcloud.runtime.client import runtime_request
from localcloud.servers.procs import port_open


def deploy(settings: Settings, database_url: str) -> dict[str, str]:
    """Deploy the stack file; return its outputs (env-file variables)."""
    from localcloud.stack.deploy import deploy_stack
    from localcloud.stack.model import load_stack

    stack = load_stack(settings.stack_file)
    step(f"deploying {settings.stack_file} to {settings.endpoint_url}")
    return deploy_stack(
        stack, settings.endpoint_url, settings.region, database_url=database_url, progress=lambda s: step(f"  {s}")
    )


def redeploy(settings: Settings) -> None:
    """Deploy again after an edit of the stack file; a running runtime re-reads rules and schedules."""
    database_url = external_database_url(settings) or read_env_file(settings.env_file).get("DATABASE_URL", "")
    if not database_url:
        raise LocalCloudError("no DATABASE_URL: run `localcloud up` first (or set DATABASE_URL)")
    outputs = deploy(settings, database_url)
    if port_open("127.0.0.1", settings.control_port):
        runtime_request(settings, "POST", "/reload", timeout=30)
    write_env_file(settings.env_file, {**read_env_file(settings.env_file), **outputs})
    step(f"deployed; outputs written to {settings.env_file}")
