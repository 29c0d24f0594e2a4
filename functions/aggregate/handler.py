"""Lambda entry point: an EventBridge Scheduled Event runs the incremental aggregate; an event with
{"full_recompute": {"from": ISO-8601, "to": ISO-8601}} (an invocation or a rule's constant input) backfills
that range instead. Returns the run summary."""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database

from aggregate.service import DEFAULT_MAX_CATCHUP_WINDOWS, RunSummary, run_full_recompute, run_incremental

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "iotkpi"))
db = Database()  # reused by warm invocations


def _timestamp(value: Any, name: str) -> datetime:
    ts = datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"full_recompute.{name} needs a time zone offset: {value!r}")
    return ts


def _record(summary: RunSummary) -> None:
    metrics.add_dimension(name="mode", value=summary.mode)
    metrics.add_metric(name="DeviceWindowsWritten", unit=MetricUnit.Count, value=summary.device_windows_written)
    metrics.add_metric(name="FleetWindowsWritten", unit=MetricUnit.Count, value=summary.fleet_windows_written)
    metrics.add_metric(name="DirtyHours", unit=MetricUnit.Count, value=summary.dirty_hours)
    metrics.add_metric(name="Devices", unit=MetricUnit.Count, value=summary.devices)
    metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    backfill = event.get("full_recompute")
    if backfill:
        summary = run_full_recompute(db, _timestamp(backfill.get("from"), "from"), _timestamp(backfill.get("to"), "to"))
    else:
        max_catchup = int(os.environ.get("MAX_CATCHUP_WINDOWS", DEFAULT_MAX_CATCHUP_WINDOWS))
        summary = run_incremental(db, max_catchup_windows=max_catchup)
    _record(summary)
    logger.info("aggregate run", extra=summary.as_dict())
    return summary.as_dict()
