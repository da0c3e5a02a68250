"""Kubernetes versions kopsy knows how to install.

Upstream supports the three newest minors; kopsy supports those, because the package
repository (pkgs.k8s.io/core:/stable:/v<minor>) and the kubeadm config API are chosen per minor.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SUPPORTED_MINORS: tuple[str, ...] = ("1.35", "1.36", "1.37")
DEFAULT_KUBERNETES_VERSION = "1.36.0"

# MAJOR.MINOR.PATCH with an optional leading v, no leading zeros, no spaces: the form the package
# repository and kubeadm use (a '01.36.0' would boot with KUBERNETES_MINOR=01.36).
_VERSION = re.compile(r"v?(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})")


def parse_version(text: str) -> tuple[int, int, int] | None:
    m = _VERSION.fullmatch(text) if isinstance(text, str) else None
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def minor_of(version: str) -> str:
    parsed = parse_version(version)
    return f"{parsed[0]}.{parsed[1]}" if parsed else ""


def version_problem(version: str) -> str | None:
    """Why ``version`` cannot be installed, or None if it can."""
    if parse_version(version) is None:
        return f"{str(version)[:40]!r} is not a Kubernetes version like 1.36.0 (MAJOR.MINOR.PATCH, optional leading v)"
    minor = minor_of(version)
    if minor not in SUPPORTED_MINORS:
        return f"{version} is not supported; supported minor versions are {', '.join(SUPPORTED_MINORS)}"
    return None


def upgrade_problem(current: str, target: str) -> str | None:
    """Why ``current`` cannot be upgraded to ``target`` in one step, or None (kops and the
    Kubernetes skew policy: one minor at a time, never down)."""
    have, want = parse_version(current), parse_version(target)
    problem = version_problem(target)
    if want is None or problem:
        return problem or f"{target!r} is not a Kubernetes version"
    if have is None:
        return f"the cluster's kubernetesVersion {current!r} is not a version kopsy can upgrade from"
    if want < have:
        return f"{target} is older than the cluster's {current}: downgrades are not supported"
    if want[:2] > (have[0], have[1] + 1):
        return (f"{target} is more than one minor version ahead of {current}: upgrade one minor at a time "
                f"(next: {have[0]}.{have[1] + 1})")
    return None


def next_version(current: str, newest: Callable[[str], str]) -> str | None:
    """The default upgrade target: the next supported minor's newest patch, else the current
    minor's newest patch when that is newer, else None (already on the newest). ``newest`` gives
    a minor's newest patch (``kopsy.spec.patches.newest_patch``, read from the package index)."""
    have = parse_version(current)
    if have is None:
        return None
    following = f"{have[0]}.{have[1] + 1}"
    if following in SUPPORTED_MINORS:
        return newest(following)
    minor = f"{have[0]}.{have[1]}"
    if minor not in SUPPORTED_MINORS:
        return None
    same = newest(minor)
    parsed = parse_version(same)
    return same if parsed and parsed > have else None
