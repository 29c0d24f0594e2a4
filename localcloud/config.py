"""Settings of the local cloud, all from environment variables with documented defaults.

`localcloud up` writes the resolved values to one shell-sourceable file (`.local/env` by default) so
psql, awslocal, mosquitto_pub and pytest can all use them.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import boto3

REPO_ROOT = Path(__file__).resolve().parent.parent
# The functions' code root, as a Lambda zip's root is: handlers import `ingest.handler`, `common.db`, ...
FUNCTIONS_DIR = REPO_ROOT / "functions"
STACK_FILE = REPO_ROOT / "infrastructure" / "stack.yaml"


CONTROL_TOKEN_ENV = "LOCALCLOUD_CONTROL_TOKEN"  # noqa: S105 (the variable's name, not a token)
SECRET_ENV = frozenset({CONTROL_TOKEN_ENV, "DATABASE_URL", "PGPASSWORD", "GRAFANA_DB_PASSWORD"})


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "")
    return value if value else default


@dataclass(frozen=True)
class Settings:
    """Where everything lives. Defaults suit one developer machine; every value can be overridden."""

    state_dir: Path = field(default_factory=lambda: Path(_env("LOCALCLOUD_STATE_DIR", str(REPO_ROOT / ".local"))))
    region: str = field(default_factory=lambda: _env("AWS_REGION", _env("AWS_DEFAULT_REGION", "us-east-1")))
    moto_host: str = "127.0.0.1"
    moto_port: int = field(default_factory=lambda: int(_env("LOCALCLOUD_MOTO_PORT", "4566")))
    # Set AWS_ENDPOINT_URL to another endpoint (LocalStack, ...) to skip the moto launcher.
    external_endpoint: str = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL", ""))
    # Set DATABASE_URL to use an existing PostgreSQL/TimescaleDB instead of the private cluster.
    external_database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))
    mqtt_host: str = field(default_factory=lambda: _env("MQTT_HOST", "127.0.0.1"))
    mqtt_port: int = field(default_factory=lambda: int(_env("MQTT_PORT", "1883")))
    control_port: int = field(default_factory=lambda: int(_env("LOCALCLOUD_CONTROL_PORT", "4567")))
    stack_file: Path = field(default_factory=lambda: Path(_env("LOCALCLOUD_STACK_FILE", str(STACK_FILE))))

    @property
    def moto_endpoint(self) -> str:
        return f"http://{self.moto_host}:{self.moto_port}"

    @property
    def uses_external_endpoint(self) -> bool:
        """True when AWS_ENDPOINT_URL names an endpoint other than the one we launch ourselves."""
        return bool(self.external_endpoint) and self.external_endpoint.rstrip("/") != self.moto_endpoint

    @property
    def endpoint_url(self) -> str:
        return self.external_endpoint if self.uses_external_endpoint else self.moto_endpoint

    @property
    def env_file(self) -> Path:
        return self.state_dir / "env"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"


def aws_client_env(endpoint_url: str, region: str) -> dict[str, str]:
    """The variables every AWS SDK/CLI needs to talk to a local endpoint (dummy credentials)."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        # awslocal / localstack_client read these.
        "LOCALSTACK_HOST": endpoint_url.split("://", 1)[-1],
        "EDGE_PORT": endpoint_url.rsplit(":", 1)[-1].rstrip("/"),
    }


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write `export KEY='value'` lines atomically, readable only by the owner (it holds a DB password and the
    control token): the file is 0600 from its creation (mkstemp: O_EXCL, a fresh name), then renamed over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"export {key}={shlex.quote(str(value))}" for key, value in sorted(values.items())]
    text = "# written by `localcloud up`; source it: . .local/env\n" + "\n".join(lines) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, raw = line[len("export ") :].split("=", 1)
            values[key] = shlex.split(raw)[0] if raw else ""
    return values


def control_token(settings: Settings) -> str:
    """The bearer token of the runtime's control API: the one `up` keeps in the env file, else the environment's
    (the file wins: a shell may still export the token of an earlier state dir); "" when there is none."""
    try:
        from_file = read_env_file(settings.env_file).get(CONTROL_TOKEN_ENV, "")
    except PermissionError:  # another user's local cloud
        from_file = ""
    return from_file or os.environ.get(CONTROL_TOKEN_ENV, "")


def without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` minus the variables that hold secrets (a shell that sourced the env file exports them): for
    servers that need none of them, such as PostgreSQL and mosquitto, which run as other users."""
    return {key: value for key, value in environ.items() if key not in SECRET_ENV}


def import_functions() -> None:
    """Let this process import the functions' packages (`common`, `archive`, ...) as Lambda does."""
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))


def aws_session(region: str) -> boto3.session.Session:
    """A boto3 session; dummy credentials when none are configured (local endpoints accept any)."""
    import boto3  # here: most commands that read the settings never talk to AWS

    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        session = boto3.session.Session(region_name=region, aws_access_key_id="test", aws_secret_access_key="test")  # noqa: S106
    return session
