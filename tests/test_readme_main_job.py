"""The README's main-job command works as written (it is what a newcomer runs first)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.netguard import attempts, guarded_env

ROOT = Path(__file__).resolve().parents[1]


def test_readme_names_exactly_the_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up on a fresh machine", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```\n(.*?)\n```", section, re.S)
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.e2e
def test_demo_runs_the_main_job_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env["TMPDIR"] = str(tmp_path)
    # Every Python process of the demo (kopsy, moto, the node supervisor) runs under the network
    # guard: nothing the sandbox hands out may lead off this machine.
    log = tmp_path / "net.log"
    env = guarded_env(env, log)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                       timeout=600)
    out = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + r.stderr)
    assert r.returncode == 0, out[-4000:]
    for expected in [
        "LOCAL EMULATION",
        "Will create resources:",
        "Must specify --yes to apply changes",
        "No changes need to be applied",
        "Your cluster demo.example.com is ready",
        'context "demo.example.com" is now current',
        "Deleted cluster: demo.example.com",
    ]:
        assert expected in out, expected
    assert attempts(log) == [], "the demo tried to connect off loopback"
    # The sandbox took its processes with it.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path) not in ps
