"""Before the first new-version control plane joins: move kubeadm's cluster-wide state.

``kubeadm join --control-plane`` reads the ClusterConfiguration from the ``kubeadm-config``
ConfigMap, so unless its ``kubernetesVersion`` moves first, a new control plane deploys the
*old* static pods. Cluster API's kubeadm control-plane provider updates it (and kube-proxy and
CoreDNS) before it scales up a new-version machine; this does the same over SSH on a surviving
control plane, with ``kubectl``:

1. read ``kubeadm-config`` and, if its ``kubernetesVersion`` is older, patch it;
2. set the kube-proxy DaemonSet's image to ``registry.k8s.io/kube-proxy:v<version>`` (kube-proxy is
   released with Kubernetes, under the same tag).

CoreDNS comes after, in ``sync_coredns``: its version per Kubernetes minor is kubeadm's own
constant, which kopsy does not vendor (and will not guess), and kubeadm keeps the running
CoreDNS on a join. So once the first new-version control plane has joined, that control
plane's kubeadm is asked (``kubeadm config images list --kubernetes-version vX.Y.Z``) which
CoreDNS image goes with it; the coredns Deployment is set to it when it runs another, and its
rollout is waited for (``kubectl rollout status``) before the roll goes on.
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


KUBEADM_IMAGES = "sudo kubeadm config images list --kubernetes-version v{version}"
GET_COREDNS = f"{KUBECTL} -n kube-system get deployment coredns -o json"


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


def coredns_image(images_list: str) -> str:
    """The CoreDNS image in ``kubeadm config images list`` output ("" when it names none)."""
    for line in images_list.splitlines():
        image = line.strip()
        repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        if repo.rsplit("/", 1)[-1] == "coredns":
            return image
    return ""


def sync_coredns(conn: SSHConnection, node: str, version: str, timeout: float) -> list[str]:
    """Set the coredns Deployment to the image the kubeadm on ``conn`` (a new-version control
    plane, node ``node``) deploys for ``version``, when it runs another; then wait for its rollout (up to
    ``timeout`` seconds). What was done."""
    want_version = version.lstrip("v")
    listed = conn.run(KUBEADM_IMAGES.format(version=want_version))
    if not listed.ok:
        raise KubeadmConfigFailed(f"kubeadm on {node} did not list its images for v{want_version}: "
                                  f"{listed.error or listed.stderr.strip()[-200:]}")
    want = coredns_image(listed.stdout)
    if not want:
        raise KubeadmConfigFailed(f"kubeadm on {node} lists no CoreDNS image for v{want_version}")
    got = conn.run(GET_COREDNS)
    if not got.ok:
        raise KubeadmConfigFailed(f"cannot read deployment kube-system/coredns: {got.error or got.stderr.strip()[-200:]}")
    try:
        containers = json.loads(got.stdout)["spec"]["template"]["spec"]["containers"]
        have = next(c.get("image", "") for c in containers if c.get("name") == "coredns")
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise KubeadmConfigFailed(f"deployment kube-system/coredns has no coredns container ({exc!r})") from None
    done = []
    if have != want:
        r = conn.run(f"{KUBECTL} -n kube-system set image deployment/coredns coredns={shlex.quote(want)}")
        if not r.ok:
            raise KubeadmConfigFailed(f"coredns image {have} -> {want} failed: {r.error or r.stderr.strip()[-200:]}")
        done.append(f"coredns image {have} -> {want} (kubeadm on {node})")
    r = conn.run(f"{KUBECTL} -n kube-system rollout status deployment/coredns --timeout={max(1, int(timeout))}s",
                 timeout=timeout + 30)
    if not r.ok:
        raise KubeadmConfigFailed(f"deployment kube-system/coredns did not roll out within {int(timeout)}s: "
                                  f"{r.error or (r.stderr or r.stdout).strip()[-200:]}")
    done.append(f"coredns rollout available ({want})")
    return done
