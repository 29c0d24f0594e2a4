"""common.db against a real server: the reused connection survives the server dropping it."""

from __future__ import annotations

import psycopg
import pytest
from common import db
from common.db import Database


def terminate_backend(url: str, pid: int) -> None:
    """What a server restart or failover does to an idle connection, done on purpose."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(database_url, monkeypatch):
    database = Database(lambda: database_url)
    with database.transaction() as conn:
        first_pid = conn.info.backend_pid
    terminate_backend(database_url, first_pid)
    monkeypatch.setattr(db, "IDLE_CHECK_S", 0.0)  # the connection counts as idle

    with database.transaction() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.info.backend_pid != first_pid
    database.reset()


def test_a_busy_connection_is_not_checked_and_its_failure_fails_the_transaction(database_url):
    database = Database(lambda: database_url)
    with database.transaction() as conn:
        first_pid = conn.info.backend_pid
    terminate_backend(database_url, first_pid)

    with pytest.raises(psycopg.OperationalError), database.transaction() as conn:
        conn.execute("SELECT 1")
    with database.transaction() as conn:  # the broken connection was discarded: the next one works
        assert conn.info.backend_pid != first_pid
    database.reset()
