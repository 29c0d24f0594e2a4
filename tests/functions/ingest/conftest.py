"""The ingest handler's database: migrated, named in DATABASE_URL, and the handler's warm connection reset."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from common.migrations import migrate
from ingest import handler


@pytest.fixture
def ingest_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    migrate(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.delenv("INGEST_REJECTS_QUEUE_URL", raising=False)
    handler.database.reset()  # the module's warm connection belongs to the previous test's database
    yield database_url
    handler.database.reset()
