"""The container runtime instances install: containerd 2.x and runc, pinned by version and sha256.

Downloaded from the projects' GitHub releases and checked against these sums before anything is
unpacked (kops does the same), instead of whatever the Ubuntu archive carries that day. The sums
are the ones kubespray records for these releases (kubernetes-sigs/kubespray,
roles/kubespray_defaults/vars/main/checksums.yml at 118b2dce: ``containerd_archive_checksums``,
``runc_checksums``, ``ciliumcli_binary_checksums``); bump a version only together with its sums
from such a source.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Download:
    """One file the boot script fetches, with the sha256 it must have on each architecture."""

    name: str
    version: str
    url: str  # "{arch}" is replaced by dpkg's architecture (amd64, arm64)
    sha256: dict[str, str]  # architecture -> hex digest


CONTAINERD = Download(
    "containerd", "2.1.5",
    "https://github.com/containerd/containerd/releases/download/v2.1.5/containerd-2.1.5-linux-{arch}.tar.gz",
    {"amd64": "403af72d9f956ed8a5ad5b0ac0f1e8e371a1488f2b9edf9b4ba13db0653936ea",
     "arm64": "fe81122c0cc8222470fa3be51f42fa918ac29ffd956ccd2fc408c1997babd2ca"},
)
RUNC = Download(
    "runc", "1.3.4",
    "https://github.com/opencontainers/runc/releases/download/v1.3.4/runc.{arch}",
    {"amd64": "5966ca40b6187b30e33bfc299c5f1fe72e8c1aa01cf3fefdadf391668f47f103",
     "arm64": "d6dcab36d1b6af1b72c7f0662e5fcf446a291271ba6006532b95c4144e19d428"},
)
CILIUM_CLI = Download(
    "cilium-cli", "v0.18.7",
    "https://github.com/cilium/cilium-cli/releases/download/v0.18.7/cilium-linux-{arch}.tar.gz",
    {"amd64": "7f5ff96f1793ee389ef77435a72debf122f5ec253d41418fca99d2c21472016a",
     "arm64": "dbaa2ab4b1969f4402adf430d6a1bd914c5ab52475ec68f50b3af6fa7fe2fecc"},
)

# What the boot script downloads without a sha256 kopsy pins (docs/bootstrap.md, "Downloads and
# their sums"): no published sum for these exact files was found, so none is written here.
UNPINNED_DOWNLOADS: tuple[str, ...] = (
    "calico manifest (raw.githubusercontent.com/projectcalico/calico/<version>/manifests/calico.yaml)",
    "flannel manifest (github.com/flannel-io/flannel/releases/download/<version>/kube-flannel.yml)",
    "Kubernetes apt repository key (pkgs.k8s.io/core:/stable:/v<minor>/deb/Release.key; apt then checks every package's signature)",
)
