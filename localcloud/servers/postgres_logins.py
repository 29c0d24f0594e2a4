"""The database logins of the local cloud besides the cluster's superuser, created by `localcloud up` after
migrating.

- Grafana's read-only login: a LOGIN role in the `iotkpi_reader` group (SELECT only, migration 001). Grafana runs
  whatever SQL a dashboard holds, so it never gets the owner's login. `ensure_reader_login` returns the GRAFANA_*
  settings, which the datasource file (grafana/provisioning/datasources/iotkpi.yaml) reads, written to the env file.
- The functions' login, as on AWS a plain login (no superuser, no role or database creation) that owns the
  schema's objects: the ingest creates day partitions of `telemetry` and the archive detaches and drops them
  (or drops TimescaleDB chunks), which PostgreSQL allows only the table's owner. The migrations run as the
  superuser (they create the TimescaleDB extension and the reader group), then `ensure_functions_login` hands
  every table, view and sequence of the schema to this login. `ensure_functions_login` returns the login as the
  Secrets Manager JSON the README tells AWS users to store.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from localcloud.config import REPO_ROOT

LOGIN = "iotkpi_grafana"
FUNCTIONS_LOGIN = "iotkpi_functions"
# The schema's own objects (tables, partitioned tables, views, materialized views, foreign tables, sequences),
# not an extension's, not yet the functions' login's. A sequence that belongs to a column (serial, identity)
# follows its table: PostgreSQL refuses to change its owner on its own.
_OBJECTS_TO_HAND_OVER = """
SELECT c.relkind, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND c.relowner <> (SELECT oid FROM pg_roles WHERE rolname = %(login)s)
  AND NOT EXISTS (
      SELECT 1 FROM pg_depend d
      WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
        AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
ORDER BY c.relname
"""
_ALTER_OWNER = {
    "r": "TABLE",
    "p": "TABLE",
    "f": "FOREIGN TABLE",
    "v": "VIEW",
    "m": "MATERIALIZED VIEW",
    "S": "SEQUENCE",
}


def ensure_reader_login(database_url: str, password: str | None = None) -> dict[str, str]:
    """Create (or re-password) the login; return the GRAFANA_* settings. Raises psycopg.Error when the
    connecting role may not manage roles (an external DATABASE_URL)."""
    password = password or secrets.token_urlsafe(18)
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOGIN,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        # Utility statements take no bind parameters: the password goes in as a quoted literal.
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(LOGIN), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT iotkpi_reader TO {}").format(sql.Identifier(LOGIN)))
    target = conninfo_to_dict(database_url)
    return {
        "GRAFANA_DB_HOST": f"{target.get('host', '127.0.0.1')}:{target.get('port', '5432')}",
        "GRAFANA_DB_NAME": str(target.get("dbname", "")),
        "GRAFANA_DB_USER": LOGIN,
        "GRAFANA_DB_PASSWORD": password,
        "GRAFANA_DB_SSLMODE": "disable",  # 127.0.0.1 only; see the datasource file for production endpoints
        "GRAFANA_DASHBOARDS_DIR": str(REPO_ROOT / "grafana" / "dashboards"),
    }


def ensure_functions_login(database_url: str, password: str | None = None) -> dict[str, str | int]:
    """Create (or re-password) the functions' login, make it the owner of the schema's objects; return the
    database secret (host, port, username, password, dbname). Raises psycopg.Error when the connecting role may
    not manage roles (an external DATABASE_URL)."""
    password = password or secrets.token_urlsafe(24)
    login = sql.Identifier(FUNCTIONS_LOGIN)
    with psycopg.connect(database_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (FUNCTIONS_LOGIN,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        attributes = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        conn.execute(sql.SQL(verb + " ROLE {} " + attributes + " PASSWORD {}").format(login, sql.Literal(password)))
        dbname = conn.info.dbname
        with conn.transaction():
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(dbname), login))
            # CREATE: a day partition is a new table in the schema.
            conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(login))
            for kind, name in conn.execute(_OBJECTS_TO_HAND_OVER, {"login": FUNCTIONS_LOGIN}).fetchall():
                statement = sql.SQL("ALTER {} {} OWNER TO {}").format(
                    sql.SQL(_ALTER_OWNER[kind]), sql.Identifier("public", name), login
                )
                conn.execute(statement)
    target = conninfo_to_dict(database_url)
    return {
        "host": str(target.get("host") or "127.0.0.1"),
        "port": int(target.get("port") or 5432),
        "username": FUNCTIONS_LOGIN,
        "password": password,
        "dbname": dbname,
    }
