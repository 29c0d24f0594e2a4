"""`localcloud demo`: the first five minutes with the project, on a local cloud that `localcloud up` started.

A small simulated fleet (`demo-0001`...) sends an hour of history at once and then keeps sending in real time
(a detached simulator that `localcloud down` stops); one device goes silent 25 minutes before now. The demo
waits until the pipeline has ingested the history, runs the aggregate and the alerts schedules, and shows what
came out: rows, rejects, KPI windows, the SNS notifications (read back from a queue subscribed to the alerts
topic) and the fleet's KPI table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from localcloud.config import REPO_ROOT, Settings, aws_session, read_env_file
from localcloud.errors import LocalCloudError
from localcloud.lifecycle.components import SIMULATOR, registry_for
from localcloud.progress import step
from localcloud.runtime.client import fire_schedule, runtime_request
from localcloud.tools.kpi_report import fleet_summary

PREFIX = "demo-"
HISTORY = timedelta(minutes=65)
SILENT_AT_MINUTE = 40  # of the history: the silent device has been quiet for 25 minutes, past the 15-minute rule
INBOX_QUEUE = "alerts-inbox"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=10, help="fleet size (default 10)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for the history to be ingested")


def simulator_argv(devices: int, start: datetime) -> list[str]:
    live_s = 7 * 24 * 3600  # a week of real time after the history; `localcloud down` ends it sooner
    return [
        sys.executable, "-m", "localcloud.tools.simulator", "--devices", str(devices), "--prefix", PREFIX, "--seed", "1",
        "--rate", "6", "--start", start.isoformat(), "--duration", str(int(HISTORY.total_seconds()) + live_s),
        "--duplicates", "0.01", "--late", "0.01", "--malformed", "0.005",
        "--offline", f"1:{live_s // 60 + 60}@{SILENT_AT_MINUTE}", "--progress-every", "60",
    ]  # fmt: skip


def run_demo(settings: Settings, args: argparse.Namespace) -> None:
    if not settings.env_file.exists():
        raise LocalCloudError("the local cloud is not up: run `localcloud up` (or `make local-up`) first")
    env = read_env_file(settings.env_file)
    registry = registry_for(settings)
    inbox = AlertsInbox(env)
    if registry.pid(SIMULATOR) is None:
        start = datetime.now(UTC).replace(microsecond=0) - HISTORY
        argv = simulator_argv(args.devices, start)
        pid = registry.start(SIMULATOR, argv, env={**os.environ, **env}, cwd=REPO_ROOT)
        step(f"simulator started (pid {pid}): {args.devices} devices, an hour of history, then live; "
             f"log {registry.log_file(SIMULATOR)}")  # fmt: skip
    else:
        step(f"simulator already running (pid {registry.pid(SIMULATOR)})")
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        wait_for_history(settings, conn, args.timeout)
        aggregate = fire(settings, env["AGGREGATE_SCHEDULE_NAME"])
        step(f"aggregate: {aggregate.get('device_windows_written', 0)} device KPI windows and "
             f"{aggregate.get('fleet_windows_written', 0)} fleet windows written")  # fmt: skip
        alerts = fire(settings, env["ALERTS_SCHEDULE_NAME"])
        step(f"alerts: {json.dumps(alerts)}")
    for subject in inbox.subjects(wait_s=10):
        step(f"SNS notification: {subject}")
    print()
    print(fleet_summary(env["DATABASE_URL"], prefix=PREFIX))
    print("\nnext: `localcloud kpis` (the table again), `localcloud status`, Grafana (README), `make local-down`")


def wait_for_history(settings: Settings, conn: psycopg.Connection, timeout: float) -> None:
    """Until readings up to the present are stored and every shard's poller has caught up."""
    deadline = time.monotonic() + timeout
    while True:
        stored, rejected, newest = conn.execute(
            "SELECT (SELECT count(*) FROM telemetry WHERE device_id LIKE %(p)s),"
            " (SELECT count(*) FROM ingest_rejects WHERE device_id LIKE %(p)s),"
            " (SELECT max(last_seen) FROM devices WHERE device_id LIKE %(p)s)",
            {"p": PREFIX + "%"},
        ).fetchone()
        mappings = runtime_request(settings, "GET", "/status", timeout=10).json()["event_source_mappings"]
        behind = sum(row["records_behind"] or 0 for row in mappings)
        step(f"ingested {stored:,} readings, {rejected} rejected; {behind} records in flight")
        if newest is not None and newest > datetime.now(UTC) - timedelta(minutes=1) and behind == 0:
            return
        if time.monotonic() > deadline:
            raise LocalCloudError(f"the history was not ingested within {timeout:.0f}s; see `localcloud status`")
        time.sleep(3)


def fire(settings: Settings, schedule: str) -> dict[str, Any]:
    result = fire_schedule(settings, schedule)
    if not result["ok"]:
        raise LocalCloudError(f"{schedule} failed: {result['error']}\n{result['log_tail']}")
    return result["payload"]


class AlertsInbox:
    """An SQS queue subscribed to the alerts topic, so the demo can show the notifications SNS sent."""

    def __init__(self, env: dict[str, str]) -> None:
        session = aws_session(env["AWS_REGION"])
        self.sqs = session.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL"])
        sns = session.client("sns", endpoint_url=env["AWS_ENDPOINT_URL"])
        topic = env["ALERTS_TOPIC_ARN"]
        self.url = self.sqs.create_queue(QueueName=f"{topic.rsplit(':', 1)[-1]}-{INBOX_QUEUE}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "false"})

    def subjects(self, wait_s: float) -> list[str]:
        found: list[str] = []
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            for message in messages.get("Messages", []):
                found.append(json.loads(message["Body"]).get("Subject") or "(no subject)")
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
            if found and not messages.get("Messages"):
                break
        return found
