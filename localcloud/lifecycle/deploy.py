"""Deploying `infrastructure/stack.yaml` to the endpoint, on `up` and on `localcloud deploy`: with the boto3 deployer
(localcloud.stack.deploy) or with `terraform apply` of the module (localcloud.lifecycle.terraform).

Either way the functions reach the database as on AWS: DB_SECRET_ARN names the secret `<project>-database` on the
endpoint, holding the functions' own login (not a superuser) as the README tells AWS users to store it.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from localcloud.config import Settings, aws_session, read_env_file, write_env_file
from localcloud.errors import LocalCloudError
from localcloud.lifecycle import terraform
from localcloud.lifecycle.components import external_database_url
from localcloud.progress import step
from localcloud.runtime.client import runtime_request
from localcloud.servers.postgres_logins import FUNCTIONS_LOGIN, ensure_functions_login
from localcloud.servers.procs import port_open
from localcloud.stack.deploy import DATABASE_SECRET_NAME_SUFFIX, deploy_stack
from localcloud.stack.model import Stack, load_stack

BOTO3, TERRAFORM = "boto3", "terraform"
DEPLOYERS = (BOTO3, TERRAFORM)
DEPLOY_ENV = "LOCALCLOUD_DEPLOY"  # how `up` deploys by default; the env file records how it did


def check_deployer(deploy_with: str) -> None:
    if deploy_with not in DEPLOYERS:
        raise LocalCloudError(f"unknown deployer {deploy_with!r} ({DEPLOY_ENV}?): use one of {', '.join(DEPLOYERS)}")


def deploy(settings: Settings, database_url: str, deploy_with: str) -> dict[str, str]:
    """Deploy the stack file; return its outputs (env-file variables)."""
    check_deployer(deploy_with)
    stack = load_stack(settings.stack_file)
    secret = database_secret(settings, stack, database_url)
    step(f"deploying {settings.stack_file} to {settings.endpoint_url} with {deploy_with}")
    if deploy_with == TERRAFORM:
        outputs = terraform.apply(settings, stack, secret, progress=lambda s: step(f"  {s}"))
    else:
        outputs = deploy_stack(
            stack, settings.endpoint_url, settings.region, database_secret=secret, progress=lambda s: step(f"  {s}")
        )
    return {**outputs, DEPLOY_ENV: deploy_with}


def database_secret(settings: Settings, stack: Stack, database_url: str) -> dict[str, Any]:
    """The functions' login as the secret's JSON: the login keeps the password the endpoint's secret already holds
    (a redeploy changes nothing), else gets a new one. With an external DATABASE_URL whose role may not create
    roles, the functions use that URL's login, said so."""
    current = _current_secret(settings, stack)
    password = current.get("password") if current.get("username") == FUNCTIONS_LOGIN else None
    try:
        secret = ensure_functions_login(database_url, password)
    except psycopg.Error as exc:
        step(f"database: no login of its own for the functions ({type(exc).__name__}: {exc}); they use DATABASE_URL's")
        target = conninfo_to_dict(database_url)
        return {
            "host": str(target.get("host") or "127.0.0.1"),
            "port": int(target.get("port") or 5432),
            "username": str(target.get("user") or ""),
            "password": str(target.get("password") or ""),
            "dbname": str(target.get("dbname") or ""),
        }
    step(f"database: the functions log in as {FUNCTIONS_LOGIN} (owner of the schema's objects, not a superuser)")
    return secret


def _current_secret(settings: Settings, stack: Stack) -> dict[str, Any]:
    secrets = aws_session(settings.region).client("secretsmanager", endpoint_url=settings.endpoint_url)
    try:
        value = secrets.get_secret_value(SecretId=stack.resource_name(DATABASE_SECRET_NAME_SUFFIX))
    except (secrets.exceptions.ResourceNotFoundException, secrets.exceptions.InvalidRequestException):
        return {}  # none yet, or scheduled for deletion
    try:
        return json.loads(value.get("SecretString") or "{}")
    except ValueError:
        return {}


def redeploy(settings: Settings, deploy_with: str | None = None) -> None:
    """Deploy again after an edit of the stack file, as `up` deployed unless told otherwise; a running runtime
    re-reads rules and schedules."""
    saved = read_env_file(settings.env_file)
    database_url = external_database_url(settings) or saved.get("DATABASE_URL", "")
    if not database_url:
        raise LocalCloudError("no DATABASE_URL: run `localcloud up` first (or set DATABASE_URL)")
    outputs = deploy(settings, database_url, deploy_with or saved.get(DEPLOY_ENV) or BOTO3)
    if port_open("127.0.0.1", settings.control_port):
        runtime_request(settings, "POST", "/reload", timeout=30)
    write_env_file(settings.env_file, {**saved, **outputs})
    step(f"deployed; outputs written to {settings.env_file}")
