"""Where the database is: DATABASE_URL (local, dev) or DB_SECRET_ARN (AWS Secrets Manager).

The secret is the JSON that RDS and `aws_secretsmanager_secret_version` store: host, port, username,
password, dbname. Connections to anything but the local machine require TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from psycopg.conninfo import make_conninfo

from common.settings import ConfigError

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
# Secrets Manager is asked again at most this often (seconds); a rotated password is picked up at once when a
# login is refused (common.db asks for the secret again with force_fetch).
SECRET_MAX_AGE_S = 300


def conninfo_from_secret(secret: Mapping[str, Any]) -> str:
    """libpq connection string for a Secrets Manager database secret."""
    missing = [key for key in ("host", "username", "password") if not secret.get(key)]
    if missing:
        raise ConfigError(f"database secret lacks {', '.join(missing)}")
    host = str(secret["host"])
    return make_conninfo(
        host=host,
        port=str(secret.get("port") or 5432),
        user=str(secret["username"]),
        password=str(secret["password"]),
        dbname=str(secret.get("dbname") or "postgres"),
        sslmode="prefer" if host in LOCAL_HOSTS else "require",
    )


def database_conninfo(environ: Mapping[str, str] | None = None, force_fetch: bool = False) -> str:
    """The connection string from the environment; `force_fetch` bypasses the secret cache."""
    env = os.environ if environ is None else environ
    if env.get("DATABASE_URL"):
        return env["DATABASE_URL"]
    if env.get("DB_SECRET_ARN"):
        # Imported here: local runs and tests with DATABASE_URL never need AWS.
        from aws_lambda_powertools.utilities.parameters import get_secret

        secret = get_secret(env["DB_SECRET_ARN"], transform="json", max_age=SECRET_MAX_AGE_S, force_fetch=force_fetch)
        return conninfo_from_secret(secret)
    raise ConfigError("set DATABASE_URL or DB_SECRET_ARN")
