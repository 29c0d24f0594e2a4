"""The read-only login Grafana uses: a LOGIN role in the `iotkpi_reader` group (SELECT only, migration 001).

Grafana runs whatever SQL a dashboard holds, so it never gets the owner's login. `localcloud up` calls
`ensure_reader_login` after migrating and writes the returned GRAFANA_* settings, which the datasource file
(grafana/provisioning/datasources/iotkpi.yaml) reads, to the env file.
"""

from __future__ import annotations

import secrets

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from localcloud.config import REPO_ROOT

LOGIN = "iotkpi_grafana"


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
