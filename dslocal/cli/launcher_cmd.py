"""``dslocal launcher``: dslocal in the desktop's application menu, opening the TUI in a terminal."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note


def _windows_folder(app: AppContext) -> Path:
    return app.paths.data_dir / "launcher"


@click.group("launcher", epilog="""\b
Examples:
  dslocal launcher install       "DeepSeek (dslocal)" in the application menu
  dslocal launcher open          the TUI in this desktop's terminal emulator
  TERMINAL=kitty dslocal launcher open
  dslocal launcher render macos ./dist
  dslocal launcher uninstall
""")
def launcher_group() -> None:
    """Add dslocal to the desktop's application menu, or remove it; open the TUI in a terminal."""


@launcher_group.command("install")
@json_option
@click.pass_obj
def install_cmd(app: AppContext, as_json: bool) -> None:
    """Install the launcher: on Linux a desktop entry, icon and AppStream data under $XDG_DATA_HOME.

    On macOS it writes "DeepSeek (dslocal).app" to ~/Applications; on Windows a Start-menu shortcut.
    The launcher runs this dslocal by its full path, so it works without PATH set up.
    """
    from dslocal.packaging.launchers import install
    from dslocal.packaging.templates import dslocal_executable

    result = install(dslocal_executable(), _windows_folder(app))

    def human() -> None:
        for path in result.files:
            click.echo(path)
        note(f"installed the launcher for {result.exe}; look for \"DeepSeek (dslocal)\" in the application menu")

    emit("launcher install", asdict(result), as_json=as_json, human=human)


@launcher_group.command("uninstall")
@json_option
@click.pass_obj
def uninstall_cmd(app: AppContext, as_json: bool) -> None:
    """Remove the launcher's files (the folders they were in stay)."""
    from dslocal.packaging.launchers import uninstall

    removed = [str(path) for path in uninstall(_windows_folder(app))]

    def human() -> None:
        for path in removed:
            click.echo(path)
        note("removed the launcher" if removed else "the launcher was not installed; nothing to remove")

    emit("launcher uninstall", {"removed": removed}, as_json=as_json, human=human)


@launcher_group.command("open")
@click.option("--dry-run", is_flag=True, help="Print the command line instead of running it.")
@json_option
@click.pass_obj
def open_cmd(app: AppContext, dry_run: bool, as_json: bool) -> None:
    """Open the TUI in a terminal emulator (what the menu entry runs).

    On Linux: $TERMINAL, else the desktop's own terminal, else the first of x-terminal-emulator,
    gnome-terminal, konsole, xfce4-terminal, kitty, alacritty, wezterm, foot and xterm on PATH.
    """
    from dslocal.errors import NotFoundError
    from dslocal.packaging.launchers import open_command, open_tui
    from dslocal.packaging.templates import dslocal_executable

    try:
        argv, chosen = open_command(dslocal_executable(), _windows_folder(app))
    except NotFoundError as exc:
        _desktop_notice(exc.message, exc.hint)
        raise
    pid = None if dry_run else open_tui(argv)
    data = {"argv": argv, "terminal": chosen, "pid": pid}

    def human() -> None:
        if dry_run:
            click.echo(subprocess.list2cmdline(argv) if chosen == "a PowerShell console" else _shell_line(argv))
        else:
            note(f"opened the TUI in {chosen}")

    emit("launcher open", data, as_json=as_json, human=human)


def _shell_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(argv)


def _desktop_notice(message: str, hint: str | None) -> None:
    """A menu entry has no terminal to print into: also tell the person through the desktop, if it can."""
    notify = shutil.which("notify-send")
    if notify:
        try:
            subprocess.run([notify, "--app-name=dslocal", "dslocal cannot open", f"{message}. {hint or ''}"],
                           timeout=5, check=False, capture_output=True)
        except (OSError, subprocess.TimeoutExpired):
            pass


@launcher_group.command("render", epilog="""\b
Examples:
  dslocal launcher render linux ./out       dslocal.desktop, dslocal.svg, the AppStream metainfo
  dslocal launcher render macos ./out       "DeepSeek (dslocal).app"
  dslocal launcher render windows ./out     dslocal.ps1 and install-shortcut.ps1
""")
@click.argument("platform", type=click.Choice(["linux", "macos", "windows"]))
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--exe", type=click.Path(dir_okay=False, path_type=Path),
              help="The full path of the dslocal program the launcher runs (default: this one).")
def render_cmd(platform: str, folder: Path, exe: Path | None) -> None:
    """Write one platform's launcher files into FOLDER, filled in, for packagers."""
    from dslocal.packaging.launchers import render
    from dslocal.packaging.templates import dslocal_executable

    for path in render(platform, folder.absolute(), exe or dslocal_executable()):
        click.echo(path)
