"""The ingest's settings from the environment (the function's `environment` in stack.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from common.settings import env_float, env_str
from common.telemetry import DEFAULT_LIMITS, Limits

DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@dataclass(frozen=True)
class IngestSettings:
    limits: Limits = DEFAULT_LIMITS  # timestamp sanity: how old or how far ahead a reading may be
    rejects_queue_url: str | None = None  # the rejects' SQS queue; without it rejects go to the table only

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> IngestSettings:
        max_age_days = env_float(environ, "INGEST_MAX_AGE_DAYS", DEFAULT_LIMITS.max_age / DAY, minimum=0)
        max_future_hours = env_float(environ, "INGEST_MAX_FUTURE_HOURS", DEFAULT_LIMITS.max_future / HOUR, minimum=0)
        return cls(
            limits=Limits(max_age=max_age_days * DAY, max_future=max_future_hours * HOUR),
            rejects_queue_url=env_str(environ, "INGEST_REJECTS_QUEUE_URL") or None,
        )
