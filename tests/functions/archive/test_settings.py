"""ArchiveSettings.from_env: the bucket is required, everything else has the documented default."""

import pytest
from archive import layout, parts
from archive.settings import ArchiveSettings
from common.settings import ConfigError

BUCKET = {"ARCHIVE_BUCKET": "iotkpi-archive"}


def test_defaults_with_only_the_bucket():
    assert ArchiveSettings.from_env(BUCKET) == ArchiveSettings(
        retention_days=layout.DEFAULT_RETENTION_DAYS,
        prefix=layout.DEFAULT_PREFIX,
        part_max_raw_bytes=parts.DEFAULT_PART_MAX_RAW_BYTES,
        gzip_level=parts.DEFAULT_GZIP_LEVEL,
        bucket="iotkpi-archive",
    )


def test_settings_from_the_environment():
    settings = ArchiveSettings.from_env(
        {**BUCKET, "RETENTION_DAYS": "7", "ARCHIVE_PREFIX": "", "ARCHIVE_PART_MAX_MB": "0.5", "ARCHIVE_GZIP_LEVEL": "9"}
    )
    assert (settings.retention_days, settings.prefix, settings.gzip_level) == (7, "", 9)
    assert settings.part_max_raw_bytes == 512 * 1024


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({}, "ARCHIVE_BUCKET"),
        ({**BUCKET, "RETENTION_DAYS": "0"}, "RETENTION_DAYS"),
        ({**BUCKET, "ARCHIVE_GZIP_LEVEL": "10"}, "ARCHIVE_GZIP_LEVEL"),
        ({**BUCKET, "ARCHIVE_PART_MAX_MB": "lots"}, "ARCHIVE_PART_MAX_MB"),
    ],
)
def test_a_bad_or_missing_value_is_refused_by_name(environ, name):
    with pytest.raises(ConfigError, match=name):
        ArchiveSettings.from_env(environ)
