"""The folders of the servers that run as other users (mosquitto, PostgreSQL) against what those users plant
in them: as root, preparing a folder never follows a symlink into a file of ours, and the /var/tmp fallback is
created in one step. The planted entries are what the `mosquitto` or `postgres` user could make there."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.publish as mqtt_publish
import pytest

from localcloud.errors import LocalCloudError
from localcloud.servers.mqtt_broker import MosquittoBroker
from localcloud.servers.postgres import PostgresCluster, PostgresError
from localcloud.servers.procs import free_port
from localcloud.servers.run_as import server_dir
from tests.fixtures.file_modes import chmods_recorded

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the servers run as other users only when we are root")


def owner(path: Path) -> tuple[int, int]:
    """(uid, permission bits), not following a symlink."""
    found = os.lstat(path)
    return found.st_uid, stat.S_IMODE(found.st_mode)


def uid_of(user: str) -> int:
    return pwd.getpwnam(user).pw_uid


def give(path: Path, user: str) -> None:
    account = pwd.getpwnam(user)
    os.lchown(path, account.pw_uid, account.pw_gid)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A file only root may read, which a planted symlink points at."""
    path = tmp_path / "secret"
    path.write_text("root's own\n")
    path.chmod(0o600)
    return path


def assert_untouched(secret: Path) -> None:
    assert owner(secret) == (0, 0o600)
    assert secret.read_text() == "root's own\n"


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the servers' users can reach (pytest's tmp_path has private parents)."""
    folder = Path(tempfile.mkdtemp(prefix="iotkpi-files-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_the_fallback_folder_is_created_private_in_one_step(tmp_path):
    folder = server_dir(tmp_path / "state", "mqtt", pwd.getpwuid(os.geteuid()).pw_name, base=tmp_path)

    assert folder.parent == tmp_path and folder.is_dir() and not folder.is_symlink()
    assert owner(folder) == (os.geteuid(), 0o700)
    assert server_dir(tmp_path / "state", "mqtt", pwd.getpwuid(os.geteuid()).pw_name, base=tmp_path) == folder


def test_a_planted_fallback_symlink_is_refused(tmp_path):
    state, target = tmp_path / "state", tmp_path / "target"
    target.mkdir(mode=0o755)
    folder = server_dir(state, "pg", "nobody", base=tmp_path)
    folder.rmdir()
    folder.symlink_to(target)

    with pytest.raises(LocalCloudError, match="is not ours"):
        server_dir(state, "pg", "nobody", base=tmp_path)
    assert owner(target) == (os.geteuid(), 0o755)


@as_root
def test_a_fallback_folder_made_by_another_user_is_refused_and_the_run_users_is_kept(tmp_path):
    state = tmp_path / "state"
    folder = server_dir(state, "mqtt", "mosquitto", base=tmp_path)
    give(folder, "nobody")
    with pytest.raises(LocalCloudError, match="is not ours"):
        server_dir(state, "mqtt", "mosquitto", base=tmp_path)
    give(folder, "mosquitto")
    assert server_dir(state, "mqtt", "mosquitto", base=tmp_path) == folder


@as_root
def test_the_broker_folder_takes_back_what_its_user_planted(shared_tmp, secret):
    # The layout before: the whole folder belonged to mosquitto, which planted links to root's files where root
    # writes (the config), chowns (the persistence file) or loads code from (the plugin).
    broker_dir = shared_tmp / "mosquitto"
    (broker_dir / "data").mkdir(parents=True)
    (broker_dir / "mosquitto.conf").symlink_to(secret)
    (broker_dir / "data" / "mosquitto.db").symlink_to(secret)
    (broker_dir / "clientid_plugin.so").write_bytes(b"not the plugin we built")
    for path in (broker_dir, broker_dir / "data", *broker_dir.iterdir(), *(broker_dir / "data").iterdir()):
        give(path, "mosquitto")
    broker = MosquittoBroker(broker_dir, port=free_port())

    broker.start()
    try:
        mqtt_publish.single("files/test", b"1", qos=1, hostname=broker.host, port=broker.port)
    finally:
        broker.stop()

    assert_untouched(secret)
    assert owner(broker_dir) == (0, 0o755)
    assert owner(broker_dir / "mosquitto.conf")[0] == 0 and (broker_dir / "mosquitto.conf").is_file()
    assert not (broker_dir / "mosquitto.conf").is_symlink()
    plugin = broker_dir / "clientid_plugin.so"
    assert not plugin.exists() or (owner(plugin)[0] == 0 and plugin.read_bytes() != b"not the plugin we built")
    assert owner(broker_dir / "data") == (uid_of("mosquitto"), 0o700)
    assert (broker_dir / "data" / "mosquitto.db").is_file()  # the broker saved its state there on stop


@as_root
def test_postgres_init_does_not_follow_a_planted_password_link(shared_tmp, secret):
    root = shared_tmp / "pg"
    root.mkdir(mode=0o700)
    (root / "password").symlink_to(secret)
    for path in (root, root / "password"):
        give(path, "postgres")
    cluster = PostgresCluster(root, port=free_port())

    with pytest.raises(PostgresError, match="is not a regular file"):
        cluster.init()
    with pytest.raises(PostgresError, match="must be a regular file"):
        _ = cluster.password  # it would end up in every DATABASE_URL

    assert_untouched(secret)


def test_postgres_password_is_private_from_its_first_byte(shared_tmp):
    cluster = PostgresCluster(shared_tmp / "pg", port=free_port())

    with chmods_recorded() as chmods:
        cluster.init()

    assert owner(cluster.password_file)[1] == 0o600
    assert str(cluster.password_file) not in chmods
    assert len(cluster.password) >= 32
