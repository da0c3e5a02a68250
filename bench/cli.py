"""CLI start-up cost: medians of CPU (and wall) of `kopsy --help`, `kopsy --version` and
`kopsy get clusters` on a file:// store. CPU is the process's own (``os.wait4``), which load from
other work on the machine barely moves; wall time is given too.

Run: .venv/bin/python bench/cli.py [--runs 21]
Prints figures; never passes or fails on time. ``light_commands()`` is what bench/run_all.py reports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update import KOPSY, run_measured  # noqa: E402

# The targets: median CPU in ms.
TARGETS_MS = {"--help": 60, "--version": 60, "get clusters": 100}


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) of each run."""
    cpu, wall = [], []
    for _ in range(runs):
        start = time.perf_counter()
        r, usage = run_measured([KOPSY, *argv], env, timeout=120)
        wall.append(time.perf_counter() - start)
        if r.returncode != 0:
            raise RuntimeError(f"kopsy {' '.join(argv)} exited {r.returncode}: {r.stderr[-500:]}")
        cpu.append(usage.ru_utime + usage.ru_stime)
    return cpu, wall


def light_commands(runs: int = 21) -> dict[str, Any]:
    """Median / min / max CPU and median wall (ms) per light command, and Python's own floor."""
    out: dict[str, Any] = {"runs": runs, "commands": {}}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KOPSY_"))}
        env.update({"KOPSY_STATE_STORE": f"file://{tmp}/store", "HOME": tmp})
        subprocess.run([KOPSY, "create", "cluster", "bench.example.com", "--zones", "us-east-1a",
                        "--ssh-public-key", f"{key}.pub"], env=env, check=True, capture_output=True)
        for name in TARGETS_MS:
            cpu, wall = timed(name.split(), env, runs)
            out["commands"][name] = {"cpu_ms": round(statistics.median(cpu) * 1000, 1),
                                     "cpu_min_ms": round(min(cpu) * 1000, 1), "cpu_max_ms": round(max(cpu) * 1000, 1),
                                     "wall_ms": round(statistics.median(wall) * 1000, 1),
                                     "target_ms": TARGETS_MS[name]}
        cpu, _ = zip(*(_floor(env) for _ in range(runs)))
        out["python_floor_cpu_ms"] = round(statistics.median(cpu) * 1000, 1)
    return out


def _floor(env: dict[str, str]) -> tuple[float, float]:
    _, usage = run_measured([sys.executable, "-c", "pass"], env)
    return usage.ru_utime + usage.ru_stime, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    res = light_commands(args.runs)
    print(f"{'command':<24}{'CPU ms (median)':>16}{'min':>8}{'max':>8}{'wall ms':>10}{'target':>8}  runs={args.runs}")
    for name, f in res["commands"].items():
        print(f"{'kopsy ' + name:<24}{f['cpu_ms']:>16.0f}{f['cpu_min_ms']:>8.0f}{f['cpu_max_ms']:>8.0f}"
              f"{f['wall_ms']:>10.0f}{f['target_ms']:>8}")
    print(f"{'python -c pass (floor)':<24}{res['python_floor_cpu_ms']:>16.0f}")


if __name__ == "__main__":
    main()
