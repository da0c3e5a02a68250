"""Concurrent operators: two ``update --yes`` on one cluster at the same moment. The state-store
lock lets one proceed; the other names the holder and exits non-zero; nothing is duplicated.
(Two concurrent *edits* — no lost write — are covered by
tests/cli/test_create_get_edit.py::test_two_concurrent_edits_one_wins_one_conflicts.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import CLUSTER, Baseline, Cloud, one_error_line

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # the real kopsy executable against moto behind the fault proxy


@pytest.fixture
def slow(fresh: Cloud) -> Iterator[Cloud]:
    """50 ms a call, so that two runs started together certainly overlap."""
    fresh.proxy.latency = 0.05
    yield fresh
    fresh.proxy.latency = 0.0


@pytest.mark.parametrize("round_", range(2))
def test_two_updates_at_once_one_proceeds_the_other_names_the_lock_holder(slow: Cloud, baseline: Baseline, round_: int) -> None:
    update = ["update", "cluster", CLUSTER, "--yes"]
    procs = [slow.popen(update), slow.popen(update)]
    results = [slow.collect(p) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], [r[2][-500:] for r in results]
    (winner,) = [r for r in results if r[0] == 0]
    (loser,) = [r for r in results if r[0] == 1]
    assert "Changes applied" in winner[1]
    errors = one_error_line(loser[2])
    assert len(errors) == 1 and "Traceback" not in loser[2]
    assert f'cluster "{CLUSTER}" is locked by' in errors[0] and "running update cluster" in errors[0]
    assert "Will create" not in loser[1], "the loser must not have planned or applied anything"

    inv = slow.inventory()
    assert inv.duplicates() == {}
    assert inv.shape() == baseline.inventory.shape()
    assert f"{CLUSTER}/lock" not in slow.store_objects(f"{CLUSTER}/"), "the winner released its lock"


def test_update_and_delete_at_once_do_not_interleave(slow: Cloud, baseline: Baseline) -> None:
    r = slow.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0
    procs = [slow.popen(["update", "cluster", CLUSTER, "--yes"]), slow.popen(["delete", "cluster", CLUSTER, "--yes"])]
    (ucode, _, uerr), (dcode, dout, derr) = [slow.collect(p) for p in procs]
    assert sorted([ucode, dcode]) == [0, 1], (uerr[-400:], derr[-400:])
    loser_err = uerr if ucode else derr
    assert len(one_error_line(loser_err)) == 1 and "is locked by" in loser_err
    if dcode == 0:
        assert slow.inventory().total() == 0
    else:
        assert slow.inventory().shape() == baseline.inventory.shape()
