"""Publish the on-instance etcd code into the cluster's state-store prefix.

User-data has no room for it (EC2's 16 KB), so control planes fetch it from the store at boot
and check it against the sha256 their user-data pins. ``update --yes`` publishes it before the
launch templates change; an unchanged module costs one read and no write.
"""

from __future__ import annotations

from typing import Any

from kopsy.bootstrap.render import ETCD_MODULE_KEY, etcd_module
from kopsy.errors import ObjectNotFound


def publish_etcd_module(cluster_store: Any, cluster: str) -> bool:
    """Write ``bootstrap/kopsy_etcd.py`` of ``cluster`` if it differs; True when it wrote."""
    store = cluster_store.store
    key = f"{cluster}/{ETCD_MODULE_KEY}"
    data = etcd_module()
    try:
        current = store.get(key)
    except ObjectNotFound:
        store.create(key, data)
        return True
    if current.data == data:
        return False
    store.replace(key, data, current.etag)
    return True
