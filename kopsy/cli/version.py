"""``kopsy version``: kopsy's version and the Kubernetes minors it can install (as ``kops version``)."""

from __future__ import annotations

import click

from kopsy import __version__
from kopsy.cli.output import emit
from kopsy.spec.versions import DEFAULT_KUBERNETES_VERSION, SUPPORTED_MINORS


@click.command()
@click.option("-o", "--output", type=click.Choice(["text", "yaml", "json"]), default="text", show_default=True)
def command(output: str) -> None:
    """Print kopsy's version and the Kubernetes versions it supports."""
    if output == "text":
        click.echo(f"kopsy {__version__}")
        click.echo(f"Supported Kubernetes versions: {', '.join(SUPPORTED_MINORS)} (default {DEFAULT_KUBERNETES_VERSION})")
        return
    emit({"version": __version__, "kubernetes": {"supportedMinors": list(SUPPORTED_MINORS),
                                                  "default": DEFAULT_KUBERNETES_VERSION}}, output)
