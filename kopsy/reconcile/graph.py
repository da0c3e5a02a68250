"""Run tasks in dependency order on a bounded thread pool.

Independent tasks run concurrently; each starts once all its dependencies succeeded. A failed
task does not stop the others: its dependents are skipped, everything else finishes, and the
caller gets one result per task (fan-out finishes before it raises).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Skipped(Exception):
    """A task did not run because a dependency failed."""


@dataclass
class Outcome(Generic[K]):
    key: K
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_acyclic(deps: Mapping[K, set[K]]) -> None:
    state: dict[K, int] = {}

    def visit(k: K, path: list[K]) -> None:
        if state.get(k) == 2:
            return
        if state.get(k) == 1:
            raise ValueError(f"dependency cycle: {' -> '.join(map(str, path + [k]))}")
        state[k] = 1
        for d in deps.get(k, set()):
            visit(d, path + [k])
        state[k] = 2

    for k in deps:
        visit(k, [])


def run_graph(
    tasks: Mapping[K, Callable[[], None]],
    deps: Mapping[K, set[K]],
    *,
    workers: int = 8,
    on_start: Callable[[K], None] | None = None,
    on_done: Callable[[Outcome[K]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[K, Outcome[K]]:
    """Run every task after its deps (deps outside ``tasks`` are treated as already done)."""
    pending = {k: {d for d in deps.get(k, set()) if d in tasks} for k in tasks}
    check_acyclic(pending)
    results: dict[K, Outcome[K]] = {}
    lock = threading.Lock()
    running: dict[Future[None], K] = {}

    def finish(outcome: Outcome[K]) -> None:
        results[outcome.key] = outcome
        if on_done:
            on_done(outcome)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="apply") as pool:
        while len(results) < len(tasks):
            with lock:
                for k in list(pending):
                    failed = [d for d in pending[k] if d in results and not results[d].ok]
                    if failed:
                        del pending[k]
                        finish(Outcome(k, Skipped(f"skipped: {failed[0]} failed")))
                    elif all(d in results for d in pending[k]):
                        del pending[k]
                        if should_stop and should_stop():
                            finish(Outcome(k, Skipped("skipped: stopped")))
                            continue
                        if on_start:
                            on_start(k)
                        running[pool.submit(tasks[k])] = k
            if not running:
                if pending and len(results) < len(tasks):
                    continue  # skips were recorded; re-scan
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                k = running.pop(fut)
                exc = fut.exception()
                finish(Outcome(k, exc))
    return results
