"""Benchmark `kopsy validate` on a 100-node cluster: healthy, and with 10 nodes broken.

Everything runs on loopback: a moto server process, the cluster's ASGs launched in it with the
names and tags of docs/update.md, and one real OpenSSH sshd per instance (the test double from
tests/validate/validate_doubles.py) behind an ssh config that maps the instances' addresses.

Figures (printed, never pass/fail):
- in-process engine: wall time, SSH connections opened, Python peak allocation (tracemalloc);
- the real `kopsy validate` executable: wall time and peak RSS (from wait4).
Targets: 1 SSH connection when healthy; < 10 s wall with 10 of 100 nodes broken.

    .venv/bin/python bench/validate.py [--nodes 100] [--broken 10] [--repeat 3] [--sandbox]

``--sandbox`` runs the whole user path instead (`kopsy sandbox up`, `create`, `update --yes`,
`validate`), where the node stand-ins derive their answers from the emulated cloud.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "validate"))
sys.path.insert(1, str(ROOT))  # validate_doubles imports the shared doubles in tests/doubles

from validate_doubles import FakeCluster  # noqa: E402

CLUSTER = "bench.example.com"
KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def environment(endpoint: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "HOME": str(home)})
    return env


def run_cli(env: dict[str, str], cluster: str = CLUSTER) -> tuple[float, int, float, int, int]:
    """Wall seconds, exit code, peak RSS (MiB), SSH connections and failures of one `kopsy validate`."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([KOPSY, "--debug", "validate", "cluster", cluster, "-o", "json"], env=env,
                                stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        failures = len(json.loads(out.read() or b"{}").get("failures", []))
        found = re.search(rb"opened (\d+) SSH connection", err.read())
    return wall, proc.returncode, usage.ru_maxrss / 1024, int(found.group(1)) if found else -1, failures


def run_engine(igs: list[Any], clients: Any, settings: Any) -> tuple[float, Any, float]:
    from kopsy.remote import SSHConnector
    from kopsy.validate import validate_cluster

    tracemalloc.start()
    start = time.monotonic()
    result = validate_cluster(CLUSTER, igs, clients, SSHConnector(settings))
    wall = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return wall, result, peak


