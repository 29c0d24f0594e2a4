"""`localcloud`: start, inspect and stop the docker-free local cloud.

  up        start moto, mosquitto, PostgreSQL and the runtime (reusing what already runs), migrate the
            database, deploy the stack, write the env file
  down      stop everything `up` started (only pids we recorded)
  status    components, ESM positions/lag per shard, schedules, recent invocations
  deploy    redeploy the stack (and make the runtime re-read rules and schedules)
  fire      fire a schedule now
  invoke    invoke a function through the runtime; prints the result or error and the log tail
  restore   load an archived day back from S3 into the database
  demo      start a demo fleet (an hour of history, then live), run the KPI and alert jobs, show the results
  simulate  publish a simulated fleet's telemetry over the broker (seeded, with faults on demand)
  kpis      print the fleet KPI summary table
  runtime   run the runtime in the foreground (what `up` starts detached)

Every port and the state dir come from environment variables (see localcloud.config.Settings).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from localcloud.config import (
    FUNCTIONS_DIR,
    REPO_ROOT,
    Settings,
    aws_client_env,
    import_functions,
    read_env_file,
    write_env_file,
)
from localcloud.postgres import PostgresError
from localcloud.procs import ProcessRegistry, StartError, port_open
from localcloud.stack import StackError

MOTO, MOSQUITTO, RUNTIME, POSTGRES = "moto", "mosquitto", "runtime", "postgres"
SIMULATOR = "simulator"  # the demo fleet (`localcloud demo`)
RUNTIME_STOP_TIMEOUT_S = 60.0  # above the runtime's own drain timeout (localcloud.runtime.DRAIN_TIMEOUT_S)


class CliError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def mqtt_address(settings: Settings) -> tuple[str, int, bool]:
    """(host, port, external): MQTT_URL (mqtt://host:port) names a broker we do not start."""
    url = os.environ.get("MQTT_URL", "")
    if not url:
        return settings.mqtt_host, settings.mqtt_port, False
    rest = url.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "1883")
    return host, int(port), True


def control_url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.control_port}"


def runtime_request(settings: Settings, method: str, path: str, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(method, control_url(settings) + path, timeout=kwargs.pop("timeout", 930), **kwargs)
    except requests.ConnectionError as exc:
        raise CliError(f"the runtime is not answering on {control_url(settings)}: run `localcloud up`") from exc


# -- components ----------------------------------------------------------------------------------------
def ensure_server(registry: ProcessRegistry, name: str, port: int, argv: list[str], env: dict[str, str]) -> str:
    """Reuse our running server or start it; refuse to take over a port something else holds."""
    if registry.pid(name) is not None and port_open("127.0.0.1", port):
        return f"{name} already running (pid {registry.pid(name)}, port {port})"
    if port_open("127.0.0.1", port):
        raise CliError(f"port {port} is in use by a process we did not start; choose another port for {name}")
    registry.stop(name)  # a recorded pid whose server no longer listens
    pid = registry.start(name, argv, env=env, cwd=REPO_ROOT)
    deadline = time.monotonic() + 60
    while not port_open("127.0.0.1", port):
        if registry.pid(name) is None or time.monotonic() > deadline:
            raise CliError(f"{name} did not start listening on port {port}; see {registry.log_file(name)}")
        time.sleep(0.05)
    return f"{name} started (pid {pid}, port {port})"


def pg_state_file(settings: Settings) -> Path:
    return settings.state_dir / "postgres.json"


def postgres_cluster(settings: Settings):
    """The private cluster: root dir and port chosen on first start and remembered in the state dir."""
    from localcloud.postgres import PostgresCluster
    from localcloud.procs import free_port

    state = pg_state_file(settings)
    if state.exists():
        saved = json.loads(state.read_text())
        return PostgresCluster(Path(saved["root"]), int(saved["port"]))
    root = Path(os.environ.get("LOCALCLOUD_PG_DIR") or settings.state_dir / "postgres")
    cluster = PostgresCluster(root, free_port())
    if not os.environ.get("LOCALCLOUD_PG_DIR") and cluster.run_user and not _reachable(cluster.run_user, root.parent):
        cluster = PostgresCluster(server_dir(settings, "pg", cluster.run_user), cluster.port)
    state.write_text(json.dumps({"root": str(cluster.root_dir), "port": cluster.port}))
    return cluster


def server_dir(settings: Settings, kind: str, run_user: str) -> Path:
    """A folder for a server that runs as `run_user` (we are root) and cannot reach the state dir (a 0700
    home or pytest tmp folder above it): /var/tmp/iotkpi-<kind>-<hash of the state dir>, which must be ours."""
    import pwd

    digest = hashlib.sha256(str(settings.state_dir.resolve()).encode()).hexdigest()[:10]
    folder = Path("/var/tmp") / f"iotkpi-{kind}-{digest}"  # noqa: S108 (ownership checked below)
    trusted = {os.geteuid(), pwd.getpwnam(run_user).pw_uid}
    if folder.is_symlink() or (folder.exists() and folder.stat().st_uid not in trusted):
        raise CliError(f"{folder} exists and is not ours: remove it, or move the state dir (LOCALCLOUD_STATE_DIR)")
    return folder


def _reachable(user: str, folder: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(folder)], capture_output=True).returncode == 0


