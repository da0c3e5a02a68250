"""Where compiled user-data templates are kept between runs (``kopsy.bootstrap.render``).

A module of its own, outside ``kopsy.bootstrap`` (whose package imports the renderer), importing
nothing: a command names the folder at its start, before anything renders, without importing
jinja2 on its critical path (the update command imports the renderer in its prewarm thread), and
whichever thread renders first builds the environment with this folder. Set from the prewarm
thread instead, it came too late for the fresh update, whose addons render first.
"""

from __future__ import annotations

from pathlib import Path

directory: Path | None = None


def use(folder: Path | None) -> None:
    """Keep compiled templates in ``folder`` (``None``: compile them in every run)."""
    global directory
    directory = folder
