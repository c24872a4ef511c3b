"""The CLI's error boundary: every failure becomes ``dslocal: error: ...`` plus a hint.

Expected errors (:class:`DslocalError`, click's usage errors, and file system errors a
user can fix: a full disk, a read-only folder, a file where a folder should be) print
one line and a hint on stderr and exit with a named code; with ``--json`` the same error
is also printed on stdout as ``{"version": 1, "command": ..., "error": {...}}``.
``DSLOCAL_DEBUG=1`` adds the traceback. Anything else is reported as an internal error
(exit 70), never as a bare traceback. A closed stdout (``dslocal plan X | head -1``)
ends the command quietly with exit 0.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Sequence

import click

from dslocal.cli import output
from dslocal.errors import DslocalError, ExitCode, from_os_error

PROG = "dslocal"
COMPLETE_VAR = "_DSLOCAL_COMPLETE"  # click's name for it: _{PROG}_COMPLETE, upper-cased
INTERNAL_HINT = "this is a bug in dslocal; rerun with DSLOCAL_DEBUG=1 and report the traceback"


def _debug() -> bool:
    return os.environ.get("DSLOCAL_DEBUG", "").strip() not in ("", "0", "false", "no")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def report(message: str, hint: str | None, code: int = ExitCode.FAILURE) -> int:
    """Print the error on stderr (and as JSON on stdout under ``--json``); returns ``code``."""
    message, hint = _one_line(message), _one_line(hint) if hint else None
    sys.stderr.write(f"{PROG}: error: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    sys.stderr.flush()
    command = output.json_command()
    if command is not None:
        output.emit_error(command, message, hint, int(code))
    return code


def _usage_hint(exc: click.UsageError) -> str:
    path = exc.ctx.command_path if exc.ctx is not None else PROG
    return f"run '{path} --help' for usage and examples"


def _json_from_argv(exc: click.UsageError, argv: list[str]) -> None:
    """A usage error found before ``--json`` was parsed still answers in JSON."""
    ctx = exc.ctx
    if ctx is None or output.json_command() is not None:
        return
    given = argv[: argv.index("--")] if "--" in argv else argv
    if "--json" in given and any(p.name == "as_json" for p in ctx.command.params):
        output.remember_json(ctx)


def _invoke(group: click.Command, args: list[str]) -> int:
    """click's ``main`` without its own handling of errors and broken pipes (this boundary does that)."""
    instruction = os.environ.get(COMPLETE_VAR)
    if instruction:  # the shell asks for completions ('dslocal completion SHELL' prints the script that does)
        from click.shell_completion import shell_complete

        return shell_complete(group, {}, PROG, COMPLETE_VAR, instruction)
    try:
        with group.make_context(PROG, args) as ctx:
            result = group.invoke(ctx)
    except click.exceptions.Exit as exc:
        result = exc.exit_code
    sys.stdout.flush()  # here, so that a closed pipe is this boundary's EPIPE, not one at interpreter exit
    return result if isinstance(result, int) else ExitCode.OK


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the final flush of a closed pipe cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def run(group: click.Command, argv: Sequence[str] | None = None) -> int:
    """Run ``group`` with ``argv`` and return the process exit code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    token = output.start_invocation()
    try:
        return _run(group, args)
    finally:
        output.end_invocation(token)


def _run(group: click.Command, args: list[str]) -> int:
    try:
        return _invoke(group, args)
    except DslocalError as exc:
        if _debug():
            traceback.print_exc()
        return report(exc.message, exc.hint, exc.exit_code)
    except click.UsageError as exc:
        _json_from_argv(exc, args)
        return report(exc.format_message(), _usage_hint(exc), ExitCode.USAGE)
    except click.ClickException as exc:
        return report(exc.format_message(), None, ExitCode.FAILURE)
    except (click.Abort, KeyboardInterrupt, EOFError):
        sys.stderr.write(f"\n{PROG}: interrupted\n")
        return ExitCode.INTERRUPTED
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            # stdout was closed early (e.g. piped into head): not an error for the user.
            _quiet_stdout()
            return ExitCode.OK
        return _os_error(exc)
    except Exception as exc:  # noqa: BLE001 - the boundary must catch everything
        return _internal(exc)


def _os_error(exc: OSError) -> int:
    mapped = from_os_error(exc)
    if mapped is None:
        return _internal(exc)
    if _debug():
        traceback.print_exc()
    return report(mapped.message, mapped.hint, mapped.exit_code)


def _internal(exc: BaseException) -> int:
    if _debug():
        traceback.print_exc()
    return report(f"internal error: {type(exc).__name__}: {exc}", INTERNAL_HINT, ExitCode.INTERNAL)
