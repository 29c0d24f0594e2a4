"""`make help` lists every target the Makefile declares phony (the user-facing ones)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from localcloud.config import REPO_ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_phony_target():
    makefile = (REPO_ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE).group(1).split())
    help_text = subprocess.run(["make", "-s", "help"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    listed = set(re.findall(r"^make (\S+)", help_text.stdout, re.MULTILINE))
    assert phony
    assert not phony - listed, f"targets missing from `make help`: {sorted(phony - listed)}"
