"""The newest published patch of a Kubernetes minor, read from the package repository that
instances install from.

``upgrade``'s default target is the next minor "at its newest patch". kopsy vendors no list of
patch releases (it would go stale, and a made-up one sends instances to a package that does not
exist), so it asks the same repository the boot script adds to apt: the flat Debian repository
``pkgs.k8s.io/core:/stable:/v<minor>/deb/`` and its ``Packages`` index. A patch counts only when
kubeadm, kubelet and kubectl are all published at it, since a boot installs all three.
``KOPSY_K8S_PACKAGES`` points elsewhere: a mirror, or a ``file://`` tree (the sandbox writes one).
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request

from kopsy.errors import KopsyError

DEFAULT_REPOSITORY = "https://pkgs.k8s.io/core:/stable:"
REPOSITORY_ENV = "KOPSY_K8S_PACKAGES"
REQUIRED_PACKAGES = ("kubeadm", "kubelet", "kubectl")
INDEX_LIMIT = 8 * 1024 * 1024  # the real index is well under 1 MB; anything bigger is not one
_STANZA_FIELD = re.compile(r"^(Package|Version):\s*(\S+)\s*$", re.M)


class PatchLookupFailed(KopsyError):
    """The package index could not be read or listed no usable patch."""


def repository() -> str:
    return (os.environ.get(REPOSITORY_ENV) or DEFAULT_REPOSITORY).rstrip("/")


def index_url(minor: str, base: str | None = None) -> str:
    return f"{base or repository()}/v{minor}/deb/Packages"


def published_patches(index: str, minor: str) -> list[int]:
    """Patch numbers of ``minor`` at which every required package is in ``index`` (a Debian
    ``Packages`` file), ascending. Debian versions are ``<upstream>-<revision>``: 1.36.2-1.1."""
    seen: dict[str, set[int]] = {p: set() for p in REQUIRED_PACKAGES}
    of_minor = re.compile(rf"{re.escape(minor)}\.(0|[1-9]\d{{0,2}})-[0-9A-Za-z.+~]+")
    for stanza in index.split("\n\n"):
        fields = dict(_STANZA_FIELD.findall(stanza))
        package, version = fields.get("Package"), fields.get("Version", "")
        if package not in seen:
            continue
        m = of_minor.fullmatch(version)
        if m:
            seen[package].add(int(m.group(1)))
    common = set.intersection(*seen.values())
    return sorted(common)


def newest_patch(minor: str, *, base: str | None = None, timeout: float = 10.0) -> str:
    """``minor``'s newest patch version (``1.36.2``), or ``PatchLookupFailed`` saying why."""
    url = index_url(minor, base)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (https or file, by design)
            data = answer.read(INDEX_LIMIT + 1)
    except urllib.error.HTTPError as exc:
        raise PatchLookupFailed(f"could not read {url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PatchLookupFailed(f"could not read {url}: {reason}") from None
    if len(data) > INDEX_LIMIT:
        raise PatchLookupFailed(f"{url} is larger than a package index ({INDEX_LIMIT // (1024 * 1024)} MB)")
    patches = published_patches(data.decode("utf-8", "replace"), minor)
    if not patches:
        raise PatchLookupFailed(f"{url} lists no {minor} patch with {', '.join(REQUIRED_PACKAGES)} all published")
    return f"{minor}.{patches[-1]}"
