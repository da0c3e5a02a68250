"""Helpers for the sandbox tests: start/stop a real sandbox through the CLI, SSH into its nodes.

``stop_sandbox`` runs ``down`` and then checks, by pid, that no process carrying the sandbox's
marker is left (ending any it finds), so a failing test never leaves processes behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from kopsy.sandbox import control, procs
from kopsy.sandbox.layout import Layout

KOPSY = str(Path(sys.executable).parent / "kopsy")


def moto_scenario(script: str, mode: str) -> dict[str, Any]:
    """Run ``script`` (it prints one JSON object last) in its own interpreter with ``mode`` as its
    argument: a moto patch is process-wide, so plain and patched moto each need a fresh process."""
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real kopsy executable (as tests/conftest.py's run_kopsy; usable from module-scoped fixtures)."""
    return subprocess.run([KOPSY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env["HOME"] = str(home)
    return env


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Sandbox:
    dir: Path
    home: Path
    env: dict[str, str]  # a clean environment plus the sandbox's exports
    info: control.SandboxInfo

    @property
    def layout(self) -> Layout:
        return Layout.at(self.dir)

    def clients(self) -> Any:
        return control.sandbox_clients(self.info.endpoint, self.info.region)

    def nodes(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.layout.status_file.read_text())["nodes"]  # type: ignore[no-any-return]
        except (OSError, ValueError, KeyError):
            return {}

    def serving(self, *ids: str) -> bool:
        nodes = self.nodes()
        return all(nodes.get(i, {}).get("state") == "serving" for i in ids)

    def kopsy(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run(list(args), self.env, timeout=timeout)


def start_sandbox(directory: Path, home: Path, boot_time: float = 0.0) -> Sandbox:
    """A sandbox through ``kopsy sandbox up``. Instances join at once (``--boot-time 0``) unless
    a test asks for boot time: most tests judge rules, not timing."""
    env = clean_env(home)
    r = run(["sandbox", "up", "--dir", str(directory), "--boot-time", str(boot_time)], env, timeout=60)
    info = control.load(Layout.at(directory))
    if r.returncode != 0 or info is None:
        stop_sandbox(directory)
        raise AssertionError(f"sandbox up failed: {r.stdout}\n{r.stderr}")
    return Sandbox(directory, home, {**env, **info.environment()}, info)


def env_from_eval(directory: Path, base: dict[str, str]) -> dict[str, str]:
    """The environment a user gets from ``eval "$(kopsy sandbox env --dir DIR)"`` in bash."""
    shell = subprocess.run(
        ["bash", "-c", 'eval "$("$0" sandbox env --dir "$1")" && env -0', KOPSY, str(directory)],
        env=base, capture_output=True, timeout=60, check=False,
    )
    assert shell.returncode == 0, shell.stderr.decode()
    return dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)


def stop_sandbox(directory: Path) -> list[int]:
    """``down``, then make sure (by pid) that nothing of this sandbox still runs; returns leftovers."""
    layout = Layout.at(directory)
    info = control.load(layout)
    control.down(layout)
    if info is None:
        return []
    left = procs.marked_pids(info.id)
    procs.stop(left)
    return left


def ssh_run(ssh_config: Path, host: str, command: str, key: Path, timeout: float = 10) -> tuple[str, str, int]:
    """Run one command on ``host`` (an instance address) through the sandbox's ssh config, as validate does."""
    cfg = paramiko.SSHConfig.from_path(str(ssh_config)).lookup(host)
    assert cfg.get("hostname", host) != host, f"{host} is not mapped in {ssh_config}"
    assert str(cfg["hostname"]).startswith("127."), "the sandbox must map instances to loopback only"
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # throw-away hosts in a test
    try:
        client.connect(
            str(cfg["hostname"]), port=int(cfg.get("port", 22)), username=str(cfg["user"]), key_filename=str(key),
            look_for_keys=False, allow_agent=False, timeout=timeout,
        )
        _, out, err = client.exec_command(command, timeout=timeout)
        stdout, stderr = out.read().decode(), err.read().decode()
        return stdout, stderr, out.channel.recv_exit_status()
    finally:
        client.close()


def describe(clients: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    res = clients.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
    return {i["InstanceId"]: i for r in res for i in r["Instances"]}


def ready_of(node_list: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """node name -> (Ready status, reason, message)."""
    out = {}
    for n in node_list["items"]:
        c = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        out[n["metadata"]["name"]] = (c["status"], c["reason"], c["message"])
    return out


def procs_alive(pid: int | None) -> bool:
    return bool(pid) and procs.alive(int(pid or 0))
