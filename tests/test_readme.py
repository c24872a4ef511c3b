"""The README stays true: its test command is what CI runs, its reference is what --help prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import REPO

from dslocal.cli import reference

README = (REPO / "README.md").read_text(encoding="utf-8")


def fenced_after(marker: str) -> str:
    tail = README.split(marker, 1)[1]
    match = re.search(r"```bash\n(.+?)\n```", tail, re.S)
    assert match, f"no bash block after {marker}"
    return match.group(1)


def test_quick_start_has_exactly_two_commands():
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.+?)\n```", section, re.S)
    assert len(blocks) == 2
    assert all("\n" not in block for block in blocks)


def test_ci_runs_the_readme_test_command_verbatim():
    readme_command = fenced_after("<!-- test-command -->")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    match = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.M)
    assert match, ".ci/run must define TEST_COMMAND"
    assert match.group(1) == readme_command
    assert 'bash -c "$TEST_COMMAND"' in ci


def test_readme_reference_is_the_generated_one():
    assert reference.splice(README) == README, "run: python -m dslocal.cli.reference --write README.md"


def test_generated_reference_matches_real_help_output():
    env = {**os.environ, "COLUMNS": str(reference.WIDTH + 2)}
    rendered = reference.render()
    for path in reference.command_paths():
        args = path.split()[1:]
        result = subprocess.run(
            [sys.executable, "-m", "dslocal", *args, "--help"], capture_output=True, text=True, env=env
        )
        assert result.returncode == 0, result.stderr
        assert f"### `{path}`\n\n```text\n{result.stdout}```" in rendered, path
