"""Benchmark ``kopsy delete cluster --yes`` through the latency proxy.

For each shape of ``bench/update.py``: the cluster is built (``update --yes`` straight to moto,
not measured), then ``delete --yes`` runs through the 50 ms/call proxy. Prints wall time, span
(first call to last answer), calls by operation, latency periods spent in sequence, and the
ratio to the dependency-forced minimum (``FORCED_DELETE`` in bench/update.py). Target from
issue 8: the large shape in under 60 latency periods.

moto deletes at once what AWS deletes in minutes (instance termination, NLB deletion): on AWS
waiting for those dominates, and kopsy's polling interval then matters more than latency.

    .venv/bin/python bench/delete.py [--shapes small,ha] [--latency-ms 50] [--timeline] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from update import (  # noqa: E402
    CLUSTER,
    FORCED_DELETE,
    SHAPES,
    Bench,
    Measurement,
    Shape,
    forced_periods,
    print_operations,
    print_timeline,
    ratio_line,
)


@dataclass
class DeleteFigures:
    shape: Shape
    delete: Measurement
    delete_slow: Measurement | None = None  # the same at a second latency (``slope_ms``)
    forced: int = field(default_factory=lambda: forced_periods(FORCED_DELETE))


def measure_delete(bench: Bench, shape: Shape, name: str = CLUSTER, *, prepared: bool = False,
                   slope_ms: float = 0.0) -> DeleteFigures:
    """Delete the cluster through the proxy (building it first, straight to moto, unless
    ``prepared``); with ``slope_ms``, build and delete it once more at that latency."""

    def run(build: bool) -> Measurement:
        if build:
            bench.prepare(shape, name)
            bench.kopsy(["update", "cluster", name, "--yes"], direct=True)
        m = bench.measure("delete --yes", ["delete", "cluster", name, "--yes"])
        if f"Deleted cluster: {name}" not in m.stdout:
            raise RuntimeError(f"delete did not finish:\n{m.stdout}")
        return m

    fig = DeleteFigures(shape, run(build=not prepared))
    if slope_ms:
        with bench.latency_of(slope_ms):
            fig.delete_slow = run(build=True)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark kopsy delete through a latency proxy in front of moto.")
    ap.add_argument("--shapes", default="small,ha", help=f"comma list of {', '.join(SHAPES)} (default small,ha)")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--slope-ms", type=float, default=250.0,
                    help="also run at this latency, to count the latency periods waited (0: skip)")
    ap.add_argument("--timeline", action="store_true", help="print every call with its timing")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    results = []
    with Bench(args.latency_ms) as bench:
        print(f"kopsy delete: moto server behind a {args.latency_ms:.0f} ms/call proxy; "
              f"forced minimum {forced_periods(FORCED_DELETE)} periods")
        for name in args.shapes.split(","):
            shape = SHAPES[name]
            fig = measure_delete(bench, shape, slope_ms=args.slope_ms)
            print(f"\n== {shape.name}: {shape.describe()}")
            print("  " + ratio_line(fig.delete, fig.forced, fig.delete_slow))
            print(f"      span in latency periods: {fig.delete.span / fig.delete.latency:.1f} (issue 8 target for large: < 60)")
            print_operations(fig.delete)
            if args.timeline:
                print_timeline(fig.delete)
            results.append({"shape": shape.name, "delete": fig.delete.summary(), "forced_delete": fig.forced,
                            "delete_slow": fig.delete_slow.summary() if fig.delete_slow else None})
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