def external_database_url(settings: Settings) -> str:
    """DATABASE_URL, unless it is the one we wrote ourselves (a shell that sourced our env file)."""
    ours = read_env_file(settings.env_file).get("DATABASE_URL") if pg_state_file(settings).exists() else None
    return "" if settings.external_database_url == ours else settings.external_database_url


def ensure_database(settings: Settings) -> str:
    if external_database_url(settings):
        step("PostgreSQL: using DATABASE_URL")
        return settings.external_database_url
    cluster = postgres_cluster(settings)
    step(f"PostgreSQL: cluster in {cluster.root_dir} on port {cluster.port}")
    cluster.init()
    cluster.start()
    return cluster.create_database("iotkpi")


def run_migrations(database_url: str) -> None:
    import_functions()
    from common.migrations import migrate

    applied = migrate(database_url)
    step(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ", schema up to date"))


def grafana_login(database_url: str, password: str | None) -> dict[str, str]:
    import psycopg

    from localcloud.grafana.reader import LOGIN, ensure_reader_login

    try:
        values = ensure_reader_login(database_url, password)
    except psycopg.Error as exc:  # e.g. an external DATABASE_URL whose role may not create roles
        step(f"grafana: no read-only login ({type(exc).__name__}: {exc}); create one in iotkpi_reader yourself")
        return {}
    step(f"grafana: read-only login {LOGIN} (GRAFANA_DB_* in the env file)")
    return values


def deploy(settings: Settings, database_url: str) -> dict[str, str]:
    from localcloud.deploy import deploy_stack
    from localcloud.stack import load_stack

    stack = load_stack(settings.stack_file)
    step(f"deploying {settings.stack_file} to {settings.endpoint_url}")
    return deploy_stack(
        stack, settings.endpoint_url, settings.region, database_url=database_url, progress=lambda s: step(f"  {s}")
    )


