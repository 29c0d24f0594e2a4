"""Lambda entry point: an EventBridge Scheduled Event (any event) runs one alerts pass.

Environment: DATABASE_URL or DB_SECRET_ARN; ALERTS_TOPIC_ARN; thresholds and damping (see alerts.config:
OFFLINE_AFTER_MINUTES, MIN_UPTIME_PCT, MIN_AVG_RSS_DBM, MIN_BATTERY_PCT, TEMPERATURE_Z_MAX,
TEMPERATURE_MIN_HISTORY, TEMPERATURE_HISTORY_HOURS, TEMPERATURE_MIN_STDDEV_C, OPEN_AFTER_MINUTES,
RESOLVE_AFTER_MINUTES, KPI_MAX_LAG_MINUTES); POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL.

Returns the run summary. Raises when a notification could not be published: the alert state and the
unsent notification are committed and the next run retries, but the invocation shows as failed.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database

from alerts.config import AlertSettings
from alerts.publisher import SnsPublisher
from alerts.service import RunSummary, run

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "iotkpi"))
db = Database()  # reused by warm invocations
SETTINGS = AlertSettings.from_env(os.environ)
_publishers: dict[str, SnsPublisher] = {}


class NotificationDeliveryError(RuntimeError):
    """Some notifications are still unsent after this run; they are retried on the next one."""


def publisher() -> SnsPublisher:
    topic_arn = os.environ["ALERTS_TOPIC_ARN"]
    if topic_arn not in _publishers:
        _publishers[topic_arn] = SnsPublisher(topic_arn)
    return _publishers[topic_arn]


def _record(summary: RunSummary) -> None:
    evaluation, delivery = summary.evaluation, summary.delivery
    metrics.add_metric(name="AlertsOpened", unit=MetricUnit.Count, value=sum(evaluation.opened.values()))
    metrics.add_metric(name="AlertsResolved", unit=MetricUnit.Count, value=sum(evaluation.resolved.values()))
    metrics.add_metric(name="OpenAlerts", unit=MetricUnit.Count, value=evaluation.open_alerts)
    metrics.add_metric(name="NotificationsSent", unit=MetricUnit.Count, value=delivery.sent)
    metrics.add_metric(name="NotificationsFailed", unit=MetricUnit.Count, value=delivery.failed)
    metrics.add_metric(name="NotificationsUnsent", unit=MetricUnit.Count, value=delivery.unsent)
    metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = run(db, publisher(), SETTINGS)
    _record(summary)
    if summary.delivery.failed:
        logger.error("alerts run: notifications not delivered", extra=summary.as_dict())
        raise NotificationDeliveryError(
            f"{summary.delivery.failed} notification(s) failed to publish, {summary.delivery.unsent} unsent; "
            f"first: {summary.delivery.errors[0]}"
        )
    logger.info("alerts run", extra=summary.as_dict())
    return summary.as_dict()
