"""The macOS launcher: ``DeepSeek (dslocal).app`` whose executable opens ``dslocal.command`` in Terminal.

Bundle layout (Apple's "Bundle Programming Guide", macOS application bundles): ``Contents/Info.plist``,
the executable named by CFBundleExecutable in ``Contents/MacOS``, other files in ``Contents/Resources``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from dslocal import __version__
from dslocal.packaging.bundle import write_tree
from dslocal.packaging.templates import APP_NAME, fill, sh_quote, template

BUNDLE_NAME = f"{APP_NAME}.app"


def applications_dir() -> Path:
    """The user's own Applications folder (Finder lists it; no administrator needed)."""
    return Path.home() / "Applications"


def command_script(exe: Path) -> str:
    return fill(template("macos", "dslocal.command"), {"DSLOCAL_EXE": sh_quote(str(exe))})


def bundle_files(exe: Path, version: str = __version__) -> dict[str, tuple[str, int]]:
    """The app bundle's files, relative to the ``.app`` folder."""
    return {
        "Contents/Info.plist": (fill(template("macos", "Info.plist"), {"DSLOCAL_VERSION": version}), 0o644),
        "Contents/MacOS/dslocal": (template("macos", "launch"), 0o755),
        "Contents/Resources/dslocal.command": (command_script(exe), 0o755),
    }


def install(exe: Path, folder: Path | None = None) -> Path:
    """Write (or replace) the app bundle in ``folder`` (default ~/Applications); returns its path."""
    return write_tree((folder or applications_dir()) / BUNDLE_NAME, bundle_files(exe))


def uninstall(folder: Path | None = None) -> list[Path]:
    bundle = (folder or applications_dir()) / BUNDLE_NAME
    if not bundle.is_dir():
        return []
    shutil.rmtree(bundle)
    return [bundle]
