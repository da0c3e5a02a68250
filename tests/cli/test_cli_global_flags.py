"""Global flags work where kops users put them, and --help stays free of heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kopsy.cli.main import hoist_global_flags


def test_global_flags_are_hoisted_in_front_of_the_subcommand() -> None:
    assert hoist_global_flags(["get", "clusters", "--state", "s3://x"]) == ["--state", "s3://x", "get", "clusters"]
    assert hoist_global_flags(["get", "ig", "--state=s3://x", "--name", "a.b", "--debug"]) == [
        "--state=s3://x", "--name", "a.b", "--debug", "get", "ig",
    ]
    # After a bare -- nothing is touched; a trailing flag without a value is left for click to report.
    assert hoist_global_flags(["x", "--", "--state", "y"]) == ["x", "--", "--state", "y"]
    assert hoist_global_flags(["get", "--state"]) == ["get", "--state"]


@pytest.mark.e2e
def test_state_after_the_subcommand(run_kopsy, aws_env, tmp_path, ssh_keypair) -> None:
    _, pub = ssh_keypair
    url = f"file://{tmp_path / 'store'}"
    r = run_kopsy(["create", "cluster", "a.example.com", "--zones", "us-east-1a", "--ssh-public-key", str(pub),
                   "--state", url], aws_env)
    assert r.returncode == 0, r.stderr
    r = run_kopsy(["get", "clusters", "--state", url], aws_env)
    assert r.returncode == 0 and "a.example.com" in r.stdout


def test_help_lists_every_command_without_importing_boto3_or_paramiko() -> None:
    code = (
        "import sys\n"
        "from kopsy.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('boto3', 'botocore', 'paramiko', 'cryptography', 'jinja2') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for verb in ("create", "get", "edit", "replace", "update", "delete", "validate", "export", "sandbox"):
        assert f"  {verb} " in out, verb
