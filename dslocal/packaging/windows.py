"""The Windows launcher: ``dslocal.ps1`` runs the TUI; ``install-shortcut.ps1`` adds it to the Start menu."""

from __future__ import annotations

from pathlib import Path

from dslocal.packaging.bundle import write_tree
from dslocal.packaging.templates import fill, ps_quote, template

SCRIPT = "dslocal.ps1"
SHORTCUT_SCRIPT = "install-shortcut.ps1"


def scripts(exe: Path, folder: Path) -> dict[str, tuple[str, int]]:
    """The two scripts, for a ``folder`` they will live in (the shortcut points into it)."""
    return {
        SCRIPT: (fill(template("windows", SCRIPT), {"DSLOCAL_EXE": ps_quote(str(exe))}), 0o644),
        SHORTCUT_SCRIPT: (fill(template("windows", SHORTCUT_SCRIPT),
                               {"DSLOCAL_SCRIPT": ps_quote(str(folder / SCRIPT))}), 0o644),
    }


def write_scripts(exe: Path, folder: Path) -> Path:
    return write_tree(folder, scripts(exe, folder))


def shortcut_command(folder: Path, *, remove: bool = False) -> list[str]:
    """The PowerShell command line that creates (or removes) the Start-menu shortcut."""
    argv = ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File", str(folder / SHORTCUT_SCRIPT)]
    return [*argv, "-Remove"] if remove else argv
