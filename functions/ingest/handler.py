"""Kinesis -> ingest: the event adapter of ingest.service, plus the batch's metrics.

Powertools' BatchProcessor walks the records (in shard order) through `record_handler`, which turns each
into a Source for the service's BatchClassifier and never fails. The batch is then stored once
(service.store_batch). When that write fails (BatchNotStored), every record of the batch is reported in
batchItemFailures: the event source mapping checkpoints before the first one and redelivers the batch.

Environment (ingest.settings, read at each invocation): DATABASE_URL or DB_SECRET_ARN; INGEST_DLQ_URL
(optional: without it rejects go to the table only); INGEST_MAX_AGE_DAYS / INGEST_MAX_FUTURE_HOURS
(timestamp sanity, defaults in common.telemetry); POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE,
LOG_LEVEL.
"""

from __future__ import annotations

import functools
import sys
import time
from binascii import a2b_base64
from datetime import UTC, datetime

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.metrics import add_counts, function_metrics

from ingest.batch import Source, shard_of
from ingest.ports import BatchNotStored
from ingest.postgres import PostgresTelemetryStore
from ingest.service import BatchClassifier, store_batch
from ingest.settings import IngestSettings
from ingest.sqs import SqsRejectQueue

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"ingest"})
metrics = function_metrics()
# All failures are reported as batchItemFailures, also when they are the whole batch: raising instead
# would count as a function error and make the mapping bisect the batch for nothing.
processor = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
# Module level: one connection per execution environment, reused while warm.
database = Database()
store = PostgresTelemetryStore(database)


@functools.lru_cache(maxsize=1)
def reject_queue(url: str) -> SqsRejectQueue:
    """The DLQ's client, reused while warm (rebuilt if the URL changes)."""
    return SqsRejectQueue(url)


def record_handler(record: KinesisStreamRecord, classifier: BatchClassifier) -> None:
    # Straight from the record's dict: the data class's properties cost a microsecond or two a record, a
    # tenth of the budget (base64.b64decode is a thin wrapper over a2b_base64, which validates the same).
    event = record.raw_event
    kinesis = event["kinesis"]
    classifier.add(
        Source(
            shard_id=shard_of(event["eventID"]),
            sequence_number=kinesis["sequenceNumber"],
            raw=a2b_base64(kinesis["data"]),
            arrival_timestamp=kinesis.get("approximateArrivalTimestamp"),
            partition_key=kinesis.get("partitionKey", ""),
        )
    )


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    started = time.perf_counter()
    settings = IngestSettings.from_env()
    classifier = BatchClassifier(datetime.now(UTC), settings.limits)
    handler = functools.partial(record_handler, classifier=classifier)
    with processor(records=event["Records"], handler=handler, lambda_context=context):
        processor.process()
        try:
            stored = store_batch(classifier.batch, store, reject_queue(settings.dlq_url) if settings.dlq_url else None)
        except BatchNotStored:
            logger.exception("batch not stored; every record reported failed for redelivery")
            add_counts(metrics, {"BatchWriteFailures": 1})
            _fail_all(processor)
        else:
            add_counts(metrics, {"Accepted": stored.inserted, "Duplicates": stored.duplicates,
                                 "Rejected": stored.rejected})  # fmt: skip
            if stored.dlq_send_failures:
                add_counts(metrics, {"DlqSendFailures": stored.dlq_send_failures})
            logger.info(
                "batch stored",
                extra={"records": len(processor.records), "inserted": stored.inserted,
                       "duplicates": stored.duplicates, "rejected": stored.rejected},
            )  # fmt: skip
    metrics.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3)
    return processor.response()


def _fail_all(batch_processor: BatchProcessor) -> None:
    """Mark every record failed, through the processor's own failure path (called with the error active)."""
    exc_info = sys.exc_info()
    for record in batch_processor.records:
        batch_processor.failure_handler(KinesisStreamRecord(record), exc_info)
    batch_processor.success_messages.clear()
