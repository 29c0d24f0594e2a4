"""Database fixtures shared by the functions' tests: a migrated database whose sessions run in UTC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from common.db import Database
from common.migrations import migrate
from psycopg.conninfo import make_conninfo


@pytest.fixture
def url(database_url: str) -> str:
    migrate(database_url)
    return make_conninfo(database_url, options="-c TimeZone=UTC")


@pytest.fixture
def db(url: str) -> Iterator[Database]:
    database = Database(lambda: url)
    yield database
    database.reset()