def bench_sandbox(args: argparse.Namespace) -> None:
    """The whole user path: `kopsy sandbox up`, `create`, `update --yes`, then `kopsy validate`.

    Broken: half the broken nodes have their machine stopped (`sandbox stop-node`: NotReady,
    unreachable), the other half are extra instances whose user-data names a wrong API endpoint
    (never join, reachable: they cost a diagnosis each). Nodes in total: ``--nodes``."""
    from validate_doubles import (
        launch_with_wrong_endpoint,
        poll,
        role_of,
        tagged_instances,
    )

    work = Path(tempfile.mkdtemp(prefix="kopsy-bench-validate-sandbox-"))
    home = work / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env["HOME"] = str(home)
    sb = str(work / "sb")

    def kopsy(*a: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([KOPSY, *a], env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0 and a[0] != "validate":
            raise SystemExit(f"kopsy {' '.join(a)} failed: {r.stdout}{r.stderr}")
        return r

    try:
        t0 = time.monotonic()
        kopsy("sandbox", "up", "--dir", sb)
        for k, v in re.findall(r"^export (\w+)=(\S+)$", kopsy("sandbox", "env", "--dir", sb).stdout, re.M):
            env[k] = v.strip("'\"")
        key = work / "admin"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        wrong = args.broken // 2
        kopsy("create", "cluster", CLUSTER, "--zones", "us-east-1a", "--node-count", str(args.nodes - wrong),
              "--ssh-public-key", f"{key}.pub")
        kopsy("update", "cluster", CLUSTER, "--yes")
        import boto3

        ec2 = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
                                    ).client("ec2", endpoint_url=env["AWS_ENDPOINT_URL"])
        instances = tagged_instances(ec2, CLUSTER)
        config = Path(env["KOPSY_SSH_CONFIG"])
        poll(lambda: all(i["PrivateIpAddress"] in config.read_text() for i in instances.values()), timeout=120)
        print(f"setup: sandbox + create + update --yes + {len(instances)} sshd stand-ins serving "
              f"({time.monotonic() - t0:.1f}s)")
        kopsy("validate")  # records host keys

        def measure(label: str) -> None:
            runs = [run_cli(env) for _ in range(args.repeat)]
            walls = [r[0] for r in runs]
            print(f"{label}: kopsy validate CLI wall median {statistics.median(walls):.2f}s (max {max(walls):.2f}s), "
                  f"SSH connections {sorted({r[3] for r in runs})}, failures {sorted({r[4] for r in runs})}, "
                  f"peak RSS {max(r[2] for r in runs):.0f} MiB, exit {sorted({r[1] for r in runs})}")

        print(f"cluster (sandbox): 1 control plane + {args.nodes} nodes; {args.repeat} run(s) each; "
              f"{os.cpu_count()} CPUs")
        measure("healthy")
        nodes = sorted(i for i, inst in instances.items() if role_of(inst) == "Node")
        for iid in nodes[: args.broken - wrong]:
            kopsy("sandbox", "stop-node", "--dir", sb, iid)
        bad = launch_with_wrong_endpoint(ec2, instances[nodes[-1]], wrong) if wrong else []
        poll(lambda: all(b in config.read_text() for b in bad), timeout=60)
        measure(f"{args.broken} broken")
    finally:
        subprocess.run([KOPSY, "sandbox", "down", "--dir", sb], env=env, capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--broken", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sandbox", action="store_true",
                    help="use `kopsy sandbox` and `create`/`update --yes` instead of the sshd test doubles")
    args = ap.parse_args()
    if args.sandbox:
        bench_sandbox(args)
        return

    work = Path(tempfile.mkdtemp(prefix="kopsy-bench-validate-"))
    moto, endpoint = start_moto()
    fc: FakeCluster | None = None
    try:
        home = work / "home"
        home.mkdir()
        env = environment(endpoint, home)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        import boto3

        from kopsy.cloud.aws.session import AwsClients
        from kopsy.spec.model import InstanceGroup
        from kopsy.state import open_store
        from kopsy.state.clusters import ClusterStore

        key = work / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="kopsy-bench")
        env["KOPSY_STATE_STORE"] = "s3://kopsy-bench"
        created = subprocess.run([KOPSY, "create", "cluster", CLUSTER, "--zones", "us-east-1a", "--node-count",
                                  str(args.nodes), "--ssh-public-key", f"{key}.pub"], env=env, capture_output=True,
                                 text=True)
        if created.returncode != 0:
            raise SystemExit(f"kopsy create failed: {created.stderr}")
        clients = AwsClients("us-east-1")
        store = ClusterStore(open_store("s3://kopsy-bench", clients=clients))
        igs: list[InstanceGroup] = [ig for ig, _ in store.list_instance_groups(CLUSTER)]

        t0 = time.monotonic()
        fc = FakeCluster.launch(CLUSTER, work, clients.client("ec2"), clients.client("autoscaling"),
                                [(ig.name, ig.role, ig.min_size) for ig in igs], getpass.getuser(), key,
                                Path(f"{key}.pub"))
        print(f"setup: {len(fc.hosts)} instances in moto, {len(fc.hosts)} sshd doubles on loopback "
              f"({time.monotonic() - t0:.1f}s)")
        env["KOPSY_SSH_CONFIG"] = str(fc.ssh_config)

        from kopsy.remote import SSHSettings

        settings = SSHSettings(known_hosts=work / "known_hosts", config_path=fc.ssh_config)
        validate_cluster_warm = run_engine(igs, clients, settings)  # records host keys, loads EC2 in moto
        assert validate_cluster_warm[1].valid, validate_cluster_warm[1].failures

        def measure(label: str) -> None:
            walls, peaks, conns, cli_walls, rss, codes, failures = [], [], set(), [], [], set(), 0
            for _ in range(args.repeat):
                wall, result, peak = run_engine(igs, clients, settings)
                walls.append(wall)
                peaks.append(peak)
                conns.add(result.ssh_connections)
                failures = len(result.failures)
                cwall, code, maxrss, _, _ = run_cli(env)
                cli_walls.append(cwall)
                rss.append(maxrss)
                codes.add(code)
            print(f"{label}: engine wall median {statistics.median(walls):.2f}s (max {max(walls):.2f}s), "
                  f"SSH connections {sorted(conns)}, failures {failures}, Python peak alloc {max(peaks):.1f} MiB")
            print(f"{' ' * len(label)}  kopsy validate CLI wall median {statistics.median(cli_walls):.2f}s "
                  f"(max {max(cli_walls):.2f}s), peak RSS {max(rss):.0f} MiB, exit {sorted(codes)}")

        print(f"cluster: 1 control plane + {args.nodes} nodes; {args.repeat} run(s) each; "
              f"{os.cpu_count()} CPUs")
        measure("healthy")
        nodes = fc.nodes
        kinds = ("bootfail", "notready", "down")
        for i, host in enumerate(nodes[: args.broken]):
            fc.set_state(host.instance_id, kinds[i % len(kinds)])
        measure(f"{args.broken} broken")
    finally:
        if fc is not None:
            fc.stop()
        moto.terminate()
        moto.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
