"""Benchmark ``kopsy update cluster --yes`` against moto server behind a latency proxy.

For a 1-control-plane/2-node cluster and for a 3-control-plane cluster with 3 node groups,
prints: wall time of ``update --yes``, AWS calls by operation, the number of latency periods
spent in sequence, and wall time and call count of a no-op ``update --yes``. Figures only,
never pass/fail.

    .venv/bin/python bench/update.py [--latency 0.05]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from awsproxy import AwsProxy  # noqa: E402

KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"
REGION = "us-east-1"


@dataclass
class Shape:
    name: str
    zones: list[str]
    control_planes: int
    extra_node_groups: int  # besides "nodes"


SHAPES = [
    Shape("1 control plane, 2 nodes", ["us-east-1a", "us-east-1b"], 1, 0),
    Shape("3 control planes, 3 node groups", ["us-east-1a", "us-east-1b", "us-east-1c"], 3, 2),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_and_proxy(latency: float) -> Iterator[tuple[str, AwsProxy]]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            break
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    proxy = AwsProxy(url, latency=latency).start()
    try:
        yield url, proxy
    finally:
        proxy.stop()
        proc.terminate()
        proc.wait(timeout=10)


def base_env(endpoint: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    env.update({
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION, "HOME": str(home),
        "KOPSY_STATE_STORE": "s3://kopsy-bench", "NO_PROXY": "127.0.0.1,localhost",
    })
    return env


def kopsy(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.monotonic()
    r = subprocess.run([KOPSY, *args], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"kopsy {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")
    return time.monotonic() - t, r


def prepare_cluster(moto_url: str, proxy_env: dict[str, str], shape: Shape, name: str, work: Path) -> None:
    """Reset moto, then create the cluster's spec in the store (not timed)."""
    import boto3

    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name=REGION)
    session.client("s3", endpoint_url=moto_url).create_bucket(Bucket="kopsy-bench")
    image = session.client("ec2", endpoint_url=moto_url).register_image(Name="bench-noble", RootDeviceName="/dev/sda1")["ImageId"]
    key = work / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    env = {**proxy_env, "AWS_ENDPOINT_URL": moto_url}
    kopsy(["create", "cluster", name, "--zones", ",".join(shape.zones), "--control-plane-count", str(shape.control_planes),
           "--node-count", "2", "--image", image, "--ssh-public-key", f"{key}.pub"], env)
    if shape.extra_node_groups:
        os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")})
        from kopsy.cloud.aws.session import AwsClients
        from kopsy.spec.model import replace
        from kopsy.state import open_store
        from kopsy.state.clusters import ClusterStore

        store = ClusterStore(open_store("s3://kopsy-bench", clients=AwsClients(REGION)))
        nodes, _ = store.get_instance_group(name, "nodes")
        for i in range(shape.extra_node_groups):
            zone = shape.zones[(i + 1) % len(shape.zones)]
            store.create_instance_group(replace(nodes, name=f"nodes-{zone[-1]}", subnets=[zone]))


def report_calls(title: str, proxy: AwsProxy, wall: float, latency: float) -> None:
    """Wall time includes starting Python and importing boto3 (~1 s here); the span from the first
    AWS call to the end of the last is what the latency can stretch, so that is what is compared
    with the latency periods the run had to spend one after another."""
    seq = proxy.sequential_periods()
    span = max(c.end for c in proxy.calls) - min(c.start for c in proxy.calls)
    print(f"  {title}: {wall:.2f} s wall, {len(proxy.calls)} AWS calls, {seq} latency periods in sequence "
          f"(x {latency * 1000:.0f} ms = {seq * latency:.2f} s); first-to-last-call span {span:.2f} s "
          f"= {span / max(seq * latency, 1e-9):.2f}x the sequential latency")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every AWS call (default 0.05)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, moto_and_proxy(args.latency) as (moto_url, proxy):
        work = Path(tmp)
        env = base_env(proxy.url, work)
        print(f"kopsy update benchmark: moto server behind a {args.latency * 1000:.0f} ms latency proxy")
        for shape in SHAPES:
            name = "bench.example.com"
            prepare_cluster(moto_url, env, shape, name, work)
            print(f"\n== {shape.name}")
            proxy.reset()
            wall, _ = kopsy(["update", "cluster", name, "--yes"], env)
            report_calls("update --yes", proxy, wall, args.latency)
            for op, n in sorted(proxy.by_operation().items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"      {n:4d}  {op}")
            proxy.reset()
            wall, r = kopsy(["update", "cluster", name, "--yes"], env)
            assert "No changes need to be applied" in r.stdout, r.stdout
            report_calls("no-op update --yes", proxy, wall, args.latency)
            mutating = [c for c in proxy.calls if c.service != "s3" and not c.operation.startswith(("Describe", "Get", "List"))]
            print(f"      mutating calls outside S3: {len(mutating)}")


if __name__ == "__main__":
    main()
