"""`localcloud`: start, inspect and stop the docker-free local cloud.

  up        start moto, mosquitto, PostgreSQL and the runtime (reusing what already runs), migrate the
            database, deploy the stack (boto3 deployer, or `--deploy terraform`), write the env file
  down      stop everything `up` started (only pids we recorded)
  status    components, the state folder's size, ESM positions/lag per shard, schedules, recent invocations
  deploy    redeploy the stack (and make the runtime re-read rules and schedules)
  fire      fire a schedule now
  invoke    invoke a function through the runtime; prints the result or error and the log tail
  restore   load an archived day back from S3 into the database
  replay    re-drive the batches the ingest's event source mapping gave up on (its on-failure queue)
  demo      start a demo fleet (an hour of history, then live), run the KPI and alert jobs, show the results
  simulate  publish a simulated fleet's telemetry over the broker (seeded, with faults on demand)
  kpis      print the fleet KPI summary table
  runtime   run the runtime in the foreground (what `up` starts detached)

Every port and the state dir come from environment variables (see localcloud.config.Settings). This module
parses arguments and prints; the work is in localcloud.lifecycle and localcloud.runtime.client.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from localcloud.config import FUNCTIONS_DIR, Settings, read_env_file
from localcloud.errors import LocalCloudError


def cmd_up(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.lifecycle.up import up

    up(settings, args.deploy)


def cmd_down(settings: Settings, _args: argparse.Namespace) -> None:
    from localcloud.lifecycle.down import down

    down(settings)


def cmd_status(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.lifecycle.status import component_rows, runtime_status, state_usage

    rows, runtime, state = component_rows(settings), runtime_status(settings), state_usage(settings)
    if args.json:
        print(json.dumps({"components": rows, "runtime": runtime, "state": state}, indent=2, default=str))
        return
    print(f"{'component':<12}{'pid':>8}{'port':>8}  state")
    for row in rows:
        print(f"{row['name']:<12}{row['pid'] or '-':>8}{row['port']:>8}  {'up' if row['up'] else 'down'}")
    print_state_usage(state)
    if runtime:
        print_runtime_status(runtime)


def human_bytes(count: float) -> str:
    """1,234 B, 12.3 kB, 4.5 MB, 1.2 GB (powers of 1,000, as `df -H`)."""
    if count < 1000:
        return f"{count:,.0f} B"
    for unit in ("kB", "MB"):
        count /= 1000
        if count < 1000:
            return f"{count:.1f} {unit}"
    return f"{count / 1000:,.1f} GB"


def print_state_usage(state: dict[str, Any]) -> None:
    largest = sorted(state["parts"].items(), key=lambda part: -part[1])
    detail = ", ".join(f"{name} {human_bytes(size)}" for name, size in largest if size)
    print(f"\nstate folder {state['path']}: {human_bytes(state['bytes'])}" + (f" ({detail})" if detail else ""))
    for name, place in state["elsewhere"].items():
        print(f"  {name} data in {place['path']}: {human_bytes(place['bytes'])}")


def print_runtime_status(status: dict[str, Any]) -> None:
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


def cmd_deploy(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.lifecycle.deploy import redeploy

    redeploy(settings, args.deploy)


def cmd_fire(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.runtime.client import fire_schedule

    result = fire_schedule(settings, args.schedule)
    print_result(result["ok"], result["payload"] if result["ok"] else result["error"], result["log_tail"])
    if not result["ok"]:
        raise SystemExit(1)


def cmd_invoke(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.runtime.client import invoke
    from localcloud.stack.model import load_stack

    name = args.function
    stack = load_stack(settings.stack_file)
    if name in stack.functions:  # the stack key is enough: `localcloud invoke ingest`
        name = stack.resource_name(name)
    ok, document, tail = invoke(settings, name, (args.event or "{}").encode())
    print_result(ok, document, tail)
    if not ok:
        raise SystemExit(1)


def print_result(ok: bool, document: Any, log_tail: str) -> None:
    print(("result: " if ok else "error: ") + json.dumps(document, indent=2, default=str))
    if log_tail:
        print("--- log tail ---\n" + log_tail.rstrip())


def cmd_restore(settings: Settings, args: argparse.Namespace) -> None:
    # functions/ is the code root, as in Lambda; the module runs with the local cloud's settings.
    argv = ["--day", args.day] + (["--bucket", args.bucket] if args.bucket else [])
    env = {**os.environ, **read_env_file(settings.env_file)}
    command = [sys.executable, "-m", "archive.restore", *argv]
    raise SystemExit(subprocess.run(command, cwd=FUNCTIONS_DIR, env=env).returncode)


def cmd_replay(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.tools.replay import run

    raise SystemExit(run(settings, args.queue, args.limit, args.dry_run))


def cmd_demo(settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.tools.demo import run_demo

    run_demo(settings, args)


def cmd_simulate(_settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.tools.simulator.cli import run

    raise SystemExit(run(args))


def cmd_kpis(_settings: Settings, args: argparse.Namespace) -> None:
    from localcloud.tools.kpi_report import run

    raise SystemExit(run(args))


def cmd_runtime(_settings: Settings, _args: argparse.Namespace) -> None:
    from localcloud.runtime.process import main as runtime_main

    runtime_main()


def build_parser() -> argparse.ArgumentParser:
    from localcloud.lifecycle.deploy import BOTO3, DEPLOY_ENV, DEPLOYERS
    from localcloud.tools.demo import add_arguments as demo_arguments
    from localcloud.tools.kpi_report import add_arguments as kpi_arguments
    from localcloud.tools.simulator.cli import add_arguments as simulator_arguments

    parser = argparse.ArgumentParser(prog="localcloud", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start everything and deploy the stack (idempotent)")
    up.add_argument(
        "--deploy", choices=DEPLOYERS, default=os.environ.get(DEPLOY_ENV) or BOTO3,
        help=f"deploy with the boto3 deployer or with `terraform apply` of infrastructure/terraform (default "
        f"{DEPLOY_ENV}, else boto3)",
    )  # fmt: skip
    up.set_defaults(func=cmd_up)
    commands.add_parser("down", help="stop everything up started").set_defaults(func=cmd_down)
    status = commands.add_parser("status", help="components, state size, ESM lag, schedules, recent invocations")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    deploy = commands.add_parser("deploy", help="redeploy the stack")
    deploy.add_argument("--deploy", choices=DEPLOYERS, help="boto3 or terraform (default: as `up` deployed)")
    deploy.set_defaults(func=cmd_deploy)
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
    replay = commands.add_parser("replay", help="re-drive the ingest's failed batches from the stream (AWS or local)")
    replay.add_argument(
        "--queue",
        help="URL of the on-failure queue (terraform output queue_urls: ingest_dlq); default INGEST_DLQ_URL, then "
        "the local cloud's. Against AWS: credentials and AWS_REGION as for the AWS CLI",
    )
    replay.add_argument("--max", type=int, dest="limit", help="replay at most this many on-failure records")
    replay.add_argument("--dry-run", action="store_true", help="read the ranges back; invoke and delete nothing")
    replay.set_defaults(func=cmd_replay)
    commands.add_parser("runtime", help="run the runtime in the foreground").set_defaults(func=cmd_runtime)
    demo = commands.add_parser("demo", help="a demo fleet: history, live telemetry, KPIs and alerts in a minute")
    demo_arguments(demo)
    demo.set_defaults(func=cmd_demo)
    simulate = commands.add_parser("simulate", help="send a simulated fleet's telemetry over the local broker")
    simulator_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)
    kpis = commands.add_parser("kpis", help="print the fleet KPI summary table")
    kpi_arguments(kpis)
    kpis.set_defaults(func=cmd_kpis)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(Settings(), args)
    except LocalCloudError as exc:
        print(f"localcloud {args.command}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
