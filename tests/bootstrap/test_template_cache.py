"""Template work kept between runs (``kopsy.templatecache``) gives the same bytes as work done
afresh, and a cache that cannot be used changes nothing but speed:

- compiled templates (jinja2's bytecode cache, ``<root>/jinja2``);
- rendered outputs (``kopsy.bootstrap.rendercache``, ``<root>/render``): a hit imports no
  jinja2, and an edited template, a damaged entry or another recipe renders afresh.

Each render runs in a fresh interpreter: the caches only matter across processes, and the
renderer's environment is made once per process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from kopsy.bootstrap.render import template_dirs

ROOT = Path(__file__).resolve().parents[2]

RENDER = r"""
import hashlib, json, sys
from pathlib import Path
import kopsy.bootstrap.render as render
from kopsy.bootstrap.addons import render_addons
from kopsy.bootstrap.render import etcd_module, render_user_data
from kopsy import templatecache
from kopsy.spec.defaults import CreateOptions, new_cluster

if sys.argv[1] != "-":
    templatecache.use(Path(sys.argv[1]))
if sys.argv[2] != "-":
    render.template_dirs = lambda: [Path(sys.argv[2])]
cluster, igs = new_cluster(CreateOptions(name="demo.example.com", zones=["us-east-1a", "us-east-1b", "us-east-1c"],
                                         control_plane_count=3))
h = hashlib.sha256()
for ig in sorted(igs, key=lambda ig: ig.name):
    h.update(render_user_data(cluster, ig, api_endpoint="api-int.example:443", ca_cert_hash="sha256:" + "a" * 64,
                              state_store_url="s3://state/demo.example.com"))
for key, data in render_addons(cluster).items():
    h.update(key.encode() + data)
h.update(etcd_module())
print(json.dumps({"digest": h.hexdigest(), "jinja2": "jinja2" in sys.modules}))
"""


def _render(cache: Path | None, templates: Path | None = None) -> dict[str, object]:
    r = subprocess.run([sys.executable, "-c", RENDER, str(cache or "-"), str(templates or "-")], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    return dict(json.loads(r.stdout))


def test_compiled_templates_render_the_same_bytes(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    fresh = _render(None)["digest"]
    assert _render(root)["digest"] == fresh  # compiles, and writes the cache
    written = sorted(p.name for p in (root / "jinja2").iterdir())
    assert written and all(name.endswith(".jinja") for name in written)
    shutil.rmtree(root / "render")  # render again, from the compiled templates
    assert _render(root)["digest"] == fresh
    assert sorted(p.name for p in (root / "jinja2").iterdir()) == written


def test_unusable_cache_is_only_slower(tmp_path: Path) -> None:
    fresh = _render(None)["digest"]
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go\n")
    assert _render(blocked)["digest"] == fresh
    damaged = tmp_path / "damaged"
    assert _render(damaged)["digest"] == fresh
    for entry in [*(damaged / "jinja2").iterdir(), *(damaged / "render").iterdir()]:
        entry.write_bytes(entry.read_bytes()[:40])  # truncated entries: made again, not trusted
    assert _render(damaged)["digest"] == fresh


def test_rendered_outputs_are_reused_without_jinja2(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    fresh = _render(None)
    assert fresh["jinja2"]
    first = _render(root)
    assert first == fresh  # rendered (jinja2 imported), and kept
    entries = sorted(p.name for p in (root / "render").iterdir())
    assert len(entries) == len(set(entries)) >= 5  # every group's user-data, the addons, the etcd module
    again = _render(root)
    assert again == {"digest": fresh["digest"], "jinja2": False}
    assert sorted(p.name for p in (root / "render").iterdir()) == entries


def test_an_edited_template_renders_afresh(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(next(d for d in template_dirs() if d.is_dir()), templates)
    root = tmp_path / "cache"
    before = _render(root, templates)
    assert _render(root, templates) == {**before, "jinja2": False}
    script = templates / "bootstrap.sh.j2"
    script.write_text(script.read_text() + "# one more line\n")
    after = _render(root, templates)
    assert after["jinja2"] and after["digest"] != before["digest"]
    assert after["digest"] == _render(None, templates)["digest"]  # what a run without the cache renders


# kopsy modules the renderer may import without being part of the recipe: they do not shape the
# rendered bytes (error messages, where the cache lives, a thread pool, a type for annotations).
NOT_RENDERING = {"kopsy.errors", "kopsy.templatecache", "kopsy.parallel", "kopsy.state.clusters"}


def test_the_recipe_covers_every_module_the_renderer_reads() -> None:
    """The recipe hashes kopsy/bootstrap/ and the spec model: a constant the renderer took from
    anywhere else could change the bytes without changing the cache key."""
    import ast

    here = ROOT / "kopsy" / "bootstrap"
    outside: set[str] = set()
    for path in here.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "kopsy":  # from kopsy import x
                names = [f"kopsy.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            outside |= {n for n in names if n.split(".")[0] == "kopsy" and not n.startswith("kopsy.bootstrap")}
    assert outside - NOT_RENDERING == {"kopsy.spec.model"}
