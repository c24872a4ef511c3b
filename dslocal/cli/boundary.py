"""The CLI's error boundary: every failure becomes ``dslocal: error: ...`` plus a hint.

Expected errors (:class:`DslocalError`, click's usage errors) print one line and a
hint on stderr and exit with a named code. ``DSLOCAL_DEBUG=1`` adds the traceback.
Anything else is reported as an internal error (exit 70), never as a bare traceback.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from dslocal.errors import DslocalError, ExitCode

PROG = "dslocal"


def _debug() -> bool:
    return os.environ.get("DSLOCAL_DEBUG", "").strip() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def report(message: str, hint: str | None) -> None:
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")
    if hint:
        sys.stderr.write(f"hint: {_one_line(hint)}\n")
    sys.stderr.flush()


def _usage_hint(exc: click.UsageError) -> str:
    path = exc.ctx.command_path if exc.ctx is not None else PROG
    return f"run '{path} --help' for usage and examples"


def run(group: click.Command, argv: Sequence[str] | None = None) -> int:
    """Run ``group`` with ``argv`` and return the process exit code."""
    try:
        result = group.main(args=list(argv) if argv is not None else None, prog_name=PROG, standalone_mode=False)
        return result if isinstance(result, int) else ExitCode.OK
    except DslocalError as exc:
        if _debug():
            traceback.print_exc()
        report(exc.message, exc.hint)
        return exc.exit_code
    except click.UsageError as exc:
        report(exc.format_message(), _usage_hint(exc))
        return ExitCode.USAGE
    except click.ClickException as exc:
        report(exc.format_message(), None)
        return ExitCode.FAILURE
    except (click.Abort, KeyboardInterrupt):
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (e.g. piped into head): not an error for the user.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return ExitCode.OK
    except Exception as exc:  # noqa: BLE001 - the boundary must catch everything
        if _debug():
            traceback.print_exc()
        report(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in dslocal; rerun with DSLOCAL_DEBUG=1 and report the traceback",
        )
        return ExitCode.INTERNAL
