"""``dslocal key``: API keys for cloud backends, kept in the OS keyring (never shown, never in a file)."""

from __future__ import annotations

import click

from dslocal.cli.output import emit, json_option, note

NAMES = click.Choice(["deepseek", "openai"])


@click.group("key", epilog="""\b
A key given in the environment (DEEPSEEK_API_KEY, DSLOCAL_OPENAI_API_KEY) wins over the keyring.

\b
Examples:
  dslocal key set deepseek        asks for the key without echoing it
  dslocal key status
  dslocal key rm deepseek
""")
def key_group() -> None:
    """API keys for the DeepSeek API and OpenAI-compatible servers, in the OS keyring."""


@key_group.command("set")
@click.argument("name", type=NAMES)
def key_set(name: str) -> None:
    """Store a key in the OS keyring (asked for without echo; or piped on stdin)."""
    import sys

    from dslocal.chat.keys import set_key

    value = click.prompt("API key", hide_input=True) if sys.stdin.isatty() else sys.stdin.readline()
    set_key(name, value)
    note(f"stored the {name} key in the OS keyring")


@key_group.command("rm")
@click.argument("name", type=NAMES)
def key_rm(name: str) -> None:
    """Remove a key from the OS keyring."""
    from dslocal.chat.keys import delete_key

    note(f"removed the {name} key" if delete_key(name) else f"the keyring had no {name} key")


@key_group.command("status")
@json_option
def key_status(as_json: bool) -> None:
    """Where each key comes from (never the key itself)."""
    from dslocal.chat.keys import KEYS, describe

    rows = {name: describe(name) for name in KEYS}
    emit("key status", {"keys": rows}, as_json=as_json,
         human=lambda: [click.echo(f"{name:10s} {where}") for name, where in rows.items()])
