"""Lambda entry point: an EventBridge Scheduled Event (any event) runs one alerts pass.

Environment: DATABASE_URL or DB_SECRET_ARN; ALERTS_TOPIC_ARN; thresholds and damping (see alerts.settings:
OFFLINE_AFTER_MINUTES, MIN_UPTIME_PCT, MIN_AVG_RSS_DBM, MIN_BATTERY_PCT, TEMPERATURE_Z_MAX,
TEMPERATURE_MIN_HISTORY, TEMPERATURE_HISTORY_HOURS, TEMPERATURE_MIN_STDDEV_C, OPEN_AFTER_MINUTES,
RESOLVE_AFTER_MINUTES, KPI_MAX_LAG_MINUTES); POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL.

Returns the run summary. Raises when a notification could not be published: the alert state and the
unsent notification are committed and the next run retries, but the invocation shows as failed.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.metrics import function_metrics, record_run

from alerts.service import RunSummary, run
from alerts.settings import AlertSettings
from alerts.sns import SnsPublisher

logger = Logger()
metrics = function_metrics()
db = Database()  # reused by warm invocations


class NotificationDeliveryError(RuntimeError):
    """Some notifications are still unsent after this run; they are retried on the next one."""


@functools.cache
def publisher(topic_arn: str) -> SnsPublisher:
    """One SNS client per topic, reused by warm invocations."""
    return SnsPublisher(topic_arn)


def _record(summary: RunSummary) -> None:
    evaluation, delivery = summary.evaluation, summary.delivery
    counts = {
        "AlertsOpened": sum(evaluation.opened.values()),
        "AlertsResolved": sum(evaluation.resolved.values()),
        "OpenAlerts": evaluation.open_alerts,
        "NotificationsSent": delivery.sent,
        "NotificationsFailed": delivery.failed,
        "NotificationsUnsent": delivery.unsent,
    }
    record_run(metrics, counts, summary.duration_ms)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = AlertSettings.from_env()
    summary = run(db, publisher(settings.topic_arn), settings)
    _record(summary)
    if summary.delivery.failed:
        logger.error("alerts run: notifications not delivered", extra=summary.as_dict())
        raise NotificationDeliveryError(
            f"{summary.delivery.failed} notification(s) failed to publish, {summary.delivery.unsent} unsent; "
            f"first: {summary.delivery.errors[0]}"
        )
    logger.info("alerts run", extra=summary.as_dict())
    return summary.as_dict()
