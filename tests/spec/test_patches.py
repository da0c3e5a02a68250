"""The newest published patch of a minor, read from a Debian ``Packages`` index: parsing, the
file:// tree the sandbox writes, a real HTTP server on loopback, failures, and ``kopsy upgrade``
through the real executable (the default target, and a clear error when the index is unreachable)."""

from __future__ import annotations

import http.server
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kopsy.sandbox import packages
from kopsy.spec.patches import PatchLookupFailed, newest_patch, published_patches
from kopsy.spec.versions import SUPPORTED_MINORS
from tests.doubles.httpserver import serve_on_loopback

OLD, NEXT = SUPPORTED_MINORS[0], SUPPORTED_MINORS[1]


def stanza(package: str, version: str) -> str:
    return f"Package: {package}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{package}_{version}.deb\n"


def index(*entries: tuple[str, str]) -> str:
    return "\n".join(stanza(p, v) for p, v in entries)


def test_a_patch_counts_only_when_kubeadm_kubelet_and_kubectl_are_all_published() -> None:
    text = index(*[(p, f"{NEXT}.{n}-1.1") for p in ("kubeadm", "kubelet", "kubectl") for n in (0, 1, 2)],
                 ("kubeadm", f"{NEXT}.3-1.1"), ("kubelet", f"{NEXT}.3-1.1"),  # kubectl 3 not out yet
                 ("kubeadm", f"{NEXT}0.9-1.1"), ("kubectl", f"1.{NEXT}.9-1.1"),  # look alike, other minors
                 ("cri-tools", f"{NEXT}.9-1.1"), ("kubeadm", f"{NEXT}.4"))  # not required; no revision
    assert published_patches(text, NEXT) == [0, 1, 2]
    assert published_patches(text, OLD) == []


def test_the_sandbox_index_is_read_through_file_urls(tmp_path: Path) -> None:
    url = packages.write_index(tmp_path / "packages")
    assert newest_patch(NEXT, base=url) == f"{NEXT}.{packages.NEWEST_PATCH}"


@pytest.fixture
def http_index(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving a repository tree, as pkgs.k8s.io lays it out."""
    root = tmp_path / "repo"
    deb = root / f"v{NEXT}" / "deb"
    deb.mkdir(parents=True)
    (deb / "Packages").write_text(index(*[(p, f"{NEXT}.{n}-1.1") for p in ("kubeadm", "kubelet", "kubectl")
                                          for n in (0, 5, 11)]))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args: Any) -> None:
            pass

    with serve_on_loopback(Quiet) as url:
        yield url


def test_over_http_the_highest_patch_wins_numerically(http_index: str) -> None:
    assert newest_patch(NEXT, base=http_index) == f"{NEXT}.11"  # not "5" (string order)


def test_a_missing_index_and_an_unreachable_repository_say_where_they_looked(http_index: str, tmp_path: Path) -> None:
    with pytest.raises(PatchLookupFailed, match=rf"could not read {http_index}/v{OLD}/deb/Packages: HTTP 404"):
        newest_patch(OLD, base=http_index)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(PatchLookupFailed, match="could not read .*refused"):
        newest_patch(NEXT, base=closed, timeout=5)
    empty = tmp_path / "empty" / f"v{NEXT}" / "deb"
    empty.mkdir(parents=True)
    (empty / "Packages").write_text(index(("kubeadm", f"{NEXT}.1-1.1")))
    with pytest.raises(PatchLookupFailed, match=f"lists no {NEXT} patch with kubeadm, kubelet, kubectl"):
        newest_patch(NEXT, base=(tmp_path / "empty").as_uri())


@pytest.mark.e2e
def test_upgrade_defaults_to_the_newest_published_patch_and_refuses_clearly_without_an_index(
    http_index: str, aws_env: dict[str, str], run_kopsy: Callable[..., Any], ssh_keypair: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    name = "patch.example.com"
    env = {**aws_env, "KOPSY_STATE_STORE": (tmp_path / "store").as_uri(), "KOPSY_K8S_PACKAGES": http_index}
    r = run_kopsy(["create", "cluster", name, "--zones", "us-east-1a", "--kubernetes-version", f"{OLD}.0",
                   "--ssh-public-key", str(ssh_keypair[1])], env)
    assert r.returncode == 0, r.stderr
    dry = run_kopsy(["upgrade", "cluster", name], env)
    assert dry.returncode == 0, dry.stderr
    assert f"Cluster  KubernetesVersion  {OLD}.0  {NEXT}.11" in dry.stdout, dry.stdout

    config = tmp_path / "store" / name / "config"
    before = config.read_bytes()
    for broken in (f"{http_index}/nowhere", "http://127.0.0.1:9"):
        r = run_kopsy(["upgrade", "cluster", name, "--yes"], {**env, "KOPSY_K8S_PACKAGES": broken})
        errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
        assert r.returncode == 1 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
        assert f"cannot find the newest {NEXT} patch: could not read {broken}/v{NEXT}/deb/Packages" in errors[0]
        assert "--kubernetes-version" in errors[0]
        assert config.read_bytes() == before  # nothing written

    r = run_kopsy(["upgrade", "cluster", name, "--yes"], env)
    assert r.returncode == 0, r.stderr
    assert f"kubernetesVersion: {NEXT}.11" in run_kopsy(["get", "cluster", name, "-o", "yaml"], env).stdout
