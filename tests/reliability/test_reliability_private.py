"""The fault and crash suites on the private topology (two zones, a NAT gateway and Elastic IP
per zone, a bastion): at 20 % API faults, and SIGKILLed after k calls spread over the run,
``update --yes`` converges to the clean run's inventory with no duplicate NAT gateway or
Elastic IP (moto ignores CreateNatGateway's ClientToken: reruns must adopt them by their tags),
and ``delete --yes`` leaves nothing, NAT gateways and addresses included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import CLUSTER, Baseline, Cloud, measure_baseline
from test_reliability_crash import kill_after, rerun

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PRIVATE = ("--topology", "private", "--bastion")
KILL_POINTS = 8


@pytest.fixture(scope="module")
def private_baseline(rel_cloud: Cloud) -> Baseline:
    base = measure_baseline(rel_cloud, *PRIVATE)
    assert base.inventory.counts()["nat_gateway"] == 2 and base.inventory.counts()["elastic_ip"] == 2, base.inventory.counts()
    return base


@pytest.fixture
def private_fresh(rel_cloud: Cloud, private_baseline: Baseline) -> Iterator[Cloud]:
    rel_cloud.reset()
    rel_cloud.restore_store(private_baseline.store)
    yield rel_cloud
    rel_cloud.proxy.set_faults(0.0)


def _deleted_to_zero(cloud: Cloud) -> None:
    r = cloud.kopsy(["delete", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert cloud.inventory().total() == 0, cloud.inventory().counts()
    assert cloud.store_objects(f"{CLUSTER}/") == {}


def test_private_update_and_delete_converge_under_20_percent_faults(private_fresh: Cloud, private_baseline: Baseline) -> None:
    cloud = private_fresh
    cloud.proxy.set_faults(0.2, seed=3)
    r = cloud.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    assert len([c for c in cloud.proxy.calls if c.fault]) >= 5
    inv = cloud.inventory()
    assert inv.duplicates() == {}
    assert inv.shape() == private_baseline.inventory.shape()
    r = cloud.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0 and "No changes need to be applied" in r.stdout, r.stdout + r.stderr
    _deleted_to_zero(cloud)
    cloud.proxy.set_faults(0.0)
    assert cloud.inventory().total() == 0


@pytest.mark.parametrize("point", range(KILL_POINTS))
def test_private_update_killed_after_k_calls_reruns_to_the_clean_inventory(private_fresh: Cloud, private_baseline: Baseline,
                                                                           point: int) -> None:
    cloud = private_fresh
    k = 1 + round(point * (private_baseline.calls - 2) / (KILL_POINTS - 1))
    update = ["update", "cluster", CLUSTER, "--yes"]
    assert kill_after(cloud, update, k), f"the update finished before call {k}"
    assert cloud.inventory().duplicates() == {}
    rerun(cloud, update)
    inv = cloud.inventory()
    assert inv.duplicates() == {}, f"killed after {k} calls"
    assert inv.shape() == private_baseline.inventory.shape(), f"killed after {k} calls"
    _deleted_to_zero(cloud)


@pytest.mark.parametrize("fraction", (0.3, 0.6, 0.9))
def test_private_update_killed_then_delete_straight_away_leaves_nothing(private_fresh: Cloud, private_baseline: Baseline,
                                                                        fraction: float) -> None:
    cloud = private_fresh
    k = max(1, round(fraction * private_baseline.calls))
    assert kill_after(cloud, ["update", "cluster", CLUSTER, "--yes"], k), f"the update finished before call {k}"
    rerun(cloud, ["delete", "cluster", CLUSTER, "--yes"])
    assert cloud.inventory().total() == 0, cloud.inventory().counts()
