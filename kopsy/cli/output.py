"""Printing helpers shared by commands: tables, YAML/JSON documents, warnings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

OUTPUT_FORMATS = click.Choice(["table", "yaml", "json"])


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A kops-style table: upper-case headers, columns padded to their widest cell."""
    # Cells hold values read from the store: a newline or escape in one must not forge a line.
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = str(value)
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def dump_yaml_documents(docs: Sequence[dict[str, Any]]) -> str:
    import yaml  # only commands that print YAML load it

    return yaml.safe_dump_all(list(docs), sort_keys=False, default_flow_style=False).rstrip() + "\n"


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def warn(message: str) -> None:
    click.echo(f"Warning: {_cell(message)}", err=True)


def emit(value: Any, fmt: str) -> None:
    """Print one document (or a list of them) as yaml or json."""
    if fmt == "json":
        click.echo(dump_json(value))
    else:
        docs = value if isinstance(value, list) else [value]
        click.echo(dump_yaml_documents(docs), nl=False)
