"""The console script raises the cyclic GC's threshold (a short run frees almost nothing in
cycles) but never turns the collector off, so long commands stay bounded in memory; embedding
kopsy (``main(argv)``, the tests) leaves the caller's GC alone."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, sys
import kopsy.cli.main as m
def report(code):
    print(gc.isenabled(), gc.get_threshold()[0], flush=True)
    raise SystemExit(code)
m._exit_now = report
sys.argv = ["kopsy", "--version"]
if sys.argv[1:] and "{mode}" == "embedded":
    try:
        m.main(["--version"])
    except SystemExit:
        report(0)
else:
    m.main()
"""


def _run(mode: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", SCRIPT.replace("{mode}", mode)], capture_output=True, text=True, check=True)
    return r.stdout.split()[-2:]


def test_the_console_script_raises_the_threshold_and_keeps_the_collector() -> None:
    from kopsy.cli.main import GC_THRESHOLDS

    assert _run("script") == ["True", str(GC_THRESHOLDS[0])]


def test_embedding_leaves_the_callers_gc_alone() -> None:
    import gc

    assert _run("embedded") == ["True", str(gc.get_threshold()[0])]


BOUNDED = """
import gc, sys
import kopsy.cli.main as m
m._tune_gc()
class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it
peak = 0
for i in range(600_000):
    Node()
    if i % 20_000 == 0:
        peak = max(peak, sum(gc.get_count()), len(gc.get_objects(generation=0)))
print(peak, gc.get_stats()[0]["collections"])
"""


def test_cyclic_garbage_of_a_long_command_stays_bounded() -> None:
    """Under the console script's thresholds a long command that keeps making cyclic garbage is
    collected as it goes: what waits is bounded by the threshold, not by how long it runs."""
    from kopsy.cli.main import GC_THRESHOLDS

    r = subprocess.run([sys.executable, "-c", BOUNDED], capture_output=True, text=True, check=True)
    peak, collections = (int(x) for x in r.stdout.split())
    assert collections >= 600_000 // GC_THRESHOLDS[0] // 2  # it ran, again and again
    assert peak <= GC_THRESHOLDS[0] * 1.1
