"""One PostgreSQL connection per Lambda execution environment, reused across warm invocations.

A transaction that fails because the connection is unusable (server restarted, network cut) closes it;
the next transaction connects again, re-reading the configuration (and the secret) so that a failover is picked
up. A login refused for its password means the secret was rotated since it was cached: the secret is fetched
again at once (`conninfo(force_fetch=True)`) and the login tried once more, rather than failing every
invocation until the cache expires.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator

import psycopg

from common.config import database_conninfo

CONNECT_TIMEOUT_S = 10
# A connection idle longer than this is checked (one round trip) before it is used again: a server restart
# or failover while the environment was frozen would otherwise fail the first transaction after it (a
# scheduled run, then retried). Busy connections (the ingest's) are not checked: their failures retry anyway.
IDLE_CHECK_S = 30.0
# libpq reports a refused password as text only (no SQLSTATE before the session exists).
_PASSWORD_REFUSED = re.compile(r"password authentication failed")


class Database:
    def __init__(self, conninfo: Callable[..., str] = database_conninfo) -> None:
        """`conninfo()` gives the connection string; `conninfo(force_fetch=True)` one from a freshly read secret."""
        self._conninfo = conninfo
        self._connection: psycopg.Connection | None = None
        self._last_used = 0.0

    def connection(self) -> psycopg.Connection:
        """The open connection, or a new one when there is none or it is no longer usable."""
        conn = self._connection
        if conn is not None and not (conn.closed or conn.broken) and time.monotonic() - self._last_used > IDLE_CHECK_S:
            try:
                conn.execute("SELECT 1")
                conn.rollback()  # leave no transaction open: callers may still switch autocommit
            except psycopg.OperationalError:
                self.reset()
                conn = None
        if conn is None or conn.closed or conn.broken:
            self.reset()
            conn = self._connect()
            self._connection = conn
        return conn

    def _connect(self) -> psycopg.Connection:
        try:
            return _open(self._conninfo())
        except psycopg.OperationalError as exc:
            if not _PASSWORD_REFUSED.search(str(exc)):
                raise
        return _open(self._conninfo(force_fetch=True))  # refused again: the caller's error

    def reset(self) -> None:
        """Drop the connection; the next transaction connects again."""
        conn, self._connection = self._connection, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """Commit on success, roll back on error; an error that broke the connection discards it."""
        conn = self.connection()
        try:
            yield conn
            conn.commit()
            self._last_used = time.monotonic()
        except BaseException as exc:
            if isinstance(exc, psycopg.OperationalError) or not _rolled_back(conn):
                self.reset()
            raise


def _open(conninfo: str) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=False, connect_timeout=CONNECT_TIMEOUT_S, application_name="iotkpi")


def _rolled_back(conn: psycopg.Connection) -> bool:
    if conn.broken or conn.closed:
        return False
    try:
        conn.rollback()
    except psycopg.Error:
        return False
    return True
