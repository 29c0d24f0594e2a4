"""Lambda entry point: an EventBridge Scheduled Event runs one archive pass (see archive/service.py).

Environment: ARCHIVE_BUCKET (required), ARCHIVE_PREFIX (default telemetry/), RETENTION_DAYS (default 30),
ARCHIVE_PART_MAX_MB (uncompressed MB per part, default 256), ARCHIVE_GZIP_LEVEL (default 6), and the
database variables of common.config. A failure raises: the invocation fails, so Lambda retries and the
error alarm fires; nothing unverified is ever dropped.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from common.db import Database

from archive import layout, parts
from archive.pg_store import PgArchiveDatabase
from archive.s3_store import S3ObjectStore
from archive.service import ArchiveSettings, RunSummary, run_archive

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"archive"})
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "iotkpi"))
db = Database()  # reused by warm invocations
# Leave this much of the invocation's time for a day that is started (export, verify, drop).
MIN_TIME_PER_DAY_S = 120.0


def settings_from_env(environ: dict[str, str] | os._Environ = os.environ) -> ArchiveSettings:
    part_mb = environ.get("ARCHIVE_PART_MAX_MB")
    return ArchiveSettings(
        retention_days=int(environ.get("RETENTION_DAYS", layout.DEFAULT_RETENTION_DAYS)),
        prefix=environ.get("ARCHIVE_PREFIX", layout.DEFAULT_PREFIX),
        part_max_raw_bytes=int(float(part_mb) * 1024 * 1024) if part_mb else parts.DEFAULT_PART_MAX_RAW_BYTES,
        gzip_level=int(environ.get("ARCHIVE_GZIP_LEVEL", parts.DEFAULT_GZIP_LEVEL)),
    )


def _record(summary: RunSummary) -> None:
    metrics.add_metric(name="DaysArchived", unit=MetricUnit.Count, value=len(summary.days_archived))
    metrics.add_metric(name="RowsArchived", unit=MetricUnit.Count, value=summary.rows_archived)
    metrics.add_metric(name="ArchiveRawBytes", unit=MetricUnit.Bytes, value=summary.raw_bytes)
    metrics.add_metric(name="ArchiveStoredBytes", unit=MetricUnit.Bytes, value=summary.stored_bytes)
    metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=summary.duration_ms)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    summary = run_archive(
        PgArchiveDatabase(db),
        S3ObjectStore(os.environ.get("ARCHIVE_BUCKET", "")),
        settings_from_env(),
        datetime.now(UTC),
        time_left_s=lambda: context.get_remaining_time_in_millis() / 1000,
        min_time_per_day_s=MIN_TIME_PER_DAY_S,
    )
    _record(summary)
    logger.info("archive run", extra=summary.as_dict())
    return summary.as_dict()
