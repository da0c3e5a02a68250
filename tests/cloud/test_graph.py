"""The dependency executor: order, concurrency of independent tasks, failures skip dependents only."""

from __future__ import annotations

import threading

import pytest

from kopsy.reconcile.graph import Skipped, run_graph


def test_runs_after_dependencies_and_in_parallel() -> None:
    order: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2, timeout=5)  # b and c must run at the same time

    def task(name: str, meet: bool = False):  # type: ignore[no-untyped-def]
        def run() -> None:
            if meet:
                barrier.wait()
            with lock:
                order.append(name)

        return run

    deps = {"b": {"a"}, "c": {"a"}, "d": {"b", "c"}}
    results = run_graph({"a": task("a"), "b": task("b", True), "c": task("c", True), "d": task("d")}, deps, workers=4)
    assert all(r.ok for r in results.values())
    assert order[0] == "a" and order[-1] == "d"


def test_failure_skips_dependents_but_finishes_the_rest() -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    ran: list[str] = []
    results = run_graph(
        {"a": boom, "b": lambda: ran.append("b"), "c": lambda: ran.append("c")},
        {"b": {"a"}},
        workers=2,
    )
    assert isinstance(results["a"].error, RuntimeError)
    assert isinstance(results["b"].error, Skipped)
    assert results["c"].ok and ran == ["c"]


def test_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match="cycle"):
        run_graph({"a": lambda: None, "b": lambda: None}, {"a": {"b"}, "b": {"a"}})


def test_retry_is_bounded_and_specific() -> None:
    from kopsy.cloud.aws.retry import retry

    calls: list[float] = []
    clock = [0.0]

    def fn() -> None:
        calls.append(clock[0])
        raise ValueError("still")

    def sleep(s: float) -> None:
        clock[0] += s

    with pytest.raises(ValueError):
        retry(fn, when=lambda e: isinstance(e, ValueError), timeout=10, sleep=sleep, clock=lambda: clock[0])
    assert 2 < len(calls) < 20 and clock[0] <= 10.0
    with pytest.raises(KeyError):  # other errors are not retried
        retry(lambda: {}["x"], when=lambda e: isinstance(e, ValueError), sleep=sleep, clock=lambda: clock[0])
