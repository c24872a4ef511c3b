"""The room rules of DESIGN.md: the core never imports UI libraries; --help stays lazy."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import click

import dslocal
from dslocal.cli.main import COMMANDS, cli

UI_LIBRARIES = ("textual", "rich", "click", "typer")
FRONT_ENDS = ("dslocal.cli", "dslocal.tui")


def core_modules() -> list[str]:
    names = ["dslocal"]
    for info in pkgutil.walk_packages(dslocal.__path__, "dslocal."):
        if info.name in ("dslocal.__main__",) or info.name.startswith(FRONT_ENDS):
            continue
        names.append(info.name)
    return names


def loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_the_core_never_imports_ui_libraries():
    modules = core_modules()
    assert "dslocal.config" in modules and "dslocal.testing.ggufgen" in modules
    loaded = loaded_after("\n".join(f"import {name}" for name in modules))
    leaked = sorted(m for m in loaded if m.split(".")[0] in UI_LIBRARIES)
    assert leaked == []


def test_help_and_version_import_no_heavy_library():
    for argv in (["--help"], ["--version"]):
        loaded = loaded_after(
            "import sys\nfrom dslocal.cli.boundary import run\nfrom dslocal.cli.main import cli\n"
            f"import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n    run(cli, {argv!r})"
        )
        heavy = sorted(m for m in loaded if m.split(".")[0] in ("textual", "huggingface_hub", "rich", "numpy", "gguf"))
        assert heavy == [], argv


def test_lazy_registry_short_help_matches_each_command():
    ctx = click.Context(cli)
    for name, lazy in COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=200) == lazy.short_help
