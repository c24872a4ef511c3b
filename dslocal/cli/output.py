"""stdout is data: the versioned ``--json`` envelope and plain human output.

Diagnostics, hints and progress go to stderr (see :func:`note`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

JSON_VERSION = 1

json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON report on stdout.")


def envelope(command: str, data: Any) -> dict[str, Any]:
    return {"version": JSON_VERSION, "command": command, "data": data}


def emit(command: str, data: Any, *, as_json: bool, human: Callable[[], None]) -> None:
    """Print ``data`` as the JSON envelope, or call ``human`` to print it for people."""
    if as_json:
        sys.stdout.write(json.dumps(envelope(command, data), indent=2, ensure_ascii=False) + "\n")
    else:
        human()


def key_values(rows: list[tuple[str, str]]) -> None:
    """Aligned ``key  value`` lines."""
    width = max((len(key) for key, _ in rows), default=0)
    for key, value in rows:
        click.echo(f"{key.ljust(width)}  {value}")


def note(message: str) -> None:
    """A diagnostic for people, on stderr."""
    click.echo(message, err=True)
