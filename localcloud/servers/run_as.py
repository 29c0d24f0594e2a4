"""Folders for servers that run as another user (PostgreSQL and mosquitto refuse to run as root).

As root with the state dir under a private folder (a 0700 home, pytest's tmp folder), the unprivileged user
cannot reach it; such a server's folder then lives under /var/tmp instead.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
from pathlib import Path

from localcloud.errors import LocalCloudError


def reachable(user: str, folder: Path) -> bool:
    """Can `user` traverse into `folder`?"""
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(folder)], capture_output=True).returncode == 0


def server_dir(state_dir: Path, kind: str, run_user: str, base: Path = Path("/var/tmp")) -> Path:  # noqa: S108
    """A folder under /var/tmp named after the kind and a hash of the state dir. Anyone can create entries there,
    so it is created here in one step, private (0700, ours: the caller hands it on), or, when it exists, must be a
    real folder (not a symlink) that we or the run user own; nothing is checked first and created later."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:10]
    folder = base / f"iotkpi-{kind}-{digest}"
    try:
        os.mkdir(folder, 0o700)
        return folder
    except FileExistsError:
        found = os.lstat(folder)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid not in {os.geteuid(), pwd.getpwnam(run_user).pw_uid}:
        raise LocalCloudError(
            f"{folder} exists and is not ours: remove it, or move the state dir (LOCALCLOUD_STATE_DIR)"
        )
    return folder


def folder_for(state_dir: Path, preferred: Path, kind: str, run_user: str | None) -> Path:
    """`preferred` when the server's user can reach the state dir (or we run it as ourselves), else /var/tmp."""
    if run_user in {None, "root"} or reachable(run_user, state_dir):
        return preferred
    return server_dir(state_dir, kind, run_user)
