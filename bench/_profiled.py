"""Run the ``kopsy`` console script with cProfile in every thread, timed by ``time.thread_time``.

    python bench/_profiled.py OUT.prof -- /path/to/kopsy ARGS...

Each thread gets its own profiler (cProfile sees only the thread that enabled it); at exit they
are merged into OUT.prof. The console script's own settings (its GC thresholds) are kept, and
so is its exit code. Used by ``bench/cpu.py``.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time

from _console import run_console_script

out, sep, _kopsy, *args = sys.argv[1:]
assert sep == "--"
profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    p = cProfile.Profile(time.thread_time)
    p.enable()
    try:
        _run(self)
    finally:
        p.disable()
        with _lock:
            profiles.append(p)


threading.Thread.run = _profiled_run  # type: ignore[method-assign]

main_profile = cProfile.Profile(time.thread_time)
main_profile.enable()
try:
    code = run_console_script(args)
finally:
    main_profile.disable()
with _lock:
    stats = pstats.Stats(main_profile)
    for p in profiles:
        stats.add(p)
stats.dump_stats(out)
sys.stdout.flush()
os._exit(code)
