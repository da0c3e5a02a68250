"""What every command shares: global options, and how the store and cluster name are resolved."""

from __future__ import annotations

from dataclasses import dataclass

import click


@dataclass
class Options:
    state: str | None
    cluster_name: str | None
    debug: bool


def options() -> Options:
    return click.get_current_context().find_root().obj  # type: ignore[no-any-return]
