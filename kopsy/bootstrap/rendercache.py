"""Rendered user-data, addons and the etcd module, kept between runs by the digest of everything
they are rendered from.

Rendering is pure (``kopsy.bootstrap.render`` reads no clock and no environment), so the same
inputs give the same bytes. A no-op ``update`` renders every group's user-data and the addons
only to compare them with what AWS and the store hold: ~50 ms of CPU, half of it importing
jinja2. With this cache it renders nothing and never imports jinja2.

An entry's name is the sha256 of its inputs (the group's bootstrap config, or the addons'
context) and of the *recipe*: every file in the template folders, the source of
``kopsy.bootstrap`` and of the spec model, and the versions of jinja2, PyYAML (and whether its
libyaml emitter is used), zlib and Python. So an edited template, a kopsy or library upgrade, or
another interpreter renders afresh instead of reusing bytes it would not produce. Each entry
carries the sha256 of its bytes: a truncated or damaged one is rendered again, never trusted. A
cache only: when it cannot be read or written, everything is rendered as before. It holds
nothing secret (user-data carries none, by design: docs/bootstrap.md).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

KEEP = 512  # entries kept: a fresh update writes one per group and addon; older ones are pruned

_recipe: str | None = None
_lock = threading.Lock()  # guards _recipe and _pruned
_pruned = False  # once per process, at its first write: scanning the folder costs ~1 ms


def cached(kind: str, inputs: str, render: Callable[[], bytes]) -> bytes:
    """``render()``'s bytes, from the cache when ``kind`` was rendered from ``inputs`` by this
    recipe before (``kopsy.templatecache.rendered()``; no folder: always rendered)."""
    from kopsy import templatecache

    folder = templatecache.rendered()
    made_by = recipe() if folder is not None else None
    if folder is None or made_by is None:
        return render()
    path = folder / hashlib.sha256(f"{made_by}\0{kind}\0{inputs}".encode()).hexdigest()
    try:
        blob = path.read_bytes()
    except OSError:
        blob = b""
    if len(blob) >= 32 and hashlib.sha256(blob[32:]).digest() == blob[:32]:
        return blob[32:]
    data = render()
    _store(folder, path, data)
    return data


def recipe() -> str | None:
    """The digest of what turns inputs into bytes (computed once per process: ~1 ms); None when
    a part of it cannot be read (then nothing is cached)."""
    global _recipe
    with _lock:
        if _recipe is None:
            try:
                _recipe = _digest_recipe()
            except OSError:
                _recipe = ""
        return _recipe or None


def _digest_recipe() -> str:
    import importlib.util

    import yaml

    from kopsy.bootstrap.render import template_dirs

    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    sources = [*sorted(here.glob("*.py")), here.parent / "spec" / "model.py"]
    for folder in template_dirs():
        if folder.is_dir():
            sources += sorted(p for p in folder.rglob("*") if p.is_file())
    jinja2 = importlib.util.find_spec("jinja2")
    if jinja2 is not None and jinja2.origin:
        sources.append(Path(jinja2.origin))  # its __init__ names its version
    for path in sources:
        h.update(f"{path}\0".encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    h.update(f"{yaml.__version__} {hasattr(yaml, 'CSafeDumper')} {zlib.ZLIB_RUNTIME_VERSION} {sys.version}".encode())
    return h.hexdigest()


def _store(folder: Path, path: Path, data: bytes) -> None:
    """Write one entry whole (a temporary file renamed over it) and prune the oldest."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(hashlib.sha256(data).digest() + data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return
    _prune(folder)


def _prune(folder: Path) -> None:
    """Keep the newest ``KEEP`` entries (and temporary files a killed run left, by the same rule)."""
    global _pruned
    with _lock:
        if _pruned:
            return
        _pruned = True
    try:
        entries = [(e.stat().st_mtime, e.path) for e in os.scandir(folder)]
    except OSError:
        return
    if len(entries) <= KEEP:
        return
    for _, old in sorted(entries)[: len(entries) - KEEP]:
        try:
            os.unlink(old)
        except OSError:
            pass
