"""``kopsy sandbox up / env / status / down`` through the real executable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest
from sandbox_helpers import KOPSY, clean_env, start_sandbox, stop_sandbox, wait_for

from kopsy.sandbox import control, fabricate, images, procs
from kopsy.sandbox.layout import Layout

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a real `kopsy sandbox up` (moto server and sshds)


def test_up_env_status_down_leave_nothing_behind(tmp_path: Path, run_kopsy: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env(home)
    d = tmp_path / "sb"
    try:
        r = run_kopsy(["sandbox", "up", "--dir", str(d)], env)
        assert r.returncode == 0, r.stderr
        assert "LOCAL EMULATION" in r.stdout and "NOT AWS" in r.stdout
        info = control.load(Layout.at(d))
        assert info is not None
        assert info.endpoint.startswith("http://127.0.0.1:")
        assert info.ready_seconds > 0  # the figure itself is measured by bench/sandbox.py, not asserted here
        pids = [info.moto_pid, info.supervisor_pid]
        assert all(procs.alive(p) for p in pids)

        # eval "$(kopsy sandbox env)" works in a real shell and drops AWS_PROFILE
        shell = subprocess.run(
            ["bash", "-c", f'eval "$({KOPSY} sandbox env --dir {d})" && env'],
            env={**env, "AWS_PROFILE": "prod"}, capture_output=True, text=True, timeout=30, check=False,
        )
        assert shell.returncode == 0, shell.stderr
        exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
        assert exported["AWS_ENDPOINT_URL"] == info.endpoint
        assert exported["KOPSY_STATE_STORE"] == "s3://kopsy-sandbox-state"
        assert exported["KOPSY_SSH_CONFIG"] == str(Layout.at(d).ssh_config)
        assert exported["AWS_REGION"] == exported["AWS_DEFAULT_REGION"] == "us-east-1"
        assert exported["AWS_ACCESS_KEY_ID"] and exported["AWS_SECRET_ACCESS_KEY"]
        assert "AWS_PROFILE" not in exported
        printed = run_kopsy(["sandbox", "env", "--dir", str(d)], env).stdout
        assert printed.startswith("# ") and "LOCAL EMULATION" in printed.splitlines()[0]  # said, yet eval-safe

        st = run_kopsy(["sandbox", "status", "--dir", str(d), "-o", "json"], env)
        doc = json.loads(st.stdout)
        assert doc["running"] is True
        assert {p["pid"] for p in doc["processes"]} == set(pids)
        text = run_kopsy(["sandbox", "status", "--dir", str(d)], env)
        assert text.returncode == 0 and "running" in text.stdout and "LOCAL EMULATION" in text.stdout

        again = run_kopsy(["sandbox", "up", "--dir", str(d)], env)
        assert again.returncode == 0 and "Sandbox running" in again.stdout

        _check_emulated_cloud(control.sandbox_clients(info.endpoint, info.region))

        down = run_kopsy(["sandbox", "down", "--dir", str(d)], env)
        assert down.returncode == 0, down.stderr
        assert "stopped" in down.stdout and "LOCAL EMULATION" in down.stdout
        assert not any(procs.alive(p) for p in pids)
        assert procs.marked_pids(info.id) == []
        after = run_kopsy(["sandbox", "status", "--dir", str(d)], env)
        assert after.returncode != 0 and "no sandbox" in after.stderr
        assert run_kopsy(["sandbox", "env", "--dir", str(d)], env).returncode != 0
    finally:
        assert stop_sandbox(d) == []


def _check_emulated_cloud(clients: Any) -> None:
    """What kopsy relies on: Ubuntu 24.04 found both ways, and a bucket kopsy does not warn about."""
    found = clients.client("ec2").describe_images(
        Owners=[images.CANONICAL_OWNER],
        Filters=[{"Name": "name", "Values": ["ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*"]}],
    )["Images"]
    assert [i["ImageId"] for i in found] == [images.UBUNTU_2404_AMD64]
    param = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
    assert clients.client("ssm").get_parameter(Name=param)["Parameter"]["Value"] == images.UBUNTU_2404_AMD64
    s3 = clients.client("s3")
    assert s3.get_bucket_versioning(Bucket=control.BUCKET)["Status"] == "Enabled"
    assert s3.get_bucket_encryption(Bucket=control.BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    from kopsy.state import open_store

    assert open_store(f"s3://{control.BUCKET}", clients=clients).check() == []


def test_down_without_sandbox_says_so(tmp_path: Path, run_kopsy: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    r = run_kopsy(["sandbox", "down", "--dir", str(tmp_path / "none")], clean_env(tmp_path))
    assert r.returncode == 0 and "No sandbox running" in r.stdout


def test_down_ends_open_ssh_sessions(
    tmp_path: Path, admin_key: tuple[Path, str], run_kopsy: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """sshd's per-connection processes outlive their listener and hide sshd's environment:
    down must still end them (checked by pid, including every descendant of what up started)."""
    (tmp_path / "home").mkdir()
    sb = start_sandbox(tmp_path / "sb", tmp_path / "home")
    client = paramiko.SSHClient()
    try:
        clients = sb.clients()
        fc = fabricate.fabricate_cluster(clients, name="open.example.com", bucket=sb.info.bucket, public_key=admin_key[1])
        cp = fabricate.launch(clients, fc, "ControlPlane")[0]
        wait_for("the sshd", lambda: sb.serving(cp))
        node = sb.nodes()[cp]
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # throw-away host
        client.connect(node["address"], port=node["port"], username=sb.info.user, key_filename=str(admin_key[0]),
                       look_for_keys=False, allow_agent=False)
        transport = client.get_transport()
        assert transport is not None
        transport.open_session()  # an open session, as a stuck client would leave it
        tree = procs.descendants(sb.info.supervisor_pid, sb.info.moto_pid)
        assert len(tree) >= 2, "expected the sshd listener and its session processes"
        r = run_kopsy(["sandbox", "down", "--dir", str(sb.dir)], sb.env)
        assert r.returncode == 0, r.stderr
        assert procs.still_running(tree) == []
        assert not procs.alive(sb.info.supervisor_pid) and not procs.alive(sb.info.moto_pid)
    finally:
        client.close()
        assert stop_sandbox(sb.dir) == []


def test_up_and_down_after_the_supervisor_was_killed(
    tmp_path: Path, admin_key: tuple[Path, str], run_kopsy: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A supervisor killed outright orphans its sshds: up replaces them (keeping the cloud), and
    down finds and ends them (by pid)."""
    (tmp_path / "home").mkdir()
    sb = start_sandbox(tmp_path / "sb", tmp_path / "home")
    try:
        clients = sb.clients()
        fc = fabricate.fabricate_cluster(clients, name="orphan.example.com", bucket=sb.info.bucket, public_key=admin_key[1])
        ids = fabricate.launch(clients, fc, "ControlPlane") + fabricate.launch(clients, fc, "Node", 2)
        wait_for("the sshds", lambda: sb.serving(*ids))
        sshd_pids = [n["pid"] for n in sb.nodes().values()]
        os.kill(sb.info.supervisor_pid, signal.SIGKILL)
        wait_for("the supervisor to die", lambda: not procs.alive(sb.info.supervisor_pid))
        st = run_kopsy(["sandbox", "status", "--dir", str(sb.dir)], sb.env)
        assert st.returncode == 1 and "NOT running" in st.stdout
        # up again restarts only the supervisor: the emulated cloud and its instances survive,
        # and every node comes back on its address with its host key
        before = {i: (n["address"], (sb.layout.node_dir(i) / "ssh_host_ed25519_key").read_bytes()) for i, n in sb.nodes().items()}
        r = run_kopsy(["sandbox", "up", "--dir", str(sb.dir)], sb.env)
        assert r.returncode == 0, r.stderr
        assert [p for p in sshd_pids if procs.alive(p)] == []  # the orphans were replaced
        wait_for("the sshds again", lambda: sb.serving(*ids))
        after = {i: (n["address"], (sb.layout.node_dir(i) / "ssh_host_ed25519_key").read_bytes()) for i, n in sb.nodes().items()}
        assert after == before
        sshd_pids = [n["pid"] for n in sb.nodes().values()]
        os.kill(control.load(sb.layout).supervisor_pid, signal.SIGKILL)  # and once more, for down
        r = run_kopsy(["sandbox", "down", "--dir", str(sb.dir)], sb.env)
        assert r.returncode == 0, r.stderr
        assert [p for p in sshd_pids if procs.alive(p)] == []
    finally:
        assert stop_sandbox(sb.dir) == []


