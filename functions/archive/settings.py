"""The archive's settings from the environment (the function's `environment` in stack.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from common.settings import env_float, env_int, env_required, env_str

from archive import layout, parts

MIB = 1024 * 1024


@dataclass(frozen=True)
class ArchiveSettings:
    retention_days: int = layout.DEFAULT_RETENTION_DAYS
    prefix: str = layout.DEFAULT_PREFIX
    part_max_raw_bytes: int = parts.DEFAULT_PART_MAX_RAW_BYTES  # uncompressed CSV per part
    gzip_level: int = parts.DEFAULT_GZIP_LEVEL
    bucket: str | None = None  # where the archive goes (from_env requires it)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ArchiveSettings:
        part_mb = env_float(environ, "ARCHIVE_PART_MAX_MB", parts.DEFAULT_PART_MAX_RAW_BYTES / MIB)
        return cls(
            retention_days=env_int(environ, "RETENTION_DAYS", layout.DEFAULT_RETENTION_DAYS, minimum=1),
            prefix=env_str(environ, "ARCHIVE_PREFIX", layout.DEFAULT_PREFIX),
            part_max_raw_bytes=int(part_mb * MIB),
            gzip_level=env_int(environ, "ARCHIVE_GZIP_LEVEL", parts.DEFAULT_GZIP_LEVEL, minimum=-1, maximum=9),
            bucket=env_required(environ, "ARCHIVE_BUCKET"),
        )
