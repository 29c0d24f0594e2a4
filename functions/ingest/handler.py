"""Kinesis -> ingest: validate every record, then store the whole batch with one write.

Powertools' BatchProcessor walks the records (in shard order) through `record_handler`, which only
classifies: every record becomes a reading or a reject, never a failure, so a poison record cannot block
the shard. The batch is then written once (ingest.store: readings, rejects, dirty hours, devices and the
ingest_stats counters in one transaction). If that write fails (database down, connection lost, deadlock),
every record of the batch is reported in batchItemFailures: the event source mapping checkpoints before the
first one and redelivers the batch, and the idempotent write stores each reading exactly once.

Records are validated against one clock per batch (a RowParser) and kept as COPY rows, not objects: at
thousands of records a second the per-record microseconds are the handler's cost.

Environment: DATABASE_URL or DB_SECRET_ARN; INGEST_DLQ_URL (optional: without it rejects go to the table
only); INGEST_MAX_AGE_DAYS / INGEST_MAX_FUTURE_HOURS (timestamp sanity, defaults in common.telemetry);
POWERTOOLS_SERVICE_NAME, POWERTOOLS_METRICS_NAMESPACE, LOG_LEVEL.
"""

from __future__ import annotations

import os
import sys
import time
from binascii import a2b_base64
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.telemetry import DEFAULT_LIMITS, Limits, RowParser

from ingest.batch import Batch, Reject, Source, classify, shard_of
from ingest.dlq import RejectQueue
from ingest.store import TelemetryStore

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "iotkpi"))
# All failures are reported as batchItemFailures, also when they are the whole batch: raising instead
# would count as a function error and make the mapping bisect the batch for nothing.
processor = BatchProcessor(event_type=EventType.KinesisDataStreams, raise_on_entire_batch_failure=False)
# Module level: one connection per execution environment, reused while warm.
database = Database()
store = TelemetryStore(database)
_reject_queue: RejectQueue | None = None


def limits_from_env() -> Limits:
    max_age = os.environ.get("INGEST_MAX_AGE_DAYS")
    max_future = os.environ.get("INGEST_MAX_FUTURE_HOURS")
    return Limits(
        max_age=timedelta(days=float(max_age)) if max_age else DEFAULT_LIMITS.max_age,
        max_future=timedelta(hours=float(max_future)) if max_future else DEFAULT_LIMITS.max_future,
    )


LIMITS = limits_from_env()


def reject_queue() -> RejectQueue | None:
    global _reject_queue
    url = os.environ.get("INGEST_DLQ_URL")
    if url and (_reject_queue is None or _reject_queue.url != url):
        _reject_queue = RejectQueue(url)
    return _reject_queue if url else None


def record_handler(record: KinesisStreamRecord, batch: Batch, parser: RowParser) -> None:
    # Straight from the record's dict: the data class's properties cost a microsecond or two a record, a
    # tenth of the budget (base64.b64decode is a thin wrapper over a2b_base64, which validates the same).
    event = record.raw_event
    kinesis = event["kinesis"]
    source = Source(
        shard_id=shard_of(event["eventID"]),
        sequence_number=kinesis["sequenceNumber"],
        raw=a2b_base64(kinesis["data"]),
        arrival_timestamp=kinesis.get("approximateArrivalTimestamp"),
        partition_key=kinesis.get("partitionKey", ""),
    )
    batch.add(classify(source, parser), source)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> PartialItemFailureResponse:
    started = time.perf_counter()
    batch = Batch()
    handler = partial(record_handler, batch=batch, parser=RowParser(datetime.now(UTC), LIMITS))
    with processor(records=event["Records"], handler=handler, lambda_context=context):
        processor.process()
        try:
            result = store.write(batch)
        except psycopg.Error:
            logger.exception("batch not stored; every record reported failed for redelivery")
            metrics.add_metric(name="BatchWriteFailures", unit=MetricUnit.Count, value=1)
            _fail_all(processor)
        else:
            _publish_rejects(result.rejects)
            metrics.add_metric(name="Accepted", unit=MetricUnit.Count, value=result.inserted)
            metrics.add_metric(name="Duplicates", unit=MetricUnit.Count, value=result.duplicates)
            metrics.add_metric(name="Rejected", unit=MetricUnit.Count, value=len(result.rejects))
            logger.info(
                "batch stored",
                extra={"records": len(processor.records), "inserted": result.inserted,
                       "duplicates": result.duplicates, "rejected": len(result.rejects)},
            )  # fmt: skip
    metrics.add_metric(name="BatchLatency", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1e3)
    return processor.response()


def _fail_all(batch_processor: BatchProcessor) -> None:
    """Mark every record failed, through the processor's own failure path (called with the error active)."""
    exc_info = sys.exc_info()
    for record in batch_processor.records:
        batch_processor.failure_handler(KinesisStreamRecord(record), exc_info)
    batch_processor.success_messages.clear()


def _publish_rejects(rejects: list[Reject]) -> None:
    """Copy the rejects, already committed to ingest_rejects, to the DLQ.

    A failed send does not fail the record: the rejects table already holds its raw bytes and reason, and
    failing it would hold back every reading behind it on the shard for as long as SQS is unreachable (a
    reject must never block the shard). The failure is logged and counted (DlqSendFailures) for alarms.
    """
    queue = reject_queue()
    for reject in rejects:
        logger.warning(
            "record rejected",
            extra={"reason": reject.reason, "device_id": reject.device_id,
                   "shard_id": reject.source.shard_id, "sequence_number": reject.source.sequence_number},
        )  # fmt: skip
        if queue is None:
            continue
        try:
            queue.send(reject)
        except Exception:
            logger.exception("reject not sent to the DLQ", extra={"sequence_number": reject.source.sequence_number})
            metrics.add_metric(name="DlqSendFailures", unit=MetricUnit.Count, value=1)
