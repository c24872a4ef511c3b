"""``dslocal completion SHELL``: click's scripts, loaded in a real bash, completing through the real CLI.

The bash check drives the completion function the way bash's programmable completion does: COMP_WORDS
and COMP_CWORD set, the function called, COMPREPLY read back (bash manual, "Programmable Completion").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the venv's bin: 'dslocal' is its console script


def script(shell: str) -> str:
    out = subprocess.run([str(BIN / "dslocal"), "completion", shell], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def bash_complete(words: list[str], tmp_path: Path) -> list[str]:
    """COMPREPLY after completing the last of ``words`` with the sourced bash script."""
    (tmp_path / "dslocal.bash").write_text(script("bash"))
    words_literal = " ".join(f"'{word}'" for word in words)
    program = (
        "set -eu\n"
        f"source {tmp_path / 'dslocal.bash'}\n"
        "complete -p dslocal\n"
        f"COMP_WORDS=({words_literal}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
        "_dslocal_completion dslocal\n"
        'printf "reply:%s\\n" "${COMPREPLY[@]}"\n'
    )
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("complete -o nosort -F _dslocal_completion dslocal")
    return [line[len("reply:"):] for line in out.stdout.splitlines() if line.startswith("reply:")]


def test_bash_completes_a_command_name(tmp_path):
    assert bash_complete(["dslocal", "pu"], tmp_path) == ["pull"]


def test_bash_completes_subcommands_and_choices(tmp_path):
    assert bash_complete(["dslocal", "ollama", "st"], tmp_path) == ["start", "status", "stop"]
    assert bash_complete(["dslocal", "completion", ""], tmp_path) == ["bash", "zsh", "fish"]
    assert "--help" in bash_complete(["dslocal", "--"], tmp_path)


def test_completing_names_imports_no_command_module():
    code = (
        "import sys, json\nfrom dslocal.cli.boundary import run\nfrom dslocal.cli.main import cli\n"
        "code = run(cli, [])\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.endswith('_cmd'))))\n"
    )
    env = {**os.environ, "_DSLOCAL_COMPLETE": "bash_complete", "COMP_WORDS": "dslocal ", "COMP_CWORD": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    *replies, loaded = out.stdout.splitlines()
    assert "plain,pull" in replies and "plain,completion" in replies and "plain,ollama" in replies
    assert json.loads(loaded) == []


def test_zsh_and_fish_scripts(tmp_path):
    zsh, fish = script("zsh"), script("fish")
    assert zsh.startswith("#compdef dslocal") and "_DSLOCAL_COMPLETE=zsh_complete" in zsh
    assert "complete --no-files --command dslocal" in fish and "_DSLOCAL_COMPLETE=fish_complete" in fish
    for shell, text in (("zsh", zsh), ("fish", fish)):
        if shutil.which(shell) is None:
            continue
        path = tmp_path / f"dslocal.{shell}"
        path.write_text(text)
        out = subprocess.run([shell, "-n", str(path)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr


def test_an_unknown_shell_is_a_usage_error():
    out = subprocess.run([str(BIN / "dslocal"), "completion", "tcsh"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "tcsh" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completes_through_the_cli(tmp_path):
    env = {**os.environ, "_DSLOCAL_COMPLETE": "zsh_complete", "COMP_WORDS": "dslocal pu", "COMP_CWORD": "1"}
    out = subprocess.run([str(BIN / "dslocal")], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and out.stdout.splitlines()[:2] == ["plain", "pull"]
