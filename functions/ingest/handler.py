"""Kinesis -> ingest: the event adapter of ingest.service, plus the batch's metrics.

The records' bytes (ingest.kinesis) go to the service in one call, which turns each into a reading or a
reject and never fails on a record; the batch is then stored once (service.store_batch). The response is
powertools' partial batch response, with its semantics: a record the handler cannot read is reported
failed on its own; when the write fails (BatchNotStored), every record of the batch is reported, so the
event source mapping checkpoints before the first one and redelivers the batch. Powertools' BatchProcessor
is not used to walk the records: it calls a handler per record and wraps each in a data class, which cost
more than validating the record (see the README's benchmark notes); no record handler here can fail but on
an unreadable record, which ingest.kinesis reports.

Environment (ingest.settings, read at each invocation): DATABASE_URL or DB_SECRET_ARN;
INGEST_REJECTS_QUEUE_URL (optional: without it rejects go to the table only); INGEST_MAX_AGE_DAYS /
INGEST_MAX_FUTURE_HOURS (timestamp sanity, defaults in common.telemetry); POWERTOOLS_SERVICE_NAME,
POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse, PartialItemFailures
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.metrics import add_counts, function_metrics

from ingest.kinesis import KinesisRecords
from ingest.ports import BatchNotStored
from ingest.postgres import PostgresTelemetryStore
from ingest.service import classify_records, store_batch
from ingest.settings import IngestSettings
from ingest.sqs import SqsRejectQueue

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"ingest"})
metrics = function_metrics()
# Module level: one connection per execution environment, reused while warm.
database = Database()
store = PostgresTelemetryStore(database)


@functools.lru_cache(maxsize=1)
def reject_queue(url: str) -> SqsRejectQueue:
    """The rejects queue's client, reused while warm (rebuilt if the URL changes)."""
    return SqsRejectQueue(url)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    started = time.perf_counter()
    settings = IngestSettings.from_env()
    records = KinesisRecords(event["Records"])
    batch = classify_records(records.data, records.partition_keys(), records.source, datetime.now(UTC), settings.limits)
    failed = records.unreadable
    try:
        queue = reject_queue(settings.rejects_queue_url) if settings.rejects_queue_url else None
        stored = store_batch(batch, store, queue)
    except BatchNotStored:
        # All failures are reported as batchItemFailures, also when they are the whole batch: raising instead
        # would count as a function error and make the mapping bisect the batch for nothing.
        logger.exception("batch not stored; every record reported failed for redelivery")
        add_counts(metrics, {"BatchWriteFailures": 1})
        failed = records.sequence_numbers()
    else:
        add_counts(metrics, {"Accepted": stored.inserted, "Duplicates": stored.duplicates,
                             "Rejected": stored.rejected})  # fmt: skip
        if stored.reject_send_failures:
            add_counts(metrics, {"RejectSendFailures": stored.reject_send_failures})
        logger.info(
            "batch stored",
            extra={"records": len(records), "inserted": stored.inserted, "duplicates": stored.duplicates,
                   "rejected": stored.rejected, "unreadable": len(records.unreadable)},
        )  # fmt: skip
    metrics.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3)
    return PartialItemFailureResponse(batchItemFailures=[PartialItemFailures(itemIdentifier=s) for s in failed])
