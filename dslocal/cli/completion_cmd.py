"""``dslocal completion SHELL``: the shell script that completes dslocal's commands and options.

The script is click's own: it calls ``dslocal`` back with ``_DSLOCAL_COMPLETE=<shell>_complete`` for each
completion (dslocal/cli/boundary.py answers it), and subcommand names come from the lazy registry, so a
completion imports at most the one command module it completes into.
"""

from __future__ import annotations

import click

from dslocal.cli.boundary import COMPLETE_VAR, PROG

SHELLS = ("bash", "zsh", "fish")


@click.command("completion", epilog="""\b
Examples:
  eval "$(dslocal completion bash)"            in ~/.bashrc (bash 4.4 or later)
  dslocal completion bash > ~/.local/share/bash-completion/completions/dslocal
  eval "$(dslocal completion zsh)"             in ~/.zshrc, after compinit
  dslocal completion fish > ~/.config/fish/completions/dslocal.fish
""")
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion_cmd(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish."""
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # click ships all three
    root = ctx.find_root().command
    click.echo(completion_class(root, {}, PROG, COMPLETE_VAR).source(), nl=False)
