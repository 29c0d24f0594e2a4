"""`terraform apply` and `terraform destroy` of infrastructure/terraform on the local cloud, wall time.

A fresh local cloud is brought up with `localcloud up --deploy terraform` (servers, migrations, the apply, the
runtime); then the stack is destroyed with `terraform destroy` in the workspace, applied again on the running cloud
(`localcloud deploy --deploy terraform`), and applied once more with nothing to change. Uses the user's Terraform CLI
configuration, or the provider mirror at IOTKPI_TF_PROVIDER_MIRROR (default /opt/tf-plugins) when there is one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import Figure
from tests.fixtures.local_cloud import LocalCloud

PROVIDER_MIRROR = Path(os.environ.get("IOTKPI_TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
TIMEOUT_S = 1800


def mirror_config(folder: Path) -> dict[str, str]:
    """A CLI configuration installing the AWS provider from the mirror, when the machine has one."""
    if not (PROVIDER_MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        return {}
    rc = folder / "terraformrc"
    rc.write_text(
        f'provider_installation {{\n  filesystem_mirror {{\n    path = "{PROVIDER_MIRROR}"\n'
        '    include = ["registry.terraform.io/*/*"]\n  }\n  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n}\n'
    )
    return {"TF_CLI_CONFIG_FILE": str(rc)}


def timed(action) -> tuple[float, str]:
    started = time.monotonic()
    output = action()
    return time.monotonic() - started, output


def run() -> list[Figure]:
    if shutil.which("terraform") is None:
        raise RuntimeError("terraform is not installed: nothing to measure")
    state_dir = Path(tempfile.mkdtemp(prefix="iotkpi-bench-terraform-"))
    cloud = LocalCloud(state_dir / "state")
    cli_config = mirror_config(state_dir)
    cloud.env.update(cli_config)
    workspace = cloud.state_dir / "terraform" / "infrastructure" / "terraform"

    def destroy() -> str:
        command = ["terraform", "destroy", "-auto-approve", "-input=false", "-no-color"]
        done = subprocess.run(command, cwd=workspace, env=cloud.env, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        return done.stdout

    try:
        up_s, up_output = timed(lambda: cloud.check("up", "--deploy", "terraform", timeout=TIMEOUT_S))
        resources = int(re.search(r"Apply complete! Resources: (\d+) added", up_output).group(1))
        state = json.loads((workspace / "terraform.tfstate").read_text())
        functions = next(r for r in state["resources"] if r["type"] == "aws_lambda_function")["instances"]
        destroy_s, _ = timed(destroy)
        apply_s, _ = timed(lambda: cloud.check("deploy", "--deploy", "terraform", timeout=TIMEOUT_S))
        noop_s, noop_output = timed(lambda: cloud.check("deploy", "--deploy", "terraform", timeout=TIMEOUT_S))
        assert "Resources: 0 added, 0 changed, 0 destroyed" in noop_output, noop_output[-2000:]
    finally:
        cloud.teardown()
        shutil.rmtree(state_dir, ignore_errors=True)
    provider = f"AWS provider from {PROVIDER_MIRROR}" if cli_config else "AWS provider as the CLI configuration says"
    volume = f"{resources} resources ({len(functions)} functions), {provider}; {os.cpu_count()} CPUs, every server on this machine"
    return [
        Figure("localcloud up --deploy terraform (servers, migrations, apply, runtime)", "s", round(up_s, 1), volume),
        Figure("terraform apply of the whole stack on the running local cloud", "s", round(apply_s, 1), volume),
        Figure("terraform destroy of the whole stack", "s", round(destroy_s, 1), volume),
        Figure("terraform apply with nothing to change (refresh of every resource)", "s", round(noop_s, 1), volume),
    ]
