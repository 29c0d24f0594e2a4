"""`localcloud up`: start (or reuse) every server, migrate, deploy the stack, start the runtime, write the env
file."""

from __future__ import annotations

import os
import secrets
import sys
import time

from localcloud.config import (
    CONTROL_TOKEN_ENV,
    Settings,
    aws_client_env,
    import_functions,
    read_env_file,
    without_secrets,
    write_env_file,
)
from localcloud.errors import LocalCloudError
from localcloud.lifecycle.components import (
    MOSQUITTO,
    MOTO,
    RUNTIME,
    ensure_server,
    external_database_url,
    mqtt_address,
    registry_for,
)
from localcloud.lifecycle.deploy import BOTO3, TERRAFORM, check_deployer, deploy
from localcloud.progress import step
from localcloud.runtime.client import control_url, runtime_request, wait_for_runtime
from localcloud.servers.procs import ProcessRegistry


def up(settings: Settings, deploy_with: str = BOTO3) -> None:
    started = time.monotonic()
    check_deployer(deploy_with)
    if deploy_with == TERRAFORM:
        from localcloud.lifecycle.terraform import terraform_binary

        terraform_binary()  # before anything starts: without it, say what to install
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    registry = registry_for(settings)
    flavour = requested_db_flavour()
    token = ensure_control_token(settings)
    # No server gets the secrets a shell that sourced the env file exports; moto and the runtime get the token.
    base_env = {**without_secrets(os.environ), **aws_client_env(settings.endpoint_url, settings.region)}
    mqtt_host, mqtt_port, external_mqtt = mqtt_address(settings)
    if settings.uses_external_endpoint:
        step(f"AWS endpoint: using {settings.endpoint_url}")
    else:
        moto_env = {**base_env, "LOCALCLOUD_RUNTIME_URL": control_url(settings), CONTROL_TOKEN_ENV: token}
        moto_env["LOCALCLOUD_KINESIS_DB"] = str(settings.state_dir / "kinesis.db")  # the streams, kept across restarts
        argv = [sys.executable, "-m", "localcloud.servers.aws_endpoint", "--port", str(settings.moto_port)]
        step(ensure_server(registry, MOTO, settings.moto_port, argv, moto_env))
    if external_mqtt:
        step(f"MQTT broker: using {mqtt_host}:{mqtt_port}")
    else:
        start_broker(settings, registry, mqtt_host, mqtt_port, base_env)
    database_url = ensure_database(settings, flavour)
    run_migrations(database_url, flavour)
    grafana = grafana_login(database_url, read_env_file(settings.env_file).get("GRAFANA_DB_PASSWORD"))
    outputs = deploy(settings, database_url, deploy_with)
    runtime_env = {**base_env, "MQTT_HOST": mqtt_host, "MQTT_PORT": str(mqtt_port), CONTROL_TOKEN_ENV: token}
    runtime_env["LOCALCLOUD_CONTROL_PORT"] = str(settings.control_port)
    argv = [sys.executable, "-m", "localcloud", "runtime"]
    step(ensure_server(registry, RUNTIME, settings.control_port, argv, runtime_env))
    wait_for_runtime(settings, lambda: registry.pid(RUNTIME) is not None, registry.log_file(RUNTIME))
    runtime_request(settings, "POST", "/reload", timeout=30)  # a reused runtime picks up the redeploy
    values = {
        **aws_client_env(settings.endpoint_url, settings.region),
        "DATABASE_URL": database_url,
        "MQTT_HOST": mqtt_host,
        "MQTT_PORT": str(mqtt_port),
        "LOCALCLOUD_CONTROL_URL": control_url(settings),
        CONTROL_TOKEN_ENV: token,
        "LOCALCLOUD_STATE_DIR": str(settings.state_dir),
        **grafana,
        **outputs,
    }
    write_env_file(settings.env_file, values)
    print(f"\nlocal cloud up in {time.monotonic() - started:.1f}s")
    print(f"  AWS endpoint   {settings.endpoint_url} (region {settings.region})")
    print(f"  MQTT broker    mqtt://{mqtt_host}:{mqtt_port}")
    print(f"  PostgreSQL     {database_url.split('@')[-1]}")
    print(f"  runtime        {control_url(settings)}/status")
    print(f"  logs           {settings.logs_dir}")
    print(f"\nuse it from a shell:  . {settings.env_file}")


def ensure_control_token(settings: Settings) -> str:
    """The control API's token: the one in the env file (servers already running use it), else a new one, saved
    there at once so that a later `up` finds it even when this one fails half-way."""
    saved = read_env_file(settings.env_file)
    if saved.get(CONTROL_TOKEN_ENV):
        return saved[CONTROL_TOKEN_ENV]
    token = secrets.token_urlsafe(32)
    write_env_file(settings.env_file, {**saved, CONTROL_TOKEN_ENV: token})
    return token


def start_broker(settings: Settings, registry: ProcessRegistry, host: str, port: int, env: dict[str, str]) -> None:
    from localcloud.servers.mqtt_broker import MosquittoBroker
    from localcloud.servers.run_as import folder_for

    broker_dir = folder_for(settings.state_dir, settings.state_dir / "mosquitto", "mqtt", MosquittoBroker.run_user())
    broker = MosquittoBroker(broker_dir, host, port)
    if registry.pid(MOSQUITTO) is None:
        broker.prepare()
    step(ensure_server(registry, MOSQUITTO, port, broker.argv(), env))


def ensure_database(settings: Settings, flavour: str) -> str:
    from localcloud.servers.postgres import private_cluster

    if external_database_url(settings):
        step("PostgreSQL: using DATABASE_URL")
        return settings.external_database_url
    cluster = private_cluster(settings.state_dir)
    step(f"PostgreSQL: cluster in {cluster.root_dir} on port {cluster.port}")
    cluster.init()
    cluster.start(flavour=flavour)
    return cluster.create_database("iotkpi")


def requested_db_flavour() -> str:
    """IOTKPI_DB_FLAVOUR, read before any server starts so that a wrong value stops `up` at once."""
    import_functions()
    from common.flavour import requested_flavour
    from common.settings import ConfigError

    try:
        return requested_flavour()
    except ConfigError as exc:
        raise LocalCloudError(str(exc)) from None


def run_migrations(database_url: str, flavour: str) -> None:
    import_functions()
    from common.flavour import FlavourError
    from common.migrations import MigrationError, migrate

    try:
        run = migrate(database_url, requested=flavour)
    except (FlavourError, MigrationError) as exc:
        raise LocalCloudError(f"migrations: {exc}") from None
    applied = f"{len(run.applied)} applied ({', '.join(run.applied)})" if run.applied else "schema up to date"
    step(f"migrations ({run.flavour} flavour): {applied}")


def grafana_login(database_url: str, password: str | None) -> dict[str, str]:
    import psycopg

    from localcloud.servers.postgres_logins import LOGIN, ensure_reader_login

    try:
        values = ensure_reader_login(database_url, password)
    except psycopg.Error as exc:  # e.g. an external DATABASE_URL whose role may not create roles
        step(f"grafana: no read-only login ({type(exc).__name__}: {exc}); create one in iotkpi_reader yourself")
        return {}
    step(f"grafana: read-only login {LOGIN} (GRAFANA_DB_* in the env file)")
    return values
