"""The launcher templates in ``packaging/`` and the quoting each file format needs for a path."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from dslocal.errors import NotFoundError
from dslocal.resources import data_folder

APP_ID = "io.github.dslocal.dslocal"  # AppStream component id (reverse DNS of the project's home page)
APP_NAME = "DeepSeek (dslocal)"  # what menus show


def template(*parts: str) -> str:
    """The text of ``packaging/<parts...>``."""
    entry = data_folder("packaging").joinpath(*parts)
    if not entry.is_file():
        raise NotFoundError(f"dslocal's packaged launcher template {'/'.join(parts)} is missing",
                            "reinstall dslocal: pip install --force-reinstall dslocal")
    return entry.read_text(encoding="utf-8")


def fill(text: str, values: dict[str, str]) -> str:
    """``text`` with each ``@NAME@`` replaced; a placeholder left over is a bug in the template."""
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    if "@DSLOCAL_" in text:  # pragma: no cover - programming error
        raise ValueError("a launcher template has a placeholder that was not filled")
    return text


def dslocal_executable() -> Path:
    """The ``dslocal`` program that launchers should start: this one (frozen, venv, pipx or uv tool)."""
    if getattr(sys, "frozen", False):  # the PyInstaller one-file build
        return Path(sys.executable)
    scripts = Path(sys.executable).parent  # not resolved: a venv's python is a symlink out of it
    for name in ("dslocal", "dslocal.exe"):
        candidate = scripts / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    found = shutil.which("dslocal")
    if found:
        return Path(found).absolute()
    raise NotFoundError("cannot find the 'dslocal' program to put in the launcher",
                        "install dslocal with pipx or uv tool (see the README) so that 'dslocal' is on PATH")


def sh_quote(value: str) -> str:
    """POSIX shell single quotes."""
    return "'" + value.replace("'", "'\"'\"'") + "'"


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted (verbatim) string."""
    return "'" + value.replace("'", "''") + "'"