def _processes_of(d: Path) -> list[int]:
    """Processes started for the sandbox in ``d``, found without its (maybe deleted) state file:
    the supervisor and sshds name ``d`` on their command line, moto in its MOTO_AMIS_PATH."""
    amis = f"MOTO_AMIS_PATH={Layout.at(d).amis_file}".encode()
    found = set(procs.pids_with_cmdline(str(d)))
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and amis in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0") and procs.alive(int(entry)):
                found.add(int(entry))
        except OSError:
            pass
    return sorted(found)


def _start_up(d: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], control.SandboxInfo]:
    """``kopsy sandbox up`` in the background, returned as soon as it has recorded its sandbox id
    (before or while it starts moto): the point where a failure leaves the most half-started."""
    proc = subprocess.Popen([KOPSY, "sandbox", "up", "--dir", str(d)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    info = wait_for("up to record its sandbox", lambda: control.load(Layout.at(d)) or proc.poll() is not None, timeout=30)
    assert isinstance(info, control.SandboxInfo), "up ended before recording anything"
    return proc, info


def test_up_terminated_mid_start_leaves_nothing(tmp_path: Path) -> None:
    """SIGTERM (or a closed terminal) while up starts things: up cleans up after itself."""
    (tmp_path / "home").mkdir()
    env, d = clean_env(tmp_path / "home"), tmp_path / "sb"
    proc, info = _start_up(d, env)
    try:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0, "up finished before the signal: the test proved nothing"
        assert procs.marked_pids(info.id) == []
        assert _processes_of(d) == []
        assert control.load(Layout.at(d)) is None
    finally:
        proc.kill()
        proc.communicate()
        assert stop_sandbox(d) == []


def test_down_after_up_was_killed_mid_start_leaves_nothing(
    tmp_path: Path, run_kopsy: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """SIGKILL gives up no chance to clean: down finds what it started (state saved before moto)."""
    (tmp_path / "home").mkdir()
    env, d = clean_env(tmp_path / "home"), tmp_path / "sb"
    proc, info = _start_up(d, env)
    try:
        proc.kill()
        proc.communicate(timeout=30)
        r = run_kopsy(["sandbox", "down", "--dir", str(d)], env)
        assert r.returncode == 0, r.stderr
        assert "stopped" in r.stdout
        assert procs.marked_pids(info.id) == []
        assert _processes_of(d) == []
    finally:
        assert stop_sandbox(d) == []


def test_a_supervisor_failing_during_up_leaves_nothing(
    tmp_path: Path, run_kopsy: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A child that fails while up waits for it: up says which and where its log is, and stops
    everything it started. (The supervisor is made to fail by a sitecustomize on PYTHONPATH,
    which the sandbox's python children import; the kopsy CLI itself ignores it.)"""
    (tmp_path / "home").mkdir()
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, sys\nif '_supervise' in sys.argv:\n    os._exit(3)\n"
    )
    env = {**clean_env(tmp_path / "home"), "PYTHONPATH": str(hook)}
    d = tmp_path / "sb"
    try:
        r = run_kopsy(["sandbox", "up", "--dir", str(d)], env)
        assert r.returncode == 1
        assert "node supervisor exited during start-up (code 3)" in r.stderr and "supervisor.log" in r.stderr
        assert _processes_of(d) == []
        assert control.load(Layout.at(d)) is None
    finally:
        assert stop_sandbox(d) == []
