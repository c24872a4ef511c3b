"""stdout is data: the versioned ``--json`` envelope and plain human output.

Diagnostics, hints and progress go to stderr (see :func:`note`). Under ``--json`` an
error is data too: the boundary prints ``{"version": 1, "command": ..., "error": {...}}``,
unless the command already printed its report (a check whose report says it failed): stdout
is always one JSON document.
"""

from __future__ import annotations

import contextvars
import json
import sys
from collections.abc import Callable
from typing import Any

import click

JSON_VERSION = 1

# The command path ("plan", "config show") of this invocation when it was given --json.
_JSON_COMMAND: contextvars.ContextVar[str | None] = contextvars.ContextVar("dslocal_json_command", default=None)
# Whether this invocation has printed its JSON report already.
_REPORTED: contextvars.ContextVar[bool] = contextvars.ContextVar("dslocal_json_reported", default=False)


def _command_name(ctx: click.Context) -> str:
    return " ".join(ctx.command_path.split()[1:]) or ctx.command_path


def remember_json(ctx: click.Context) -> None:
    _JSON_COMMAND.set(_command_name(ctx))


def _json_callback(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        remember_json(ctx)
    return value


json_option = click.option(
    "--json", "as_json", is_flag=True, callback=_json_callback, help="Print a JSON report on stdout."
)


def start_invocation() -> contextvars.Token:
    _REPORTED.set(False)
    return _JSON_COMMAND.set(None)


def end_invocation(token: contextvars.Token) -> None:
    _JSON_COMMAND.reset(token)


def json_command() -> str | None:
    """The command path when this invocation asked for ``--json``, else None."""
    return _JSON_COMMAND.get()


def envelope(command: str, data: Any) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": command, "data": data}


def _write_json(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def emit(command: str, data: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as the JSON envelope, or call ``human`` to print it for people."""
    if as_json:
        _write_json(envelope(command, data))
        _REPORTED.set(True)
    else:
        human()


def emit_error(command: str, message: str, hint: str | None, exit_code: int) -> None:
    """The ``--json`` form of an error (stderr still gets the human lines); nothing when the report is out."""
    if _REPORTED.get():
        return
    try:
        _write_json({
            "version": JSON_VERSION, "command": command,
            "error": {"message": message, "hint": hint, "exit_code": exit_code},
        })
        sys.stdout.flush()
    except OSError:  # stdout is closed: stderr has the error already
        pass


def key_values(rows: list[tuple[str, str]]) -> None:
    """Aligned ``key  value`` lines."""
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


def note(message: str) -> None:
    """A diagnostic for people, on stderr."""
    click.echo(message, err=True)
