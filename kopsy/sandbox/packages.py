"""The sandbox's stand-in for the Kubernetes package repository's index.

``kopsy upgrade`` reads a minor's newest patch from ``pkgs.k8s.io`` (``kopsy.spec.patches``);
the sandbox must not send it there, so ``up`` writes a flat-repository tree of ``Packages``
files under the sandbox directory and points ``KOPSY_K8S_PACKAGES`` at it. It lists every
supported minor at patches 0 to ``NEWEST_PATCH``: made-up releases that exist only here
(docs/sandbox.md), so an upgrade in the sandbox lands on a patch that is not ``.0``.
"""

from __future__ import annotations

from pathlib import Path

from kopsy.spec.patches import published_patches
from kopsy.spec.versions import SUPPORTED_MINORS

NEWEST_PATCH = 2
PACKAGES = ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni")


def write_index(root: Path) -> str:
    """Write ``<root>/v<minor>/deb/Packages`` for every supported minor; return the repository's URL."""
    for minor in SUPPORTED_MINORS:
        stanzas = [f"Package: {package}\nVersion: {minor}.{patch}-1.1\nArchitecture: amd64\n"
                   f"Filename: {package}_{minor}.{patch}-1.1_amd64.deb\n"
                   for package in PACKAGES for patch in range(NEWEST_PATCH + 1)]
        deb = root / f"v{minor}" / "deb"
        deb.mkdir(parents=True, exist_ok=True)
        (deb / "Packages").write_text("\n".join(stanzas))
    return root.resolve().as_uri()


def published_versions(root: Path) -> frozenset[str] | None:
    """Every version the index under ``root`` publishes (what apt could install on a booting
    instance), or None when there is no index (a sandbox started by an older kopsy)."""
    if not root.is_dir():
        return None
    found: set[str] = set()
    for minor in SUPPORTED_MINORS:
        index = root / f"v{minor}" / "deb" / "Packages"
        if index.is_file():
            found.update(f"{minor}.{patch}" for patch in published_patches(index.read_text(), minor))
    return frozenset(found)
