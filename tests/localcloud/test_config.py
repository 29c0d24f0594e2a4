"""The env file holds the database password and the control token: private from its creation."""

from __future__ import annotations

import os
import stat

from localcloud.config import read_env_file, write_env_file
from tests.fixtures.file_modes import chmods_recorded


def test_the_env_file_is_private_from_its_first_byte(tmp_path):
    path = tmp_path / "env"

    with chmods_recorded() as chmods:
        write_env_file(path, {"LOCALCLOUD_CONTROL_TOKEN": "t0ken", "DATABASE_URL": "postgresql://u:pw@h/db"})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [target for target in chmods if target.startswith(str(tmp_path))] == []
    assert read_env_file(path) == {"LOCALCLOUD_CONTROL_TOKEN": "t0ken", "DATABASE_URL": "postgresql://u:pw@h/db"}


def test_rewriting_replaces_the_file_and_leaves_no_temporary_behind(tmp_path):
    path = tmp_path / "env"
    write_env_file(path, {"A": "1"})
    first = path.stat().st_ino

    write_env_file(path, {"A": "2", "B": "it's quoted"})

    assert read_env_file(path) == {"A": "2", "B": "it's quoted"}
    assert path.stat().st_ino != first  # renamed over, never rewritten in place
    assert sorted(os.listdir(tmp_path)) == ["env"]
