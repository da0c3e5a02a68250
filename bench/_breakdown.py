"""Run the ``kopsy`` console script with its CPU split by kind of work, without a profiler.

    python bench/_breakdown.py OUT.json -- /path/to/kopsy ARGS...

A profiler inflates pure-Python work several times over, which hides what a run really spends
where. Here a few entry points are wrapped instead, each timing ``time.thread_time`` in the
thread that calls it; the outermost wrapped call on a thread's stack gets the time (an import
made while a client is built counts as building the client), so the parts add up to at most
the process's CPU:

- ``import``: every ``import`` statement (``builtins.__import__``) outside the parts below;
- ``clients``: botocore building a client (``Session.create_client``);
- ``calls``: botocore making an API call (serializing, signing, sending, parsing the answer;
  not the wait for it, which costs no CPU);
- ``render``: user-data and addons rendered from the templates (the renderer's modules are
  imported up front, under ``import``, so that its functions can be wrapped);
- ``kopsy``: the rest, i.e. kopsy's own work (spec, plan, output) and Python's start-up.

OUT.json gets the parts in seconds, the process's CPU (``os.times``) and the number of API
calls. The console script's GC thresholds and exit code are kept. Used by ``bench/cpu.py``.
"""

from __future__ import annotations

import builtins
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

out, sep, _kopsy, *args = sys.argv[1:]
assert sep == "--"
spent: dict[str, float] = {"import": 0.0, "clients": 0.0, "calls": 0.0, "render": 0.0}
counts: dict[str, int] = {name: 0 for name in spent}
_lock = threading.Lock()
_local = threading.local()


def timed(part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        if getattr(_local, "inside", False):
            return fn(*a, **k)
        _local.inside = True
        start = time.thread_time()
        try:
            return fn(*a, **k)
        finally:
            elapsed = time.thread_time() - start
            _local.inside = False
            with _lock:
                spent[part] += elapsed
                counts[part] += 1

    return wrapper


builtins.__import__ = timed("import", builtins.__import__)

import botocore.client  # noqa: E402  (counted: the wrapper above is in place)
import botocore.session  # noqa: E402

import kopsy.bootstrap  # noqa: E402
import kopsy.bootstrap.addons  # noqa: E402
import kopsy.bootstrap.render  # noqa: E402

botocore.session.Session.create_client = timed("clients", botocore.session.Session.create_client)  # type: ignore[method-assign]
botocore.client.BaseClient._make_api_call = timed("calls", botocore.client.BaseClient._make_api_call)  # type: ignore[method-assign]
render = timed("render", kopsy.bootstrap.render.render_user_data)
kopsy.bootstrap.render.render_user_data = kopsy.bootstrap.render_user_data = render  # type: ignore[assignment]
kopsy.bootstrap.addons.render_addons = timed("render", kopsy.bootstrap.addons.render_addons)  # type: ignore[assignment]

from _console import run_console_script  # noqa: E402

code = run_console_script(args)
times = os.times()
with _lock:
    total = times.user + times.system
    doc: dict[str, Any] = {"cpu": total, "parts": dict(spent), "api_calls": counts["calls"],
           "parts_sum": sum(spent.values())}
    doc["parts"]["kopsy"] = max(0.0, total - doc["parts_sum"])
with open(out, "w") as fh:
    json.dump(doc, fh)
sys.stdout.flush()
os._exit(code)
