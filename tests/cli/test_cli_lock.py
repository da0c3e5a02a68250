"""The state-store lock seen from the CLI: a second operator is told who holds it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.inventory import inventory, present

pytestmark = pytest.mark.e2e  # drives the real kopsy executable against moto server

NAME = "demo.example.com"

HOLDER = textwrap.dedent(
    """
    import pathlib, sys, time
    from kopsy.state import open_store
    from kopsy.state.clusters import ClusterStore
    store = ClusterStore(open_store(sys.argv[1]))
    with store.lock(sys.argv[2], "update cluster (test holder)"):
        pathlib.Path(sys.argv[3]).write_text("held")
        deadline = time.time() + 60
        while not pathlib.Path(sys.argv[4]).exists() and time.time() < deadline:
            time.sleep(0.05)
    """
)


def test_lock_held_by_another_process(run_kopsy, aws_env, tmp_path: Path, ssh_keypair) -> None:
    _, pub = ssh_keypair
    url = f"file://{tmp_path / 'store'}"
    env = dict(aws_env, KOPSY_STATE_STORE=url)
    assert run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(pub)],
                     env).returncode == 0
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, NAME, str(held), str(release)], env=env)
    try:
        deadline = time.monotonic() + 30
        while not held.exists() and time.monotonic() < deadline and holder.poll() is None:
            time.sleep(0.05)
        assert held.exists(), "the holder never took the lock"
        r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
        assert r.returncode == 1
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith(f'Error: cluster "{NAME}" is locked by ') and "update cluster (test holder)" in line
        assert "--force-unlock" in line and "Traceback" not in r.stderr
        lock = Path(url[len("file://"):]) / NAME / "lock"
        assert lock.exists()  # the refused run did not touch the other operator's lock
    finally:
        release.write_text("go")
        holder.wait(timeout=30)
    assert not (Path(url[len("file://"):]) / NAME / "lock").exists()


def test_force_unlock_takes_a_dead_holders_lock(run_kopsy, aws_env, boto, state_bucket, tmp_path: Path,
                                                ssh_keypair) -> None:
    _, pub = ssh_keypair
    url = state_bucket
    env = dict(aws_env, KOPSY_STATE_STORE=url)
    image = boto("ec2").describe_images()["Images"][0]["ImageId"]
    assert run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(pub),
                      "--image", image, "--node-count", "1"], env).returncode == 0
    held, release = tmp_path / "held", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url, NAME, str(held), str(release)], env=env)
    deadline = time.monotonic() + 30
    while not held.exists() and time.monotonic() < deadline and holder.poll() is None:
        time.sleep(0.05)
    assert held.exists(), "the holder never took the lock"
    holder.kill()  # dies holding the lock
    holder.wait(timeout=10)
    assert run_kopsy(["update", "cluster", NAME, "--yes"], env).returncode == 1
    r = run_kopsy(["update", "cluster", NAME, "--yes", "--force-unlock"], env)
    assert r.returncode == 0, r.stderr
    assert "Changes applied to cluster" in r.stdout
    keys = [o["Key"] for o in boto("s3").list_objects_v2(Bucket="kopsy-state").get("Contents", [])]
    assert f"{NAME}/config" in keys and f"{NAME}/lock" not in keys  # released after the run


def test_update_refuses_a_file_store_before_creating_anything(run_kopsy, aws_env, boto, tmp_path, ssh_keypair):
    _, pub = ssh_keypair
    env = dict(aws_env, KOPSY_STATE_STORE=f"file://{tmp_path / 'store'}")
    assert run_kopsy(["create", "cluster", NAME, "--zones", "us-east-1a", "--ssh-public-key", str(pub)],
                     env).returncode == 0
    r = run_kopsy(["update", "cluster", NAME, "--yes"], env)
    assert r.returncode == 2 and "s3://" in r.stderr.strip().splitlines()[-1]
    assert present(inventory(boto, NAME)) == {}
