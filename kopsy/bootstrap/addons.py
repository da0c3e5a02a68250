"""The cluster's addons: manifests kopsy renders and keeps in the state store, pinned by sha256.

kops keeps what its control planes apply under the cluster's ``addons/`` prefix; so does kopsy:
``<cluster>/addons/<name>/<file>.yaml``. ``update --yes`` writes them (``stale_addons``, ``write_addons``) before
the launch templates whose user-data pins their sha256 (``addon_hashes``), the first control
plane fetches them with its instance role, checks each against its pin and applies it; one byte
different and it refuses. Rendering is pure (the same cluster, the same bytes), so the dry run
pins exactly what ``--yes`` writes.

Images are pinned here, per Kubernetes minor where the project releases per minor. Where no
registry digest could be confirmed, the tag is pinned and the digest is an explicit gap
(``IMAGE_DIGEST_GAPS``, docs/addons.md); none is made up.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kopsy.spec.model import Cluster
    from kopsy.state.clusters import ClusterStore, Listing

ADDONS_PREFIX = "addons"

# kubernetes/cloud-provider-aws releases one CCM line per Kubernetes minor. No image was found
# published for 1.36 or 1.37 (a GitHub release is not a pushed image; registry.k8s.io answered
# 404 for v1.36.0-v1.36.2 in a check recorded by another project, 2026-07-25), so those minors run
# the newest published 1.35 line, one minor behind, as kops does for minors newer than its table.
CCM_IMAGE_1_35 = "registry.k8s.io/provider-aws/cloud-controller-manager:v1.35.2"
CCM_IMAGES: dict[str, str] = {"1.35": CCM_IMAGE_1_35, "1.36": CCM_IMAGE_1_35, "1.37": CCM_IMAGE_1_35}

# aws-ebs-csi-driver v1.59.0 and the sidecars its chart of that release pins.
EBS_CSI_IMAGES: dict[str, str] = {
    "driver": "public.ecr.aws/ebs-csi-driver/aws-ebs-csi-driver:v1.59.0",
    "provisioner": "public.ecr.aws/csi-components/csi-provisioner:v6.2.0-eksbuild.3",
    "attacher": "public.ecr.aws/csi-components/csi-attacher:v4.11.0-eksbuild.4",
    "resizer": "public.ecr.aws/csi-components/csi-resizer:v2.1.0-eksbuild.4",
    "livenessprobe": "public.ecr.aws/csi-components/livenessprobe:v2.18.0-eksbuild.4",
    "registrar": "public.ecr.aws/csi-components/csi-node-driver-registrar:v2.16.0-eksbuild.4",
}

# Images pinned by tag only: no registry digest for them could be confirmed (docs/addons.md).
IMAGE_DIGEST_GAPS: tuple[str, ...] = (CCM_IMAGE_1_35, *EBS_CSI_IMAGES.values())

# (relkey under the cluster, template): in the order the control plane applies them.
_ADDONS: tuple[tuple[str, str], ...] = (
    (f"{ADDONS_PREFIX}/aws-cloud-controller-manager/k8s-1.35.yaml", "addons/aws-cloud-controller-manager.yaml.j2"),
    (f"{ADDONS_PREFIX}/aws-ebs-csi-driver/v1.59.0.yaml", "addons/aws-ebs-csi-driver.yaml.j2"),
    (f"{ADDONS_PREFIX}/storage-gp3/v1.yaml", "addons/storageclass-gp3.yaml.j2"),
)


def ccm_image(minor: str) -> str:
    """The cloud-controller-manager image for a Kubernetes minor (validation keeps minors supported)."""
    from kopsy.bootstrap.render import RenderError

    try:
        return CCM_IMAGES[minor]
    except KeyError:
        raise RenderError(f"kopsy pins no cloud-controller-manager for Kubernetes {minor} "
                          f"(it knows {', '.join(CCM_IMAGES)})") from None


def render_addons(cluster: Cluster) -> dict[str, bytes]:
    """relkey -> manifest bytes, in apply order. Pure: the same cluster renders the same bytes."""
    import json

    from kopsy.bootstrap.render import _render, _safe
    from kopsy.bootstrap.rendercache import cached

    name = _safe("cluster name", cluster.name)
    ctx = {"cluster_name": name, "ccm_image": ccm_image(cluster.kubernetes_minor), "csi": EBS_CSI_IMAGES}
    inputs = json.dumps(ctx, sort_keys=True)

    def rendered(template: str) -> bytes:
        return cached(f"addon {template}", inputs, lambda: _render(template, **ctx).encode())

    return {key: rendered(template) for key, template in _ADDONS}


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def addon_hashes(cluster: Cluster) -> dict[str, str]:
    """relkey -> sha256 hex of each addon: what a control plane's user-data pins."""
    return {key: sha256_hex(data) for key, data in render_addons(cluster).items()}


def stale_addons(store: ClusterStore, cluster: Cluster, listing: Listing | None = None) -> list[tuple[str, bytes, str | None]]:
    """The addons the store lacks or holds with other bytes: (relkey, kopsy's bytes, ETag of the
    stored version or None when missing). Read-only; the cluster's ``listing`` settles current
    ones without a read (``ClusterStore.differs``), and the rest take one round trip that
    ``update`` overlaps with its plan."""
    from kopsy.parallel import parallel

    addons = render_addons(cluster)
    listing = listing or store.listing(cluster.name)
    verdicts = parallel(lambda item: store.differs(cluster.name, item[0], item[1], listing), list(addons.items()), name="addons")
    return [(key, data, etag) for (key, data), (stale, etag) in zip(addons.items(), verdicts) if stale]


def write_addons(store: ClusterStore, cluster: str, stale: list[tuple[str, bytes, str | None]]) -> list[str]:
    """Write what ``stale_addons`` found (conditionally on what it read); the keys written.

    Called before the launch templates that pin them are created or changed. Idempotent and
    resumable: a re-run after a kill finds only what is still missing or stale."""
    from kopsy.parallel import parallel

    parallel(lambda item: store.write_object(cluster, *item), stale, name="addons")
    return [key for key, _, _ in stale]