def wait_for_runtime(settings: Settings, registry: ProcessRegistry, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.pid(RUNTIME) is None:
            raise CliError(f"the runtime exited during start-up; see {registry.log_file(RUNTIME)}")
        try:
            if requests.get(control_url(settings) + "/status", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise CliError(f"the runtime did not answer within {timeout:.0f}s; see {registry.log_file(RUNTIME)}")


def registry_for(settings: Settings) -> ProcessRegistry:
    return ProcessRegistry(settings.run_dir, settings.logs_dir)


# -- commands ------------------------------------------------------------------------------------------
def cmd_up(settings: Settings, _args: argparse.Namespace) -> None:
    started = time.monotonic()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    registry = registry_for(settings)
    base_env = {**os.environ, **aws_client_env(settings.endpoint_url, settings.region)}
    mqtt_host, mqtt_port, external_mqtt = mqtt_address(settings)
    if settings.uses_external_endpoint:
        step(f"AWS endpoint: using {settings.endpoint_url}")
    else:
        moto_env = {**base_env, "LOCALCLOUD_RUNTIME_URL": control_url(settings)}
        argv = [sys.executable, "-m", "localcloud.aws_endpoint", "--port", str(settings.moto_port)]
        step(ensure_server(registry, MOTO, settings.moto_port, argv, moto_env))
    if external_mqtt:
        step(f"MQTT broker: using {mqtt_host}:{mqtt_port}")
    else:
        from localcloud.mqtt_broker import MosquittoBroker

        broker_dir = settings.state_dir / "mosquitto"
        run_user = MosquittoBroker.run_user()
        if run_user not in {None, "root"} and not _reachable(run_user, settings.state_dir):
            broker_dir = server_dir(settings, "mqtt", run_user)
        broker = MosquittoBroker(broker_dir, mqtt_host, mqtt_port)
        if registry.pid(MOSQUITTO) is None:
            broker.prepare()
        step(ensure_server(registry, MOSQUITTO, mqtt_port, broker.argv(), base_env))
    database_url = ensure_database(settings)
    run_migrations(database_url)
    grafana = grafana_login(database_url, read_env_file(settings.env_file).get("GRAFANA_DB_PASSWORD"))
    outputs = deploy(settings, database_url)
    runtime_env = {**base_env, "MQTT_HOST": mqtt_host, "MQTT_PORT": str(mqtt_port)}
    runtime_env["LOCALCLOUD_CONTROL_PORT"] = str(settings.control_port)
    argv = [sys.executable, "-m", "localcloud", "runtime"]
    step(ensure_server(registry, RUNTIME, settings.control_port, argv, runtime_env))
    wait_for_runtime(settings, registry)
    runtime_request(settings, "POST", "/reload", timeout=30)  # a reused runtime picks up the redeploy
    values = {
        **aws_client_env(settings.endpoint_url, settings.region),
        "DATABASE_URL": database_url,
        "MQTT_HOST": mqtt_host,
        "MQTT_PORT": str(mqtt_port),
        "LOCALCLOUD_CONTROL_URL": control_url(settings),
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


def cmd_down(settings: Settings, _args: argparse.Namespace) -> None:
    registry = registry_for(settings)
    for name in (SIMULATOR, RUNTIME, MOSQUITTO, MOTO):
        # The runtime drains the stream before it exits (moto's streams live in memory): give it the time.
        timeout = RUNTIME_STOP_TIMEOUT_S if name == RUNTIME else 10.0
        step(f"{name}: " + ("stopped" if registry.stop(name, timeout) else "was not running"))
    if pg_state_file(settings).exists() and not external_database_url(settings):
        cluster = postgres_cluster(settings)
        running = cluster.is_running()
        cluster.stop()
        step("postgres: " + ("stopped" if running else "was not running"))


def cmd_status(settings: Settings, args: argparse.Namespace) -> None:
    registry = registry_for(settings)
    _, mqtt_port, external_mqtt = mqtt_address(settings)
    rows = []
    if not settings.uses_external_endpoint:
        rows.append((MOTO, registry.pid(MOTO), settings.moto_port))
    if not external_mqtt:
        rows.append((MOSQUITTO, registry.pid(MOSQUITTO), mqtt_port))
    rows.append((RUNTIME, registry.pid(RUNTIME), settings.control_port))
    if pg_state_file(settings).exists() and not external_database_url(settings):
        cluster = postgres_cluster(settings)
        rows.append((POSTGRES, cluster.postmaster_pid() if cluster.is_running() else None, cluster.port))
    runtime_status = None
    if port_open("127.0.0.1", settings.control_port):
        runtime_status = runtime_request(settings, "GET", "/status", timeout=10).json()
    if args.json:
        components = [{"name": n, "pid": p, "port": port, "up": _up(p, port)} for n, p, port in rows]
        print(json.dumps({"components": components, "runtime": runtime_status}, indent=2, default=str))
        return
    print(f"{'component':<12}{'pid':>8}{'port':>8}  state")
    for name, pid, port in rows:
        print(f"{name:<12}{pid or '-':>8}{port:>8}  {'up' if _up(pid, port) else 'down'}")
    if runtime_status:
        _print_runtime_status(runtime_status)


def _up(pid: int | None, port: int) -> bool:
    return pid is not None and port_open("127.0.0.1", port)


def _print_runtime_status(status: dict[str, Any]) -> None:
    print("\nevent source mappings (per shard):")
    columns = ("function", "shard_id", "state", "checkpoint_sequence", "records_behind", "millis_behind_latest")
    for shard in status.get("event_source_mappings") or []:
        line = "  ".join(f"{key}={shard.get(key)}" for key in columns)
        print(f"  {line}" + (f"  last_error={shard['last_error']}" if shard.get("last_error") else ""))
    print("\nschedules:")
    for schedule in status.get("schedules") or []:
        print(
            f"  {schedule['name']:<32} {schedule['expression']:<24} next {schedule['next_fire']}  fires {schedule['fires']}"
        )
    print(f"\nrules engine: {json.dumps(status.get('rules_engine'), default=str)}")
    print("\nrecent invocations:")
    for invocation in status.get("recent_invocations") or []:
        print("  " + json.dumps(invocation, default=str))


def cmd_deploy(settings: Settings, _args: argparse.Namespace) -> None:
    database_url = external_database_url(settings) or read_env_file(settings.env_file).get("DATABASE_URL", "")
    if not database_url:
        raise CliError("no DATABASE_URL: run `localcloud up` first (or set DATABASE_URL)")
    outputs = deploy(settings, database_url)
    if port_open("127.0.0.1", settings.control_port):
        runtime_request(settings, "POST", "/reload", timeout=30)
    write_env_file(settings.env_file, {**read_env_file(settings.env_file), **outputs})
    step(f"deployed; outputs written to {settings.env_file}")


def fire_schedule(settings: Settings, schedule: str) -> dict[str, Any]:
    """Fire a schedule through the runtime and wait: {"ok", "payload" or "error", "log_tail"}."""
    response = runtime_request(settings, "POST", f"/schedules/{schedule}/fire")
    if response.status_code == 404:
        raise CliError(response.json()["error"])
    return response.json()


def cmd_fire(settings: Settings, args: argparse.Namespace) -> None:
    result = fire_schedule(settings, args.schedule)
    _print_result(result["ok"], result["payload"] if result["ok"] else result["error"], result["log_tail"])
    if not result["ok"]:
        raise SystemExit(1)


def cmd_invoke(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.stack import load_stack

    name = args.function
    stack = load_stack(settings.stack_file)
    if name in stack.functions:  # the stack key is enough: `localcloud invoke ingest`
        name = stack.resource_name(name)
    response = runtime_request(settings, "POST", f"/invoke/{name}", data=(args.event or "{}").encode())
    if response.status_code != 200:
        raise CliError(f"invoke {name}: HTTP {response.status_code}: {response.text}")
    tail = base64.b64decode(response.headers.get("X-Amz-Log-Result", "")).decode(errors="replace")
    failed = "X-Amz-Function-Error" in response.headers
    _print_result(not failed, response.json(), tail)
    if failed:
        raise SystemExit(1)


def _print_result(ok: bool, document: Any, log_tail: str) -> None:
    print(("result: " if ok else "error: ") + json.dumps(document, indent=2, default=str))
    if log_tail:
        print("--- log tail ---\n" + log_tail.rstrip())


def cmd_restore(settings: Settings, args: argparse.Namespace) -> None:
    argv = ["--day", args.day] + (["--bucket", args.bucket] if args.bucket else [])
    raise SystemExit(run_function_module(settings, "archive.restore", argv))


def run_function_module(settings: Settings, module: str, argv: list[str]) -> int:
    """Run a functions/ module (functions/ is the code root, as in Lambda) with the local cloud's settings."""
    env = {**os.environ, **read_env_file(settings.env_file)}
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=FUNCTIONS_DIR, env=env).returncode


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.demo import run_demo

    run_demo(settings, args)


def cmd_simulate(_settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.simulator.cli import run

    raise SystemExit(run(args))


def cmd_kpis(_settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.kpi_report import run

    raise SystemExit(run(args))


def cmd_runtime(_settings: Settings, _args: argparse.Namespace) -> None:
    from localcloud.runtime import main as runtime_main

    runtime_main()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start everything and deploy the stack (idempotent)").set_defaults(func=cmd_up)
    commands.add_parser("down", help="stop everything up started").set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="components, ESM lag, schedules, recent invocations")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    commands.add_parser("deploy", help="redeploy the stack").set_defaults(func=cmd_deploy)
    fire = commands.add_parser("fire", help="fire a schedule (or EventBridge rule) now")
    fire.add_argument("schedule")
    fire.set_defaults(func=cmd_fire)
    invoke = commands.add_parser("invoke", help="invoke a function (stack key or function name)")
    invoke.add_argument("function")
    invoke.add_argument("event", nargs="?", help="the event as JSON (default {})")
    invoke.set_defaults(func=cmd_invoke)
    restore = commands.add_parser("restore", help="load an archived day back into the database")
    restore.add_argument("--day", required=True, help="the UTC day, YYYY-MM-DD")
    restore.add_argument("--bucket", help="archive bucket (default: ARCHIVE_BUCKET from the env file)")
    restore.set_defaults(func=cmd_restore)
    commands.add_parser("runtime", help="run the runtime in the foreground").set_defaults(func=cmd_runtime)
    from localcloud.demo import add_arguments as demo_arguments
    from localcloud.kpi_report import add_arguments as kpi_arguments
    from localcloud.simulator.cli import add_arguments as simulator_arguments

    demo = commands.add_parser("demo", help="a demo fleet: history, live telemetry, KPIs and alerts in a minute")
    demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)
    simulate = commands.add_parser("simulate", help="send a simulated fleet's telemetry over the local broker")
    simulator_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    kpis = commands.add_parser("kpis", help="print the fleet KPI summary table")
    kpi_arguments(kpis)
    kpis.set_defaults(func=cmd_kpis)
    args = parser.parse_args(argv)
    try:
        args.func(Settings(), args)
    except (CliError, StackError, PostgresError, StartError) as exc:
        print(f"localcloud {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
