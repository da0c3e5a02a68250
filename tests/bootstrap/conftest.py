"""Bootstrap test fixtures: a cluster PKI and a matrix of rendered user-data."""

from __future__ import annotations

import pytest

from kopsy.pki import ClusterPKI, ca_cert_hash, generate_cluster_pki


@pytest.fixture(scope="session")
def cluster_pki() -> ClusterPKI:
    return generate_cluster_pki("demo.example.com")


@pytest.fixture(scope="session")
def ca_hash(cluster_pki: ClusterPKI) -> str:
    return ca_cert_hash(cluster_pki.ca_cert)
