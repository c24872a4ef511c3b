"""The error hierarchy: user-ready text plus a hint that names the next step.

Front ends map these once (the CLI's boundary prints ``dslocal: error: ...`` and
``hint: ...`` and exits with :attr:`DslocalError.exit_code`). Nothing here prints.
"""

from __future__ import annotations

from enum import IntEnum


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
