"""The AWS database path: DB_SECRET_ARN → Secrets Manager (the moto server over HTTP, the same API) → a real
PostgreSQL login. The README's JSON shape, TLS for every host but the local one, the secret cache, and a rotated
password picked up at the next login instead of after the cache's expiry."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from aws_lambda_powertools.utilities.parameters.base import DEFAULT_PROVIDERS
from common import config
from common.config import conninfo_from_secret, database_conninfo
from common.db import Database
from common.settings import ConfigError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict


class Login:
    """A LOGIN role of the test's own in the test database, and the secret that describes it."""

    def __init__(self, admin_url: str, secretsmanager) -> None:
        self.admin_url, self.secretsmanager = admin_url, secretsmanager
        self.name = f"fn_{uuid.uuid4().hex[:10]}"
        self.password = secrets.token_urlsafe(12)
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(self.name), sql.Literal(self.password)))  # fmt: skip
        target = conninfo_to_dict(admin_url)
        self.document = {"host": target["host"], "port": int(target["port"]), "username": self.name,
                         "password": self.password, "dbname": target["dbname"]}  # fmt: skip
        created = secretsmanager.create_secret(Name=f"db-{self.name}", SecretString=json.dumps(self.document))
        self.arn = created["ARN"]

    def rotate(self, *, in_the_secret: bool = True) -> None:
        """A new password for the role (and, as rotation does, in the secret)."""
        self.password = secrets.token_urlsafe(12)
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.name), sql.Literal(self.password))
            )
        if in_the_secret:
            self.document = {**self.document, "password": self.password}
            self.secretsmanager.put_secret_value(SecretId=self.arn, SecretString=json.dumps(self.document))

    def sessions(self) -> list[int]:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            found = conn.execute("SELECT pid FROM pg_stat_activity WHERE usename = %s", (self.name,)).fetchall()
        return [pid for (pid,) in found]

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (self.name,))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(self.name)))


@pytest.fixture
def login(database_url: str, aws_env, monkeypatch) -> Iterator[Login]:
    """The function's environment as on AWS: DB_SECRET_ARN and no DATABASE_URL; powertools' provider made afresh
    against the endpoint (its client outlives a test otherwise)."""
    monkeypatch.delitem(DEFAULT_PROVIDERS, "secrets", raising=False)
    made = Login(database_url, aws_env.client("secretsmanager"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DB_SECRET_ARN", made.arn)
    yield made
    made.drop()


def test_the_secret_from_the_endpoint_connects_as_its_login(login: Login):
    conninfo = database_conninfo()
    assert conninfo_to_dict(conninfo)["sslmode"] == "prefer"  # 127.0.0.1: no TLS on the local cluster
    with psycopg.connect(conninfo) as conn:
        assert conn.execute("SELECT current_user, current_database()").fetchone() == (
            login.name, login.document["dbname"],
        )  # fmt: skip


def test_any_other_host_requires_tls_and_a_secret_without_a_key_names_it():
    remote = {"host": "db.example.com", "port": 5432, "username": "u", "password": "p", "dbname": "d"}
    assert conninfo_to_dict(conninfo_from_secret(remote))["sslmode"] == "require"
    with pytest.raises(ConfigError, match="lacks username, password"):
        conninfo_from_secret({"host": "db.example.com"})


def test_the_secret_is_cached_and_force_fetch_reads_it_again(login: Login):
    first = database_conninfo()
    login.rotate()
    assert database_conninfo() == first  # within SECRET_MAX_AGE_S: Secrets Manager is not asked again
    assert conninfo_to_dict(database_conninfo(force_fetch=True))["password"] == login.password
    assert config.SECRET_MAX_AGE_S >= 60  # the cache is what keeps Secrets Manager calls cheap


@pytest.mark.usefixtures("passwords_checked")
def test_after_a_refused_login_the_function_fetches_the_secret_again(login: Login):
    database = Database()
    with database.transaction() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (login.name,)
    login.rotate()
    database.reset()  # the next invocation needs a new connection (an expired one, a new environment)
    assert conninfo_to_dict(database_conninfo())["password"] != login.password  # the cache still holds the old one

    with database.transaction() as conn:  # refused with the cached password, then the fresh secret's
        assert conn.execute("SELECT current_user").fetchone() == (login.name,)
    assert conninfo_to_dict(database_conninfo())["password"] == login.password
    database.reset()


@pytest.mark.usefixtures("passwords_checked")
def test_a_password_the_secret_does_not_have_fails_after_one_fresh_look(login: Login):
    database = Database()
    login.rotate(in_the_secret=False)  # the role changed, the secret did not: nothing to pick up
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        database.connection()
    assert login.sessions() == []


def test_other_connection_failures_are_not_retried(monkeypatch):
    calls = []

    def conninfo(force_fetch: bool = False) -> str:
        calls.append(force_fetch)
        return "host=127.0.0.1 port=1 dbname=x user=x password=x connect_timeout=2"  # nothing listens

    with pytest.raises(psycopg.OperationalError):
        Database(conninfo).connection()
    assert calls == [False]
