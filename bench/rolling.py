"""Benchmark `kopsy rolling-update cluster --yes` in the sandbox: wall time against the floor.

For each size N and surge S: a sandbox with a fixed boot time, a cluster of 1 control plane
and N nodes, a machine-type change and `update --yes`, then the timed roll. Figures (printed,
never pass/fail):
- wall: the roll's wall time; floor: ceil(N / surge) x (boot time + one validation interval),
  the least any roll that validates after each batch can take; and wall / floor;
- AWS calls per replaced instance and per batch (KOPSY_AWS_CALL_LOG: every call the roll made);
- peak: the most node instances alive at once (a background DescribeInstances every 0.1 s, or
  4x as long as the last one took, so the sampler never takes more than a fifth of moto).

    .venv/bin/python bench/rolling.py [--sizes 3,30,100] [--surges 1,25%,100%] [--boot-time 2] [--interval 1]

Everything is on loopback (moto + one sshd per instance). Big sizes take long at surge 1
(100 nodes = 100 boot cycles): pick --sizes/--surges to fit the time you have.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"
sys.path.insert(0, str(ROOT))


def kopsy(env: dict[str, str], *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([KOPSY, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise SystemExit(f"kopsy {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def surge_count(surge: str, n: int) -> int:
    from kopsy.rolling.surge import budget

    return budget(surge, "0", n, n).batch


def one(size: int, surge: str, boot: float, interval: float, work: Path) -> dict[str, Any]:
    from kopsy.sandbox import control
    from kopsy.sandbox.layout import Layout

    home = work / f"home-{size}-{surge.rstrip('%')}"
    (home / ".ssh").mkdir(parents=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")], check=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
    base["HOME"] = str(home)
    sbdir = work / f"sb-{size}-{surge.rstrip('%')}"
    kopsy(base, "sandbox", "up", "--dir", str(sbdir), "--boot-time", str(boot))
    info = control.load(Layout.at(sbdir))
    assert info is not None
    env = {**base, **info.environment()}
    name = "bench-roll.example.com"
    try:
        kopsy(env, "create", "cluster", name, "--zones", "us-east-1a", "--node-count", str(size),
              "--ssh-public-key", str(home / ".ssh" / "id_ed25519.pub"))
        kopsy(env, "update", "cluster", name, "--yes")
        kopsy(env, "validate", "cluster", name, "--wait", "10m", "--interval", "1s")
        import yaml

        doc = yaml.safe_load(kopsy(env, "get", "ig", "nodes", "--name", name, "-o", "yaml").stdout)
        doc["spec"]["machineType"] = "t3.large"
        (work / "ig.yaml").write_text(yaml.safe_dump(doc))
        kopsy(env, "replace", "-f", str(work / "ig.yaml"), "--name", name)
        kopsy(env, "update", "cluster", name, "--yes")
        ec2 = control.sandbox_clients(info.endpoint, info.region).client("ec2")
        peak = [0]
        stop = threading.Event()

        def watch() -> None:
            flt = [{"Name": "tag:kopsy.io/cluster", "Values": [name]}, {"Name": "tag:kopsy.io/instancegroup", "Values": ["nodes"]},
                   {"Name": "instance-state-name", "Values": ["pending", "running"]}]
            while not stop.is_set():
                began = time.monotonic()
                try:
                    res = ec2.describe_instances(Filters=flt)["Reservations"]
                    peak[0] = max(peak[0], sum(len(r["Instances"]) for r in res))
                except Exception:  # a missed sample; the next one counts
                    pass
                # moto answers a DescribeInstances of 200 instances in ~0.3 s and, under its GIL,
                # about one at a time: sampling flat out took a share of moto from the roll being
                # measured. At most a fifth of the time, and at least every 0.1 s: still far
                # shorter than any instance lives (its boot time, then a drain and a validation).
                stop.wait(max(0.1, 4 * (time.monotonic() - began)))

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        log = work / f"calls-{size}-{surge.rstrip('%')}.log"
        started = time.monotonic()
        r_roll = kopsy({**env, "KOPSY_AWS_CALL_LOG": str(log)}, "rolling-update", "cluster", name, "--yes", "--max-surge", surge,
              "--interval", f"{interval}s", "--validation-timeout", "30m")
        wall = time.monotonic() - started
        if os.environ.get("BENCH_SHOW"):
            print(r_roll.stderr, file=sys.stderr)
        stop.set()
        t.join(5)
        calls = collections.Counter(line.strip() for line in log.read_text().splitlines() if line.strip())
        batches = math.ceil(size / surge_count(surge, size))
        floor = batches * (boot + interval)
        total = sum(calls.values())
        return {"nodes": size, "surge": surge, "boot_s": boot, "interval_s": interval, "batches": batches, "wall_s": round(wall, 1), "floor_s": round(floor, 1),
                "wall_over_floor": round(wall / floor, 2), "aws_calls": total, "calls_per_instance": round(total / size, 1),
                "calls_per_batch": round(total / batches, 1), "peak_nodes": peak[0],
                "top_calls": dict(calls.most_common(6))}
    finally:
        control.down(Layout.at(sbdir))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="3,30,100")
    ap.add_argument("--surges", default="1,25%,100%")
    ap.add_argument("--boot-time", type=float, default=2.0)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="kopsy-bench-roll-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            for surge in args.surges.split(","):
                print(json.dumps(one(size, surge, args.boot_time, args.interval, Path(tmp))), flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
