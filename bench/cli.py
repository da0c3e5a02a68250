"""CLI start-up cost: median wall time of `kopsy --help` and `kopsy get clusters` on a file:// store.

Run: .venv/bin/python bench/cli.py [--runs 21]
Prints figures; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KOPSY = shutil.which("kopsy", path=str(Path(sys.executable).parent)) or "kopsy"


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([KOPSY, *argv], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "id.pub"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key.with_suffix(""))], check=True)
        env = {**os.environ, "KOPSY_STATE_STORE": f"file://{tmp}/store", "HOME": tmp}
        subprocess.run([KOPSY, "create", "cluster", "bench.example.com", "--zones", "us-east-1a",
                        "--ssh-public-key", str(key)], env=env, check=True, capture_output=True)
        print(f"{'command':<32}{'median ms':>10}{'min ms':>10}{'max ms':>10}  runs={args.runs}")
        for argv in (["--help"], ["get", "clusters"], ["get", "ig"]):
            s = timed(argv, env, args.runs)
            print(f"{'kopsy ' + ' '.join(argv):<32}{statistics.median(s) * 1000:>10.0f}"
                  f"{min(s) * 1000:>10.0f}{max(s) * 1000:>10.0f}")
        start = time.perf_counter()
        for _ in range(args.runs):
            subprocess.run([sys.executable, "-c", "pass"], check=True)
        print(f"{'python -c pass (floor, mean)':<32}{(time.perf_counter() - start) / args.runs * 1000:>10.0f}")


if __name__ == "__main__":
    main()
