"""Where template work is kept between runs: jinja2's compiled templates
(``kopsy.bootstrap.templates``) and rendered outputs (``kopsy.bootstrap.rendercache``).

A module of its own, outside ``kopsy.bootstrap``, importing nothing: a command names the folder
at its start, before anything renders, without importing the renderer on its critical path, and
whichever thread renders first uses this folder. Set from the prewarm thread instead, it came too
late for the fresh update, whose addons render first.
"""

from __future__ import annotations

from pathlib import Path

directory: Path | None = None


def use(root: Path | None) -> None:
    """Keep template work under ``root`` (``None``: compile and render everything in every run)."""
    global directory
    directory = root


def compiled() -> Path | None:
    """jinja2's bytecode cache."""
    return directory / "jinja2" if directory is not None else None


def rendered() -> Path | None:
    """Rendered user-data, addons and etcd module, by the digest of what they are made from."""
    return directory / "render" if directory is not None else None
