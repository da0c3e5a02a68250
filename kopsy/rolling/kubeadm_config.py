"""Before the first new-version control plane joins: move kubeadm's cluster-wide state.

``kubeadm join --control-plane`` reads the ClusterConfiguration from the ``kubeadm-config``
ConfigMap, so unless its ``kubernetesVersion`` moves first, a new control plane deploys the
*old* static pods. Cluster API's kubeadm control-plane provider updates it (and kube-proxy and
CoreDNS) before it scales up a new-version machine; this does the same over SSH on a surviving
control plane, with ``kubectl``:

1. read ``kubeadm-config`` and, if its ``kubernetesVersion`` is older, patch it;
2. set the kube-proxy DaemonSet's image to ``registry.k8s.io/kube-proxy:v<version>`` (kube-proxy is
   released with Kubernetes, under the same tag).

**Gap:** CoreDNS is not moved. Its version per Kubernetes minor is kubeadm's own constant,
which kopsy does not vendor (and will not guess); kubeadm keeps the running CoreDNS on a join.
"""

from __future__ import annotations

import json
import shlex

import yaml

from kopsy.errors import KopsyError
from kopsy.remote import SSHConnection
from kopsy.spec.versions import parse_version
from kopsy.validate.facts import KUBECTL

GET = f"{KUBECTL} -n kube-system get configmap kubeadm-config -o json"
KUBE_PROXY_IMAGE = "registry.k8s.io/kube-proxy:v{version}"


class KubeadmConfigFailed(KopsyError):
    pass


def sync_cluster_version(conn: SSHConnection, version: str) -> list[str]:
    """Move kubeadm-config and kube-proxy to ``version`` when they are older; what was done."""
    want = version.lstrip("v")
    got = conn.run(GET)
    if not got.ok:
        raise KubeadmConfigFailed(f"cannot read kube-system/kubeadm-config: {got.error or got.stderr.strip()[-200:]}; "
                                  "nothing was terminated")
    try:
        data = json.loads(got.stdout).get("data") or {}
        config = yaml.safe_load(data.get("ClusterConfiguration") or "") or {}
    except (ValueError, yaml.YAMLError, AttributeError) as exc:
        raise KubeadmConfigFailed(f"kube-system/kubeadm-config is not readable ({exc}); nothing was terminated") from None
    have = str(config.get("kubernetesVersion", "")).lstrip("v")
    if (parse_version(have) or (0, 0, 0)) >= (parse_version(want) or (0, 0, 0)):
        return []
    config["kubernetesVersion"] = f"v{want}"
    patch = json.dumps({"data": {"ClusterConfiguration": yaml.safe_dump(config, sort_keys=False)}})
    done = []
    for what, command in (
        (f"kubeadm-config kubernetesVersion v{have} -> v{want}",
         f"{KUBECTL} -n kube-system patch configmap kubeadm-config --type merge -p {shlex.quote(patch)}"),
        (f"kube-proxy image -> {KUBE_PROXY_IMAGE.format(version=want)}",
         f"{KUBECTL} -n kube-system set image daemonset/kube-proxy kube-proxy={KUBE_PROXY_IMAGE.format(version=want)}"),
    ):
        r = conn.run(command)
        if not r.ok:
            raise KubeadmConfigFailed(f"{what} failed: {r.error or r.stderr.strip()[-200:]}; nothing was terminated")
        done.append(what)
    return done
