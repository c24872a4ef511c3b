"""Install, remove, render and open dslocal's desktop launcher on this machine's platform."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import DslocalError, NotFoundError, UsageError
from dslocal.packaging import linux, macos, windows
from dslocal.packaging.templates import template
from dslocal.packaging.terminal import find_terminal

PLATFORMS = ("linux", "macos", "windows")


def this_platform() -> str:
    if sys.platform == "darwin":
        return "macos"
    if sys.platform == "win32":
        return "windows"
    return "linux"  # Linux and the BSDs: freedesktop.org desktops


@dataclass(frozen=True)
class Installed:
    platform: str
    exe: str
    files: tuple[str, ...]


def render(platform: str, dest: Path, exe: Path) -> list[Path]:
    """Write the launcher files for ``platform`` into ``dest`` (for packagers, and to look at)."""
    if platform == "linux":
        files = {linux.DESKTOP_FILE: linux.desktop_entry(exe), linux.ICON_FILE: template("linux", linux.ICON_FILE),
                 linux.METAINFO_FILE: template("linux", linux.METAINFO_FILE)}
        from dslocal.fsutil import atomic_write_bytes

        for name, text in files.items():
            atomic_write_bytes(dest / name, text.encode(), perms=0o644)
        return [dest / name for name in files]
    if platform == "macos":
        return [macos.install(exe, dest)]
    if platform == "windows":
        windows.write_scripts(exe, dest)
        return [dest / windows.SCRIPT, dest / windows.SHORTCUT_SCRIPT]
    raise UsageError(f"unknown platform {platform!r}", f"choose one of {', '.join(PLATFORMS)}")


def install(exe: Path, windows_folder: Path) -> Installed:
    """Add the launcher to this platform's application menu."""
    platform = this_platform()
    if platform == "linux":
        files: tuple[Path, ...] = linux.install(exe).files()
    elif platform == "macos":
        files = (macos.install(exe),)
    else:
        windows.write_scripts(exe, windows_folder)
        _powershell(windows.shortcut_command(windows_folder))
        files = (windows_folder / windows.SCRIPT, windows_folder / windows.SHORTCUT_SCRIPT)
    return Installed(platform=platform, exe=str(exe), files=tuple(str(path) for path in files))


def uninstall(windows_folder: Path) -> list[Path]:
    """Remove the launcher; returns what was removed (nothing, when it was not installed)."""
    platform = this_platform()
    if platform == "linux":
        return linux.uninstall()
    if platform == "macos":
        return macos.uninstall()
    if not (windows_folder / windows.SHORTCUT_SCRIPT).is_file():
        return []
    _powershell(windows.shortcut_command(windows_folder, remove=True))
    removed = [windows_folder / name for name in (windows.SCRIPT, windows.SHORTCUT_SCRIPT)]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def _powershell(argv: list[str]) -> None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        raise NotFoundError(f"cannot run {argv[0]}: {exc.strerror or exc}",
                            "run the script yourself: " + " ".join(argv)) from None
    if out.returncode != 0:
        said = (out.stderr or out.stdout).strip().splitlines()
        raise DslocalError(f"{argv[-1]} failed: {said[-1] if said else f'exit {out.returncode}'}",
                           "run it yourself in PowerShell to see why")


def open_command(exe: Path, windows_folder: Path) -> tuple[list[str], str]:
    """The command line that opens the TUI in a terminal window here, and how it was chosen."""
    platform = this_platform()
    if platform == "linux":
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise NotFoundError("no graphical session to open a terminal window in (DISPLAY and WAYLAND_DISPLAY "
                                "are not set)", "run 'dslocal tui' in this terminal instead")
        terminal = find_terminal([str(exe), "tui"])
        return list(terminal.argv), f"{terminal.name} ({terminal.why})"
    if platform == "macos":
        return ["open", "-a", "Terminal", str(_installed(macos.applications_dir() / macos.BUNDLE_NAME /
                                                         "Contents" / "Resources" / "dslocal.command"))], "Terminal.app"
    script = _installed(windows_folder / windows.SCRIPT)
    return ["powershell.exe", "-NoProfile", "-ExecutionPolicy", "Bypass", "-File", str(script)], "a PowerShell console"


def _installed(path: Path) -> Path:
    if not path.is_file():
        raise NotFoundError("dslocal's launcher is not installed", "run 'dslocal launcher install' first")
    return path


def open_tui(argv: list[str]) -> int:
    """Start ``argv`` (a terminal running the TUI) detached from this process; returns its pid."""
    flags = getattr(subprocess, "CREATE_NEW_CONSOLE", 0)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, creationflags=flags)
    return proc.pid
