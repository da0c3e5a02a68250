"""Fixtures of the reliability suite: one moto server (with an Ubuntu image) behind the fault
proxy for the whole session, and a clean baseline run every fault case is compared with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from reliability_support import CLUSTER, AwsProxy, Baseline, Cloud, measure_baseline, start_moto


@pytest.fixture(scope="session")
def rel_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_moto(tmp_path_factory.mktemp("moto"))
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except Exception:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def rel_proxy(rel_moto: str) -> Iterator[AwsProxy]:
    with AwsProxy(rel_moto, seed=20) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def rel_cloud(rel_moto: str, rel_proxy: AwsProxy, tmp_path_factory: pytest.TempPathFactory) -> Cloud:
    return Cloud(tmp_path_factory.mktemp("cloud"), rel_moto, rel_proxy)


@pytest.fixture(scope="session")
def baseline(rel_cloud: Cloud) -> Baseline:
    return measure_baseline(rel_cloud)


@pytest.fixture
def fresh(rel_cloud: Cloud, baseline: Baseline) -> Cloud:
    """An empty cloud whose state store holds the baseline cluster's spec (nothing built yet)."""
    rel_cloud.reset()
    rel_cloud.restore_store(baseline.store)
    return rel_cloud


@pytest.fixture
def built(fresh: Cloud) -> Cloud:
    """The baseline cluster, built by a clean update."""
    r = fresh.kopsy(["update", "cluster", CLUSTER, "--yes"])
    assert r.returncode == 0, r.stderr
    return fresh
