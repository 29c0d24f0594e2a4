"""Lambda entry point: an EventBridge Scheduled Event runs the incremental aggregate; an event with
{"full_recompute": {"from": ISO-8601, "to": ISO-8601}} (an invocation or a rule's constant input) backfills
that range instead. Returns the run summary.

Environment: DATABASE_URL or DB_SECRET_ARN; MAX_CATCHUP_WINDOWS (aggregate.settings); POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.metrics import function_metrics, record_run

from aggregate.service import RunSummary, run_full_recompute, run_incremental
from aggregate.settings import AggregateSettings

logger = Logger()
metrics = function_metrics()
db = Database()  # reused by warm invocations


def _timestamp(value: Any, name: str) -> datetime:
    ts = datetime.fromisoformat(str(value))
    if ts.tzinfo is None:
        raise ValueError(f"full_recompute.{name} needs a time zone offset: {value!r}")
    return ts


def _record(summary: RunSummary) -> None:
    metrics.add_dimension(name="mode", value=summary.mode)
    counts = {
        "DeviceWindowsWritten": summary.device_windows_written,
        "FleetWindowsWritten": summary.fleet_windows_written,
        "DirtyHours": summary.dirty_hours,
        "Devices": summary.devices,
    }
    record_run(metrics, counts, summary.duration_ms)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = AggregateSettings.from_env()
    backfill = event.get("full_recompute")
    if backfill:
        summary = run_full_recompute(db, _timestamp(backfill.get("from"), "from"), _timestamp(backfill.get("to"), "to"))
    else:
        summary = run_incremental(db, max_catchup_windows=settings.max_catchup_windows)
    _record(summary)
    logger.info("aggregate run", extra=summary.as_dict())
    return summary.as_dict()
