"""`python -m localcloud.tools.simulator`: simulate a fleet over the local (or any) MQTT broker."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from localcloud.config import Settings, read_env_file
from localcloud.tools.simulator.generator import Simulation
from localcloud.tools.simulator.model import OfflineSchedule, Options
from localcloud.tools.simulator.publisher import PublishError, publish_simulation


def _timestamp(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The simulator's options; `localcloud simulate` uses the same."""
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--devices", type=int, default=10, help="number of devices (default 10)")
    rate = fleet.add_mutually_exclusive_group()
    rate.add_argument("--rate", type=float, help="readings per device per minute (default 6)")
    rate.add_argument("--total-rate", type=float, metavar="MSG_PER_S", help="readings per second, whole fleet")
    fleet.add_argument("--duration", type=float, default=60, metavar="SECONDS", help="simulated seconds (default 60)")
    fleet.add_argument("--seed", type=int, default=0, help="same seed and options, same messages (default 0)")
    fleet.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    fleet.add_argument("--start", type=_timestamp, metavar="ISO",
                       help="simulated start time (default: now when paced, now - duration with --no-pace); "
                            "paced with a past start, the backlog is sent at once, then real time follows")  # fmt: skip
    behaviours = parser.add_argument_group("behaviours (probabilities are per reading)")
    behaviours.add_argument("--duplicates", type=float, default=0.0, metavar="P", help="re-send the same bytes")
    behaviours.add_argument("--late", type=float, default=0.0, metavar="P", help="send minutes after measuring")
    behaviours.add_argument("--late-delay", type=float, nargs=2, default=(60.0, 600.0), metavar=("MIN_S", "MAX_S"),
                            help="delay of late readings (default 60 600)")  # fmt: skip
    behaviours.add_argument("--out-of-order", type=float, default=0.0, metavar="P",
                            help="send after the device's next reading or two")  # fmt: skip
    behaviours.add_argument("--malformed", type=float, default=0.0, metavar="P", help="also send a broken payload")
    behaviours.add_argument("--oversize", type=float, default=0.0, metavar="P",
                            help="also send a payload over the ingest's size limit")  # fmt: skip
    behaviours.add_argument("--clock-skew", type=float, default=0.0, metavar="SECONDS",
                            help="each device's clock is off by up to ±SECONDS")  # fmt: skip
    behaviours.add_argument("--offline", type=OfflineSchedule.parse, action="append", default=[],
                            metavar="COUNT:MINUTES[@AT]", help="COUNT devices offline for MINUTES (repeatable)")  # fmt: skip
    sending = parser.add_argument_group("sending")
    sending.add_argument("--host", help="MQTT broker host (default MQTT_HOST, then .local/env, then 127.0.0.1)")
    sending.add_argument("--port", type=int, help="MQTT broker port (default MQTT_PORT, then .local/env, then 1883)")
    sending.add_argument("--no-pace", dest="pace", action="store_false", help="send as fast as acknowledged")
    sending.add_argument("--window", type=int, default=100, help="unacknowledged messages at most (default 100)")
    sending.add_argument("--report", type=Path, metavar="FILE", help="write every message as a JSON line")
    sending.add_argument("--summary-json", type=Path, metavar="FILE", help="write the counts as JSON")
    sending.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS")


def options_from(args: argparse.Namespace, now: datetime) -> Options:
    rate = 6.0 if args.rate is None and args.total_rate is None else args.rate
    if args.total_rate is not None:
        rate = args.total_rate * 60 / args.devices
    start = args.start or (now if args.pace else now - timedelta(seconds=args.duration))
    return Options(
        start=start, devices=args.devices, rate_per_minute=rate, duration_s=args.duration, seed=args.seed,
        prefix=args.prefix, duplicates=args.duplicates, late=args.late, late_delay_s=tuple(args.late_delay),
        out_of_order=args.out_of_order, malformed=args.malformed, oversize=args.oversize,
        clock_skew_s=args.clock_skew, offline=tuple(args.offline),
    )  # fmt: skip


def broker_address(args: argparse.Namespace) -> tuple[str, int]:
    """--host/--port, else the environment, else what `localcloud up` wrote to the env file."""
    written = read_env_file(Settings().env_file)
    host = args.host or os.environ.get("MQTT_HOST") or written.get("MQTT_HOST") or "127.0.0.1"
    port = args.port or os.environ.get("MQTT_PORT") or written.get("MQTT_PORT") or 1883
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from(args, datetime.now(UTC))
    except ValueError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    host, port = broker_address(args)
    simulation = Simulation(options)
    mode = "paced in real time" if args.pace else "as fast as acknowledged"
    print(f"simulating {options.devices} devices to mqtt://{host}:{port}, {mode}", flush=True)
    try:
        report = publish_simulation(
            simulation, host, port, pace=args.pace, window=args.window, jsonl=args.report,
            progress=lambda current: print(current.progress_line(), flush=True), progress_every_s=args.progress_every,
        )  # fmt: skip
    except PublishError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    print(report.summary(), flush=True)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.tools.simulator", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))
