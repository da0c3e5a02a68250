"""Crashes: ``update --yes`` SIGKILLed after exactly k AWS calls, for k spread over the whole
run; the rerun must converge to the clean inventory (no duplicates, nothing missing), and
``delete --yes`` must then leave nothing — also when it runs straight after the crash, on the
half-built cluster. ``delete --yes`` killed mid-way must finish on rerun.

The proxy (``hold_after``) lets exactly k calls through and holds the next ones, so the kill
point is exact even though kopsy runs calls in parallel.
"""

from __future__ import annotations

import time

import pytest
from reliability_support import CLUSTER, Baseline, Cloud, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy

UPDATE_POINTS = 16  # kill points spread over the clean update's calls
DELETE_FRACTIONS = (0.05, 0.3, 0.6, 0.85, 0.95, 1.0)  # 1.0: held at its very last call (config)


def kill_after(cloud: Cloud, args: list[str], k: int, timeout: float = 60) -> bool:
    """Run kopsy, let ``k`` AWS calls through, SIGKILL it while its next call is held.
    Returns False when the run finished before reaching its k-th call."""
    cloud.proxy.hold_after(k)
    proc = cloud.popen(args)
    deadline = time.monotonic() + timeout
    try:
        while not cloud.proxy.held.wait(0.01):
            if proc.poll() is not None:
                return False
            assert time.monotonic() < deadline, "kopsy neither finished nor reached the held call"
        proc.kill()
        proc.wait(timeout=10)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
        cloud.collect(proc)
        cloud.proxy.release()


def rerun(cloud: Cloud, args: list[str]) -> None:
    """Run again as a user would: a dead run's lock is reported, then taken over with --force-unlock."""
    r = cloud.kopsy(args)
    if r.returncode != 0:
        assert len(one_error_line(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "is locked by" in r.stderr and "--force-unlock" in r.stderr, r.stderr
        r = cloud.kopsy([*args, "--force-unlock"])
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("point", range(UPDATE_POINTS))
def test_update_killed_after_k_calls_reruns_to_the_clean_inventory(fresh: Cloud, baseline: Baseline, point: int) -> None:
    k = 1 + round(point * (baseline.calls - 2) / (UPDATE_POINTS - 1))
    update = ["update", "cluster", CLUSTER, "--yes"]
    assert kill_after(fresh, update, k), f"the update finished before call {k}"
    assert fresh.inventory().duplicates() == {}

    rerun(fresh, update)
    inv = fresh.inventory()
    assert inv.duplicates() == {}
    assert inv.shape() == baseline.inventory.shape(), f"killed after {k} calls"

    r = fresh.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert fresh.inventory().total() == 0, fresh.inventory().counts()
    assert fresh.store_objects(f"{CLUSTER}/") == {}


@pytest.mark.parametrize("fraction", (0.15, 0.35, 0.5, 0.65, 0.8, 0.97))
def test_update_killed_then_delete_straight_away_leaves_nothing(fresh: Cloud, baseline: Baseline, fraction: float) -> None:
    """The path most likely to leak: half-built resources (a profile without its role, a group
    without its rules) deleted without an update to finish them first."""
    k = max(1, round(fraction * baseline.calls))
    assert kill_after(fresh, ["update", "cluster", CLUSTER, "--yes"], k), f"the update finished before call {k}"
    rerun(fresh, ["delete", "cluster", CLUSTER, "--yes"])
    assert fresh.inventory().total() == 0, fresh.inventory().counts()
    assert fresh.store_objects(f"{CLUSTER}/") == {}


@pytest.mark.parametrize("fraction", DELETE_FRACTIONS)
def test_delete_killed_mid_way_finishes_on_rerun(built: Cloud, baseline: Baseline, fraction: float) -> None:
    k = max(1, round(fraction * baseline.delete_calls))
    before = built.proxy.forwarded
    if not kill_after(built, ["delete", "cluster", CLUSTER, "--yes"], k):
        # This delete needed fewer calls than the baseline's (one poll or retried
        # DependencyViolation less): build the cluster again and stop at that fraction of this run.
        made = built.proxy.forwarded - before
        built.restore_store(baseline.store)
        assert built.kopsy(["update", "cluster", CLUSTER, "--yes"]).returncode == 0
        k = max(1, min(round(fraction * made), made - 1))
        assert kill_after(built, ["delete", "cluster", CLUSTER, "--yes"], k), f"delete finished before call {k} of {made}"
    r = built.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    if r.returncode != 0:
        assert len(one_error_line(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr
        if "is locked by" in r.stderr:
            r = built.kopsy(["delete", "cluster", CLUSTER, "--yes", "--force-unlock"])
        elif "--region" in r.stderr:  # the state went first: delete by tags alone
            r = built.kopsy(["delete", "cluster", CLUSTER, "--yes", "--region", "us-east-1"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert built.inventory().total() == 0, built.inventory().counts()
    assert built.store_objects(f"{CLUSTER}/") == {}, "the state store still holds the cluster's objects"
