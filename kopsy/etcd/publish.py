"""Publish the on-instance etcd code into the cluster's state-store prefix.

User-data has no room for it (EC2's 16 KB), so control planes fetch it from the store at boot
and check it against the sha256 their user-data pins. ``update --yes`` publishes it with the
addons, before any launch template changes (``apply_plan(publish=...)``); an unchanged module
costs no call (the cluster's listing shows it current, ``ClusterStore.differs``) and no write.
"""

from __future__ import annotations

from typing import Any

from kopsy.bootstrap.render import ETCD_MODULE_KEY, etcd_module


def publish_etcd_module(cluster_store: Any, cluster: str, listing: Any = None) -> bool:
    """Write ``bootstrap/kopsy_etcd.py`` of ``cluster`` if it differs; True when it wrote.
    Judged and written as the addons are (``differs``/``write_object``: conditional writes)."""
    data = etcd_module()
    stale, etag = cluster_store.differs(cluster, ETCD_MODULE_KEY, data, listing or cluster_store.listing(cluster))
    if stale:
        cluster_store.write_object(cluster, ETCD_MODULE_KEY, data, etag)
    return stale
