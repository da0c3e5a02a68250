"""Helpers to run a subprocess under the network guard in ``sitecustomize.py`` beside this file."""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent


def guarded_env(env: dict[str, str], log: Path) -> dict[str, str]:
    """``env`` with the guard on every Python process started from it, logging to ``log``."""
    path = [str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**env, "PYTHONPATH": os.pathsep.join(path), "KOPSY_NETGUARD_LOG": str(log)}


def attempts(log: Path) -> list[str]:
    """The off-loopback connections the guarded processes tried (and were refused)."""
    return log.read_text().splitlines() if log.exists() else []
