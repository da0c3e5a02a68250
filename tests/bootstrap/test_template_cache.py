"""Compiled templates kept between runs (``use_bytecode_cache``) render the same bytes as
templates compiled afresh, and a cache that cannot be written changes nothing but speed.

Each render runs in a fresh interpreter: the cache only matters across processes, and the
renderer's environment is made once per process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RENDER = r"""
import hashlib, sys
from pathlib import Path
from kopsy.bootstrap.addons import render_addons
from kopsy.bootstrap.render import render_user_data, use_bytecode_cache
from kopsy.spec.defaults import CreateOptions, new_cluster

if sys.argv[1] != "-":
    use_bytecode_cache(Path(sys.argv[1]))
cluster, igs = new_cluster(CreateOptions(name="demo.example.com", zones=["us-east-1a", "us-east-1b", "us-east-1c"],
                                         control_plane_count=3))
h = hashlib.sha256()
for ig in sorted(igs, key=lambda ig: ig.name):
    h.update(render_user_data(cluster, ig, api_endpoint="api-int.example:443", ca_cert_hash="sha256:" + "a" * 64,
                              state_store_url="s3://state/demo.example.com"))
for key, data in render_addons(cluster).items():
    h.update(key.encode() + data)
print(h.hexdigest())
"""


def _render(cache: str) -> str:
    r = subprocess.run([sys.executable, "-c", RENDER, cache], cwd=ROOT, capture_output=True, text=True, check=True)
    return r.stdout.strip()


def test_cached_templates_render_the_same_bytes(tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "jinja2"
    fresh = _render("-")
    assert _render(str(cache)) == fresh  # compiles, and writes the cache
    written = sorted(p.name for p in cache.iterdir())
    assert written and all(name.endswith(".jinja") for name in written)
    assert _render(str(cache)) == fresh  # loads every template from it
    assert sorted(p.name for p in cache.iterdir()) == written


def test_unusable_cache_is_only_slower(tmp_path: Path) -> None:
    fresh = _render("-")
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go\n")
    assert _render(str(blocked / "jinja2")) == fresh
    damaged = tmp_path / "jinja2"
    assert _render(str(damaged)) == fresh
    for entry in damaged.iterdir():
        entry.write_bytes(entry.read_bytes()[:20])  # truncated entries: compiled again, not trusted
    assert _render(str(damaged)) == fresh
