"""The error hierarchy: user-ready text plus a hint that names the next step.

Front ends map these once (the CLI's boundary prints ``dslocal: error: ...`` and
``hint: ...`` and exits with :attr:`DslocalError.exit_code`). Nothing here prints.
"""

from __future__ import annotations

import errno
import os
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Named process exit codes, stable for scripts."""

    OK = 0
    FAILURE = 1  # the operation failed for a reason described in the message
    USAGE = 2  # bad command line: unknown command, bad flag or value
    CONFIG = 3  # unreadable or invalid configuration
    INPUT = 4  # a file or target given by the user is missing or malformed
    NOT_FOUND = 5  # a model, variant or resource does not exist
    NETWORK = 6  # a download or remote read failed
    DISK = 7  # not enough space or not writable
    OLLAMA = 8  # the Ollama daemon is missing, dead or refused the request
    INTERNAL = 70  # a bug in dslocal (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C


class DslocalError(Exception):
    """Base of every error dslocal expects; ``message`` and ``hint`` are shown as-is."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(DslocalError):
    exit_code = ExitCode.USAGE


class ConfigError(DslocalError):
    exit_code = ExitCode.CONFIG


class InputError(DslocalError):
    """A file or target named by the user cannot be used."""

    exit_code = ExitCode.INPUT


class NotFoundError(DslocalError):
    exit_code = ExitCode.NOT_FOUND


class NetworkError(DslocalError):
    exit_code = ExitCode.NETWORK


class DiskError(DslocalError):
    exit_code = ExitCode.DISK


class OllamaError(DslocalError):
    exit_code = ExitCode.OLLAMA


class AccessError(NetworkError):
    """The remote refused access: a gated or private repository, or a token it does not accept."""


# -- OSError -> DslocalError, for writers and for the CLI boundary -----------------------------------------

_NO_SPACE = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded"}
_NOT_WRITABLE = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                 errno.EPERM: "operation not permitted"}
_BAD_PATH = (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST)
WRITE_ELSEWHERE = "write somewhere else (-o, --dir, --prefix, --save or DSLOCAL_HOME) or fix its permissions"
SHOWN_PATH = 100  # characters of a path shown in a one-line message


def shown_path(path: object) -> str:
    """A path for a one-line message: long ones keep their start and end."""
    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return text if len(text) <= SHOWN_PATH else f"{text[:40]}...{text[-(SHOWN_PATH - 43):]}"


def _existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest existing folder (a temporary name is never shown)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The first component of ``path`` that exists and is not a folder."""
    for candidate in (*reversed(path.parents), path):
        if os.path.lexists(candidate) and not candidate.is_dir():
            return candidate
    return None


def from_os_error(exc: OSError, path: object = None) -> DslocalError | None:
    """The user-facing error for a file system failure, or None when ``exc`` is not one users can fix.

    ENOSPC/EDQUOT and EROFS/EACCES/EPERM become :class:`DiskError` (exit 7); ENOTDIR,
    EISDIR, ENAMETOOLONG, ELOOP and EEXIST (a file where a folder is made) on a path the
    user chose become :class:`InputError` (exit 4).
    ``path`` defaults to the file the error names.
    """
    raw = path if path is not None else exc.filename
    where = Path(os.fsdecode(raw)) if isinstance(raw, (str, bytes, os.PathLike)) and raw else None
    if exc.errno in _NO_SPACE:
        place = f" writing {shown_path(where)}" if where else ""
        return DiskError(f"{_NO_SPACE[exc.errno]}{place}",
                         "free some space (df -h shows where) or write somewhere else, then rerun the same command")
    if exc.errno in _NOT_WRITABLE:
        shown = shown_path(_existing(where)) if where else "the destination"
        return DiskError(f"not writable: {shown} ({_NOT_WRITABLE[exc.errno]})", WRITE_ELSEWHERE)
    if exc.errno not in _BAD_PATH:
        return None
    shown = shown_path(where) if where else "a path"
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(where) if where else None
        if blocker is None and exc.errno == errno.EEXIST:
            return InputError(f"already exists: {shown}", "choose another name, or move it out of the way")
        if blocker is not None:
            shown = f"{shown_path(blocker)} (it is a file)"
        return InputError(f"not a folder: {shown}", "name a folder there, or move the file out of the way")
    if exc.errno == errno.EISDIR:
        return InputError(f"{shown} is a folder, not a file", "name a file (inside that folder, for example)")
    if exc.errno == errno.ENAMETOOLONG:
        return InputError(f"file name too long: {shown}", "use a shorter name (most file systems allow 255 bytes)")
    return InputError(f"too many levels of symbolic links: {shown}", "check the links in that path")
