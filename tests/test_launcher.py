"""The desktop launchers: Linux files validated by freedesktop's own validators, installed and removed under
a temporary XDG_DATA_HOME through the real CLI, the terminal chosen and run; macOS and Windows rendered.

Validators: desktop-file-validate (Debian package desktop-file-utils; .ci/run installs it) and
``appstreamcli validate --no-net`` (AppStream). A terminal emulator cannot open a window here, so the
terminal in these tests is a small script under the name of a real one, which records its arguments
and runs the command it was given, as a terminal does.
"""

from __future__ import annotations

import json
import os
import plistlib
import shutil
import stat
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import REPO

from dslocal import __version__
from dslocal.errors import NotFoundError
from dslocal.packaging import linux, macos, windows
from dslocal.packaging.terminal import CONVENTIONS, find_terminal

LINUX = REPO / "packaging" / "linux"
VENV_DSLOCAL = Path(sys.executable).parent / "dslocal"


def validator(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (.ci/run installs desktop-file-utils)")
    return found


def desktop_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([validator("desktop-file-validate"), str(path)], capture_output=True, text=True)


def appstream_validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([validator("appstreamcli"), "validate", "--no-net", "--pedantic", str(path)],
                          capture_output=True, text=True)


def cli(*args: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dslocal", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=60, cwd=cwd)


def desktop_keys(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_packaged_linux_files_validate():
    desktop = desktop_validate(LINUX / linux.DESKTOP_FILE)
    assert desktop.returncode == 0 and desktop.stdout == "", desktop.stdout
    metainfo = appstream_validate(LINUX / linux.METAINFO_FILE)
    assert metainfo.returncode == 0, metainfo.stdout
    assert "Validation was successful" in metainfo.stdout and "W:" not in metainfo.stdout


def test_the_metadata_agree_with_each_other_and_the_package():
    root = ET.parse(LINUX / linux.METAINFO_FILE).getroot()
    assert root.findtext("launchable") == linux.DESKTOP_FILE
    assert root.find("releases/release").get("version") == __version__
    keys = desktop_keys((LINUX / linux.DESKTOP_FILE).read_text())
    assert keys["Icon"] == Path(linux.ICON_FILE).stem == root.findtext("icon")
    assert keys["Name"] == root.findtext("name")
    svg = ET.parse(LINUX / linux.ICON_FILE).getroot()
    assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("viewBox") == "0 0 128 128"


def test_install_and_uninstall_round_trip_under_xdg_data_home(tmp_path):
    share = tmp_path / "share"
    env = {"XDG_DATA_HOME": str(share), "DSLOCAL_HOME": str(tmp_path / "home")}
    installed = cli("launcher", "install", "--json", env=env)
    assert installed.returncode == 0, installed.stderr
    data = json.loads(installed.stdout)["data"]
    expected = [share / "applications" / "dslocal.desktop", share / "icons/hicolor/scalable/apps/dslocal.svg",
                share / "metainfo" / "io.github.dslocal.dslocal.metainfo.xml"]
    assert data["platform"] == "linux" and data["files"] == [str(path) for path in expected]
    assert all(path.is_file() and stat.S_IMODE(path.stat().st_mode) == 0o644 for path in expected)
    keys = desktop_keys(expected[0].read_text())
    assert keys["Exec"] == f"{VENV_DSLOCAL} launcher open" and keys["TryExec"] == str(VENV_DSLOCAL)
    assert desktop_validate(expected[0]).returncode == 0
    assert appstream_validate(expected[2]).returncode == 0
    assert expected[1].read_bytes() == (LINUX / linux.ICON_FILE).read_bytes()

    again = cli("launcher", "install", env=env)  # replaces, does not fail
    assert again.returncode == 0 and again.stdout.splitlines() == [str(path) for path in expected]

    removed = cli("launcher", "uninstall", "--json", env=env)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["data"]["removed"] == [str(path) for path in expected]
    assert not any(path.exists() for path in expected) and (share / "applications").is_dir()
    nothing = cli("launcher", "uninstall", env=env)
    assert nothing.returncode == 0 and "nothing to remove" in nothing.stderr


def test_an_awkward_program_path_is_quoted_as_the_spec_says(tmp_path):
    exe = Path("/opt/my apps/100%/$HOME/dslocal")
    text = linux.desktop_entry(exe)
    assert desktop_keys(text)["Exec"] == '"/opt/my apps/100%%/\\\\$HOME/dslocal" launcher open'
    (tmp_path / "dslocal.desktop").write_text(text)
    assert desktop_validate(tmp_path / "dslocal.desktop").returncode == 0
    assert linux.exec_argument("plain-path") == "plain-path"
    with pytest.raises(Exception, match="line break"):
        linux.exec_argument("/bad\nname")


def fake_terminal(folder: Path, name: str) -> Path:
    """A stand-in terminal: records its arguments, then runs what follows its options with --help."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    skip = len(CONVENTIONS.get(name, ("-e",)))
    path.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{folder}/{name}.args"\n'
        f"shift {skip}\n"
        f'"$@" --help > "{folder}/{name}.ran" 2>&1\n'
    )
    path.chmod(0o755)
    return path


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and path.stat().st_size:
            time.sleep(0.2)
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written")


def test_open_runs_the_tui_in_the_terminal_found(tmp_path):
    bin_dir = tmp_path / "bin"
    fake_terminal(bin_dir, "xterm")
    env = {"PATH": str(bin_dir), "TERMINAL": "", "XDG_CURRENT_DESKTOP": "", "DSLOCAL_HOME": str(tmp_path / "h"),
           "DISPLAY": ":99", "WAYLAND_DISPLAY": ""}
    dry = cli("launcher", "open", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    data = json.loads(dry.stdout)["data"]
    assert data["argv"] == [str(bin_dir / "xterm"), "-e", str(VENV_DSLOCAL), "tui"] and data["pid"] is None
    assert not (bin_dir / "xterm.args").exists()

    opened = cli("launcher", "open", env=env)
    assert opened.returncode == 0 and "opened the TUI in xterm" in opened.stderr
    assert wait_for(bin_dir / "xterm.args").splitlines() == ["-e", str(VENV_DSLOCAL), "tui"]
    assert "Usage: dslocal tui" in wait_for(bin_dir / "xterm.ran")


def test_terminal_choice_and_each_ones_command_line(tmp_path):
    bin_dir = tmp_path / "bin"
    for name in CONVENTIONS:
        fake_terminal(bin_dir, name)
    mine = fake_terminal(tmp_path / "own", "my-term")
    command = ["/x/dslocal", "tui"]
    base = {"PATH": str(bin_dir)}
    assert find_terminal(command, {**base, "TERMINAL": str(mine)}).argv == (str(mine), "-e", *command)
    gnome = find_terminal(command, {**base, "XDG_CURRENT_DESKTOP": "ubuntu:GNOME"})
    assert gnome.argv == (str(bin_dir / "gnome-terminal"), "--", *command) and "GNOME" in gnome.why
    assert find_terminal(command, {**base, "XDG_CURRENT_DESKTOP": "XFCE"}).argv[1] == "-x"
    assert find_terminal(command, base).name == "x-terminal-emulator"
    expected = {"gnome-terminal": ["--"], "konsole": ["-e"], "xfce4-terminal": ["-x"], "kitty": [],
                "alacritty": ["-e"], "wezterm": ["start", "--"], "foot": [], "xterm": ["-e"]}
    for name, before in expected.items():
        (bin_dir / "x-terminal-emulator").unlink(missing_ok=True)
        only = tmp_path / f"only-{name}"
        only.mkdir()
        shutil.copy(bin_dir / name, only / name)
        assert list(find_terminal(command, {"PATH": str(only)}).argv) == [str(only / name), *before, *command]
    with pytest.raises(NotFoundError, match="no terminal emulator"):
        find_terminal(command, {"PATH": str(tmp_path / "empty")})


def test_no_terminal_is_a_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"PATH": str(empty), "TERMINAL": "", "DSLOCAL_HOME": str(tmp_path / "h"), "WAYLAND_DISPLAY": "wayland-0"}
    out = cli("launcher", "open", env=env)
    assert out.returncode == 5 and "Traceback" not in out.stderr
    assert out.stderr.startswith("dslocal: error: no terminal emulator found") and "TERMINAL" in out.stderr
    fake_terminal(empty, "xterm")
    headless = cli("launcher", "open", env={**env, "WAYLAND_DISPLAY": "", "DISPLAY": ""})
    assert headless.returncode == 5 and "no graphical session" in headless.stderr and "dslocal tui" in headless.stderr
    assert not (empty / "xterm.args").exists()


def test_the_macos_app_bundle(tmp_path):
    recorder = tmp_path / "bin" / "dslocal"
    recorder.parent.mkdir()
    recorder.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/dslocal.args"\n')
    recorder.chmod(0o755)
    out = cli("launcher", "render", "macos", str(tmp_path / "apps"), "--exe", str(recorder), env={})
    assert out.returncode == 0, out.stderr
    bundle = tmp_path / "apps" / "DeepSeek (dslocal).app"
    assert out.stdout.strip() == str(bundle)
    info = plistlib.loads((bundle / "Contents" / "Info.plist").read_bytes())
    assert info["CFBundleIdentifier"] == "io.github.dslocal.dslocal" and info["CFBundlePackageType"] == "APPL"
    assert info["CFBundleShortVersionString"] == info["CFBundleVersion"] == __version__
    executable = bundle / "Contents" / "MacOS" / info["CFBundleExecutable"]
    command = bundle / "Contents" / "Resources" / "dslocal.command"
    for script in (executable, command):
        assert os.access(script, os.X_OK)
        assert subprocess.run(["sh", "-n", str(script)]).returncode == 0

    subprocess.run([str(command)], check=True, timeout=30)  # what Terminal.app runs
    assert (tmp_path / "dslocal.args").read_text().splitlines() == ["tui"]
    opener = tmp_path / "fake-open"
    opener.mkdir()
    (opener / "open").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/open.args"\n')
    (opener / "open").chmod(0o755)
    subprocess.run([str(executable)], check=True, timeout=30, env={"PATH": f"{opener}:/usr/bin:/bin"})
    assert (tmp_path / "open.args").read_text().splitlines() == ["-a", "Terminal", str(command)]

    again = macos.install(recorder, tmp_path / "apps")  # replaced whole, nothing left beside it
    assert again == bundle and sorted(p.name for p in (tmp_path / "apps").iterdir()) == [bundle.name]
    assert macos.uninstall(tmp_path / "apps") == [bundle] and not bundle.exists()


def test_the_windows_scripts(tmp_path):
    exe = "C:\\Program Files\\it's\\dslocal.exe"
    out = cli("launcher", "render", "windows", str(tmp_path), "--exe", exe, env={})
    assert out.returncode == 0, out.stderr
    script = (tmp_path / windows.SCRIPT).read_text()
    shortcut = (tmp_path / windows.SHORTCUT_SCRIPT).read_text()
    assert "$dslocal = 'C:\\Program Files\\it''s\\dslocal.exe'\n& $dslocal tui\n" in script
    assert f"$script = '{tmp_path / windows.SCRIPT}'" in shortcut
    assert "GetFolderPath('Programs')" in shortcut and "'DeepSeek (dslocal).lnk'" in shortcut
    assert "param([switch]$Remove)" in shortcut and "CreateShortcut($link)" in shortcut
    assert "@DSLOCAL_" not in script + shortcut
    assert windows.shortcut_command(tmp_path, remove=True)[-2:] == [str(tmp_path / windows.SHORTCUT_SCRIPT), "-Remove"]
    pwsh = shutil.which("pwsh")
    if pwsh:  # PowerShell's own parser, where it is installed
        for path in (tmp_path / windows.SCRIPT, tmp_path / windows.SHORTCUT_SCRIPT):
            check = ("$e = $null; [System.Management.Automation.Language.Parser]::ParseFile("
                     f"'{path}', [ref]$null, [ref]$e) | Out-Null; exit $e.Count")
            assert subprocess.run([pwsh, "-NoProfile", "-Command", check]).returncode == 0
