"""``kopsy completion bash|zsh|fish``: the shell completion script, as ``kops completion`` prints.

The script is click's own: the shell calls ``kopsy`` back with ``_KOPSY_COMPLETE`` set, and
click answers with the commands, options and choices that fit what has been typed.
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")
INSTALL = {
    "bash": "echo 'source <(kopsy completion bash)' >> ~/.bashrc",
    "zsh": "echo 'source <(kopsy completion zsh)' >> ~/.zshrc",
    "fish": "kopsy completion fish > ~/.config/fish/completions/kopsy.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish).

    \b
      source <(kopsy completion bash)                              # this shell
      echo 'source <(kopsy completion bash)' >> ~/.bashrc           # every new one
      kopsy completion fish > ~/.config/fish/completions/kopsy.fish
    """
    from click.shell_completion import get_completion_class

    from kopsy.cli.main import cli

    cls = get_completion_class(shell)
    assert cls is not None  # click ships all three
    click.echo(cls(cli, {}, "kopsy", "_KOPSY_COMPLETE").source())
