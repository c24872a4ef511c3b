"""Crash-safe file writing: a temporary name in the target folder, fsync, rename."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: Path, mode: str = "wb", *, perms: int | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    ``perms`` sets the file's mode (the temporary file starts as 0600). An OSError names
    ``path`` (not the temporary file), so :func:`dslocal.errors.from_os_error` can say
    which file could not be written.
    """
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if perms is not None:
            os.fchmod(fd, perms)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, tmp_name):
            exc.filename = str(path)
        raise


@contextlib.contextmanager
def naming(path: Path) -> Iterator[None]:
    """Make an OSError raised inside name ``path`` when it names no file or a temporary one beside it."""
    try:
        yield
    except OSError as exc:
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes)) else None
        if name is None or Path(name).name.startswith(f".{path.name}."):
            exc.filename = str(path)
        raise


def atomic_write_bytes(path: Path, data: bytes, *, perms: int | None = None) -> None:
    with atomic_output(path, "wb", perms=perms) as handle:
        handle.write(data)


def remove_stale_temps(path: Path) -> None:
    """Remove temporary files that an interrupted :func:`atomic_output` left beside ``path``."""
    path = Path(path)
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def glob_escape(name: str) -> str:
    import glob

    return glob.escape(name)
