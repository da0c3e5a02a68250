"""Benchmark ``kopsy delete cluster --yes`` against moto server behind a latency proxy.

For the two cluster shapes of ``bench/update.py``: wall time of ``delete --yes``, AWS calls by
operation and the number of latency periods spent in sequence. Figures only, never pass/fail.
Note moto deletes instantly what AWS deletes in minutes (instances, load balancers): on AWS,
waiting for those dominates.

    .venv/bin/python bench/delete.py [--latency 0.05]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from update import SHAPES, base_env, kopsy, moto_and_proxy, prepare_cluster, report_calls  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds added to every AWS call (default 0.05)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, moto_and_proxy(args.latency) as (moto_url, proxy):
        work = Path(tmp)
        env = base_env(proxy.url, work)
        print(f"kopsy delete benchmark: moto server behind a {args.latency * 1000:.0f} ms latency proxy")
        for shape in SHAPES:
            name = "bench.example.com"
            prepare_cluster(moto_url, env, shape, name, work)
            kopsy(["update", "cluster", name, "--yes"], env)
            print(f"\n== {shape.name}")
            proxy.reset()
            wall, r = kopsy(["delete", "cluster", name, "--yes"], env)
            assert f"Deleted cluster: {name}" in r.stdout, r.stdout
            report_calls("delete --yes", proxy, wall, args.latency)
            for op, n in sorted(proxy.by_operation().items(), key=lambda kv: (-kv[1], kv[0])):
                print(f"      {n:4d}  {op}")


if __name__ == "__main__":
    main()
