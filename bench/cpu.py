"""kopsy's own CPU for ``update cluster --yes``, fresh and no-op, with medians and profiles.

The same runs as ``bench/update.py`` (the real ``kopsy`` executable, moto server behind the
latency proxy), repeated: each round builds the shape from scratch (a fresh ``update --yes``)
and then runs the no-op ``--noops`` times. CPU is the kopsy process's own (user + system from
``os.wait4``). Figures only, never pass/fail.

With ``--baseline DIR`` (a checkout of another revision, e.g. ``git archive HEAD~1 | tar -x -C
DIR``) every run is also made with that kopsy (``PYTHONPATH=DIR``), interleaved with this one's,
so both see the same machine load: the figures to compare a change by.

With ``--profile DIR`` one more fresh and one more no-op run go through ``bench/_profiled.py``:
cProfile in *every* thread (the command is multithreaded: ``kopsy.parallel``, the prewarm
thread), timed with ``time.thread_time`` so the figures are CPU, merged into one pstats file per
run, and the top functions printed by own and cumulative CPU.

With ``--breakdown N`` N more fresh and no-op runs go through ``bench/_breakdown.py``, which
splits each run's CPU into imports, building botocore clients, botocore's API calls, rendering
and kopsy's own work, without a profiler's distortion; the medians of each part are printed.

    .venv/bin/python bench/cpu.py [--shape ha] [--rounds 3] [--noops 3] [--baseline DIR] [--profile DIR] [--breakdown N]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update import CLUSTER, KOPSY, SHAPES, Bench, run_measured  # noqa: E402

HERE = Path(__file__).resolve().parent


def profiled(bench: Bench, out: Path, args: list[str]) -> None:
    r, _ = run_measured([sys.executable, str(HERE / "_profiled.py"), str(out), "--", KOPSY, *args], bench.env())
    if r.returncode != 0:
        raise RuntimeError(f"profiled kopsy {' '.join(args)} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")


def broken_down(bench: Bench, args: list[str], out: Path) -> dict[str, Any]:
    """One run through ``bench/_breakdown.py``: its CPU by part (seconds) and its API calls."""
    r, _ = run_measured([sys.executable, str(HERE / "_breakdown.py"), str(out), "--", KOPSY, *args], bench.env())
    if r.returncode != 0:
        raise RuntimeError(f"kopsy {' '.join(args)} (broken down) exited {r.returncode}:\n{r.stderr[-2000:]}")
    return dict(json.loads(out.read_text()))


def breakdown_table(label: str, runs: list[dict[str, Any]]) -> str:
    """Median seconds of each part over ``runs``, with its share of the median CPU."""
    cpu = statistics.median(r["cpu"] for r in runs)
    calls = statistics.median(r["api_calls"] for r in runs)
    lines = [f"\n{label} ({len(runs)} runs, median CPU {cpu:.3f} s, {calls:.0f} API calls)"]
    for part in runs[0]["parts"]:  # in bench/_breakdown.py's order
        median = statistics.median(r["parts"][part] for r in runs)
        extra = f"  ({1000 * median / calls:.1f} ms a call)" if part == "calls" and calls else ""
        lines.append(f"  {part:<8} {median:6.3f} s  {100 * median / cpu:4.0f}%{extra}")
    return "\n".join(lines)


def measure(bench: Bench, args: list[str], baseline: str | None, *, noop: bool) -> float:
    """CPU seconds of one run, of this kopsy or (``baseline``) the one at that path."""
    env = bench.env() if baseline is None else {**bench.env(), "PYTHONPATH": baseline}
    r, usage = run_measured([KOPSY, *args], env)
    if r.returncode != 0:
        raise RuntimeError(f"kopsy {' '.join(args)} ({baseline or 'this tree'}) exited {r.returncode}:\n{r.stderr[-2000:]}")
    if noop != ("No changes need to be applied" in r.stdout):
        raise RuntimeError(f"expected {'a no-op' if noop else 'changes'}:\n{r.stdout[-2000:]}")
    return float(usage.ru_utime + usage.ru_stime)


def line(label: str, cpus: list[float]) -> str:
    return f"{label:<34} CPU s {' '.join(f'{c:.3f}' for c in cpus)}  median {statistics.median(cpus):.3f}"


def show(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    print(f"\n== {path.name}: {stats.total_tt:.3f} s CPU in profiled threads (profiling overhead included)")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="ha", choices=sorted(SHAPES))
    ap.add_argument("--rounds", type=int, default=3, help="fresh builds (each followed by --noops no-ops)")
    ap.add_argument("--noops", type=int, default=3)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--baseline", metavar="DIR", help="also run the kopsy in DIR (PYTHONPATH), interleaved")
    ap.add_argument("--profile", metavar="DIR", help="also profile one fresh and one no-op run into DIR")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--breakdown", type=int, default=0, metavar="N",
                    help="also split the CPU of N fresh and N no-op runs by part (bench/_breakdown.py)")
    args = ap.parse_args(argv)
    shape = SHAPES[args.shape]
    update = ["update", "cluster", CLUSTER, "--yes"]
    variants: list[str | None] = [None]
    if args.baseline:
        base = str(Path(args.baseline).resolve())
        subprocess.run([sys.executable, "-m", "compileall", "-q", f"{base}/kopsy"], check=False, stdout=subprocess.DEVNULL)
        variants.append(base)
    fresh: dict[str | None, list[float]] = {v: [] for v in variants}
    noop: dict[str | None, list[float]] = {v: [] for v in variants}
    with Bench(args.latency_ms) as bench:
        for i in range(args.rounds):
            order = variants if i % 2 == 0 else variants[::-1]
            bench.prepare(shape)
            fresh[order[0]].append(measure(bench, update, order[0], noop=False))
            for j in range(args.noops):
                for v in order if j % 2 == 0 else order[::-1]:
                    noop[v].append(measure(bench, update, v, noop=True))
            if len(order) > 1:  # the other one's fresh update, on a cluster built anew
                bench.prepare(shape)
                fresh[order[1]].append(measure(bench, update, order[1], noop=False))
        for v in variants:
            who = "this tree" if v is None else f"baseline {v}"
            print(line(f"{shape.name} fresh update --yes ({who})", fresh[v]))
            print(line(f"{shape.name} no-op update --yes ({who})", noop[v]))
        if args.profile:
            out = Path(args.profile)
            out.mkdir(parents=True, exist_ok=True)
            bench.prepare(shape)
            profiled(bench, out / "fresh.prof", update)
            profiled(bench, out / "noop.prof", update)
        if args.breakdown:
            parts: dict[str, list[dict[str, Any]]] = {"fresh": [], "no-op": []}
            with tempfile.TemporaryDirectory() as tmp:
                for i in range(args.breakdown):
                    bench.prepare(shape)
                    parts["fresh"].append(broken_down(bench, update, Path(tmp) / f"fresh-{i}.json"))
                    parts["no-op"].append(broken_down(bench, update, Path(tmp) / f"noop-{i}.json"))
            for kind, runs in parts.items():
                print(breakdown_table(f"{shape.name} {kind} update --yes, CPU by part", runs))
    if args.profile:
        for name in ("fresh.prof", "noop.prof"):
            show(Path(args.profile) / name, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
