"""Sandbox cost: `kopsy sandbox up` to ready, and 100 emulated instances served by their sshds.

Run: .venv/bin/python bench/sandbox.py [--instances 100] [--runs 3]
Prints figures (and the machine's load average at start and end, since the machine is shared);
never passes or fails on time. Everything it starts is stopped at the end
(``kopsy sandbox down``, then a check by pid that nothing of the sandbox is left).

Figures:
- up: wall time of `kopsy sandbox up` (median of --runs), and the time it reports to ready.
- instances: launch 1 control plane + N-1 nodes with boto3 (run_instances, real user-data), then
  the time until every instance's sshd answers its SSH banner on its loopback address, and until
  every one answers a command through the ssh config (paramiko, 8 in parallel).
- memory: of the supervisor, of all sshd listeners together (per sshd), and of moto; as RSS (which
  counts the libraries every sshd shares once per sshd) and PSS (shared pages split between
  the processes sharing them: the sum is the real total).
- answers: `kubectl get nodes -o json` on the control plane with N nodes, and one node command,
  as a client sees them (connect + command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko

from kopsy.sandbox import control, fabricate, procs
from kopsy.sandbox.layout import Layout

KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def kopsy(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([KOPSY, *args], env=env, capture_output=True, text=True, check=True, timeout=120)


def banner(addr: str, port: int) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def ssh(config: paramiko.SSHConfig, host: str, key: Path, command: str) -> tuple[str, int]:
    h = config.lookup(host)
    c = paramiko.SSHClient()
    c.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # throw-away benchmark hosts
    try:
        c.connect(str(h["hostname"]), port=int(h.get("port", 22)), username=str(h["user"]), key_filename=str(key),
                  look_for_keys=False, allow_agent=False, timeout=10)
        _, out, _ = c.exec_command(command, timeout=30)
        return out.read().decode(), out.channel.recv_exit_status()
    finally:
        c.close()


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores; {load()} at start")
    work = Path(tempfile.mkdtemp(prefix="kopsy-bench-sandbox-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env["HOME"] = str(work)
    d = work / "sb"
    layout = Layout.at(d)
    try:
        walls, reported = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            kopsy(["sandbox", "up", "--dir", str(d)], env)
            walls.append(time.perf_counter() - t)
            info = control.load(layout)
            assert info is not None
            reported.append(info.ready_seconds)
            kopsy(["sandbox", "down", "--dir", str(d)], env)
        print(f"sandbox up: {statistics.median(walls):.2f}s wall (median of {args.runs}; "
              f"min {min(walls):.2f}s, max {max(walls):.2f}s), reported ready in {statistics.median(reported):.2f}s")

        kopsy(["sandbox", "up", "--dir", str(d)], env)
        info = control.load(layout)
        assert info is not None
        clients = control.sandbox_clients(info.endpoint, info.region)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        k = ed25519.Ed25519PrivateKey.generate()
        key = work / "id_ed25519"
        key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
        key.chmod(0o600)
        pub = k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
        fc = fabricate.fabricate_cluster(clients, name="bench.example.com", bucket=info.bucket, public_key=pub)

        t0 = time.perf_counter()
        cp = fabricate.launch(clients, fc, "ControlPlane")[0]
        nodes = fabricate.launch(clients, fc, "Node", args.instances - 1)
        launched = time.perf_counter() - t0
        ids = [cp, *nodes]
        answered: set[str] = set()
        while len(answered) < len(ids) and time.perf_counter() - t0 < 120:
            try:
                status = json.loads(layout.status_file.read_text())["nodes"]
            except (OSError, ValueError):
                status = {}
            for iid in ids:
                n = status.get(iid)
                if iid not in answered and n and n["state"] == "serving" and banner(n["address"], n["port"]):
                    answered.add(iid)
            time.sleep(0.05)
        banners = time.perf_counter() - t0
        print(f"{args.instances} instances: launched in {launched:.2f}s; all {len(answered)} sshds answered "
              f"{banners:.2f}s after the launch began")

        config = paramiko.SSHConfig.from_path(str(layout.ssh_config))
        res = clients.client("ec2").describe_instances(InstanceIds=ids)["Reservations"]
        ip = {i["InstanceId"]: i["PrivateIpAddress"] for r in res for i in r["Instances"]}
        t1 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda i: ssh(config, ip[i], key, "cloud-init status")[1], ids))
        print(f"  one command on each of {len(ids)} through the ssh config (8 in parallel): "
              f"{time.perf_counter() - t1:.2f}s, {codes.count(0)} answered 'done'")

        status = json.loads(layout.status_file.read_text())["nodes"]
        sshd_pids = [n["pid"] for n in status.values() if n["pid"]]
        for name, measure in (("RSS", procs.process_rss_kib), ("PSS", procs.process_pss_kib)):
            sshd_kib = sum(measure(p) for p in sshd_pids)
            sup_kib = measure(info.supervisor_pid)
            moto_kib = measure(info.moto_pid)
            print(f"  memory ({name}): supervisor {sup_kib / 1024:.1f} MiB + {len(sshd_pids)} sshds {sshd_kib / 1024:.1f} MiB "
                  f"({sshd_kib / 1024 / max(1, len(sshd_pids)):.2f} MiB each) = {(sup_kib + sshd_kib) / 1024:.1f} MiB; "
                  f"moto server {moto_kib / 1024:.1f} MiB")

        for label, host, cmd in (
            (f"kubectl get nodes -o json ({len(ids)} nodes)", ip[cp], "sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get nodes -o json"),
            ("cat bootstrap.json on a node", ip[nodes[0]], "sudo cat /var/lib/kopsy/bootstrap.json"),
        ):
            samples = []
            for _ in range(5):
                t = time.perf_counter()
                out, rc = ssh(config, host, key, cmd)
                samples.append(time.perf_counter() - t)
                assert rc == 0
            extra = f", {len(json.loads(out)['items'])} items" if "nodes" in cmd else ""
            print(f"  {label}: {statistics.median(samples) * 1000:.0f} ms (connect + command, median of 5{extra})")
        print(f"machine: {load()} at the end (other engineers' tests share it: read the figures with it)")
    finally:
        info = control.load(layout)
        control.down(layout)
        if info is not None:
            left = procs.marked_pids(info.id)
            procs.stop(left)
            print(f"sandbox down; processes left behind: {len(left)}")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
