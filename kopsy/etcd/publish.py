"""Publish the on-instance etcd code into the cluster's state-store prefix.

User-data has no room for it (EC2's 16 KB), so control planes fetch it from the store at boot
and check it against the sha256 their user-data pins. ``update --yes`` publishes it before the
launch templates change; an unchanged module costs one read and no write.
"""

from __future__ import annotations

from typing import Any

from kopsy.bootstrap.render import ETCD_MODULE_KEY, etcd_module


def publish_etcd_module(cluster_store: Any, cluster: str) -> bool:
    """Write ``bootstrap/kopsy_etcd.py`` of ``cluster`` if it differs; True when it wrote.
    Read and written as the addons are (``read_object``/``write_object``: conditional writes)."""
    data = etcd_module()
    current = cluster_store.read_object(cluster, ETCD_MODULE_KEY)
    if current is not None and current.data == data:
        return False
    cluster_store.write_object(cluster, ETCD_MODULE_KEY, data, current.etag if current else None)
    return True
