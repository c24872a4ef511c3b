"""The Linux launcher: a desktop entry, its icon and AppStream metadata in the user's XDG data folder.

Where they go (freedesktop.org specifications): ``$XDG_DATA_HOME/applications/dslocal.desktop``
(Desktop Entry Specification, "Installing"), ``$XDG_DATA_HOME/icons/hicolor/scalable/apps/dslocal.svg``
(Icon Theme Specification) and ``$XDG_DATA_HOME/metainfo/<id>.metainfo.xml`` (AppStream, "Metainfo
files"); ``$XDG_DATA_HOME`` defaults to ``~/.local/share`` (platformdirs reads it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import InputError
from dslocal.fsutil import atomic_write_bytes
from dslocal.packaging.templates import APP_ID, template

DESKTOP_FILE = "dslocal.desktop"
ICON_FILE = "dslocal.svg"
METAINFO_FILE = f"{APP_ID}.metainfo.xml"

# Desktop Entry Specification, "The Exec key": an argument holding one of these is quoted; inside the
# quotes ", `, $ and \ take a backslash; a literal % is %%; then the value is escaped as a string (\\).
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def data_home() -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share``."""
    import platformdirs

    return Path(platformdirs.user_data_dir()).absolute()


@dataclass(frozen=True)
class LinuxLauncher:
    desktop: Path
    icon: Path
    metainfo: Path

    @classmethod
    def under(cls, share: Path) -> LinuxLauncher:
        return cls(desktop=share / "applications" / DESKTOP_FILE,
                   icon=share / "icons" / "hicolor" / "scalable" / "apps" / ICON_FILE,
                   metainfo=share / "metainfo" / METAINFO_FILE)

    def files(self) -> tuple[Path, ...]:
        return (self.desktop, self.icon, self.metainfo)


def exec_argument(arg: str) -> str:
    """One argument of an Exec= line, quoted and escaped as the Desktop Entry Specification says."""
    if any(ch in arg for ch in "\n\r"):
        raise InputError(f"{arg!r} holds a line break; a desktop entry cannot run it",
                         "install dslocal under a folder whose name has no line breaks")
    arg = arg.replace("%", "%%")
    if any(ch in _RESERVED for ch in arg):
        arg = '"' + "".join("\\" + ch if ch in '"`$\\' else ch for ch in arg) + '"'
    return arg.replace("\\", "\\\\")


def desktop_entry(exe: Path) -> str:
    """packaging/linux/dslocal.desktop, its Exec= and TryExec= pointing at ``exe``."""
    lines = []
    for line in template("linux", DESKTOP_FILE).splitlines():
        if line.startswith("Exec="):
            line = "Exec=" + " ".join(exec_argument(arg) for arg in (str(exe), "launcher", "open"))
        elif line.startswith("TryExec="):
            line = "TryExec=" + str(exe).replace("\\", "\\\\")  # a plain string value: only \\ is escaped
        lines.append(line)
    return "\n".join(lines) + "\n"


def install(exe: Path, share: Path | None = None) -> LinuxLauncher:
    """Write the desktop entry, icon and metainfo (each replaced whole); returns where they are."""
    launcher = LinuxLauncher.under(share or data_home())
    atomic_write_bytes(launcher.desktop, desktop_entry(exe).encode(), perms=0o644)
    atomic_write_bytes(launcher.icon, template("linux", ICON_FILE).encode(), perms=0o644)
    atomic_write_bytes(launcher.metainfo, template("linux", METAINFO_FILE).encode(), perms=0o644)
    return launcher


def uninstall(share: Path | None = None) -> list[Path]:
    """Remove the launcher's files; returns those that were there. The XDG folders stay."""
    removed = []
    for path in LinuxLauncher.under(share or data_home()).files():
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
