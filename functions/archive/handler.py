"""Lambda entry point: an EventBridge Scheduled Event runs one archive pass (see archive/service.py).

Environment: ARCHIVE_BUCKET (required), ARCHIVE_PREFIX (default telemetry/), RETENTION_DAYS (default 30),
ARCHIVE_PART_MAX_MB (uncompressed MB per part, default 256), ARCHIVE_GZIP_LEVEL (default 6), all read by
archive.settings, and the database variables of common.config. A failure raises: the invocation fails, so
Lambda retries and the error alarm fires; nothing unverified is ever dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database
from common.metrics import function_metrics, record_run

from archive.postgres import PostgresArchiveDatabase
from archive.s3 import S3ObjectStore
from archive.service import RunSummary, run_archive
from archive.settings import ArchiveSettings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"archive"})
metrics = function_metrics()
db = Database()  # reused by warm invocations
# Leave this much of the invocation's time for a day that is started (export, verify, drop).
MIN_TIME_PER_DAY_S = 120.0


def _record(summary: RunSummary) -> None:
    counts = {"DaysArchived": len(summary.days_archived), "RowsArchived": summary.rows_archived}
    sizes = {"ArchiveRawBytes": summary.raw_bytes, "ArchiveStoredBytes": summary.stored_bytes}
    record_run(metrics, counts, summary.duration_ms, sizes)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ArchiveSettings.from_env()
    summary = run_archive(
        PostgresArchiveDatabase(db),
        S3ObjectStore(settings.bucket),
        settings,
        datetime.now(UTC),
        time_left_s=lambda: context.get_remaining_time_in_millis() / 1000,
        min_time_per_day_s=MIN_TIME_PER_DAY_S,
    )
    _record(summary)
    logger.info("archive run", extra=summary.as_dict())
    return summary.as_dict()
