"""The CLI boundary: the same answers in-process and in a subprocess, broken pipes, JSON errors, typos.

:func:`invoke` runs the CLI in this process (click's CliRunner isolation around the very
boundary ``python -m dslocal`` uses), which the hostile-argument test relies on for speed;
the first tests here prove that it answers exactly as a subprocess does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from dslocal.cli.boundary import run
from dslocal.cli.main import cli
from dslocal.errors import ExitCode


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Ran:
    """Run ``dslocal ARGS`` in-process through the CLI boundary; ``env`` values of None unset a variable."""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        code = run(cli, list(args))
        sys.stdout.flush()
        sys.stderr.flush()
    return Ran(int(code), out.getvalue().decode("utf-8", "replace"), err.getvalue().decode("utf-8", "replace"))


@pytest.fixture
def offline(monkeypatch):
    """Ollama, every hub and the release mirror at a loopback port that refuses connections."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("OLLAMA_HOST", closed)
        for name in ("DSLOCAL_HF_ENDPOINT", "HF_ENDPOINT", "DSLOCAL_HF_MIRROR_ENDPOINT", "DSLOCAL_MODELSCOPE_ENDPOINT",
                     "DSLOCAL_OLLAMA_RELEASE_BASE"):
            monkeypatch.setenv(name, f"http://{closed}")
        yield closed


def assert_one_line_error(result, code: int, *needles: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("dslocal: error: ") and lines[-1].startswith("hint: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


SAME_IN_AND_OUT = [
    ("pul",),  # unknown command
    ("plan", ""),  # empty argument
    ("plan", "r1-671b-fp8", "--cluster", "2 nodes x 0 H20", "--json"),  # a DslocalError under --json
    ("config", "set", "connections", "-3"),
    ("paths", "--json"),  # success
    ("hw", "--hw", "rtx4090"),  # did-you-mean in a hint
]


@pytest.mark.parametrize("args", SAME_IN_AND_OUT, ids=lambda a: " ".join(a) or "''")
def test_in_process_answers_exactly_as_a_subprocess(cli, dslocal_home, args):
    inside = invoke(*args)
    outside = cli(*args)
    assert (inside.returncode, inside.stdout, inside.stderr) == (outside.returncode, outside.stdout, outside.stderr)


def test_a_closed_stdout_exits_0_quietly(dslocal_home):
    """A18: ``dslocal recommend | head -1`` must not fail a ``set -o pipefail`` script."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before dslocal writes a byte: every write is EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dslocal", "recommend", "--hw", "cpu-only-32gb", "--all"],
            stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_json_errors_are_json_on_stdout(dslocal_home):
    """B11: with --json a failure prints an error object on stdout; stderr keeps the human lines."""
    result = invoke("plan", "r1-671b-fp8", "--cluster", "2 nodes x 0 H20", "--json")
    assert_one_line_error(result, ExitCode.USAGE, "0 GPUs per node")
    doc = json.loads(result.stdout)
    assert set(doc) == {"version", "command", "error"} and doc["version"] == 1 and doc["command"] == "plan"
    assert set(doc["error"]) == {"message", "hint", "exit_code"} and doc["error"]["exit_code"] == 2
    assert doc["error"]["message"] in result.stderr and doc["error"]["hint"] in result.stderr


@pytest.mark.parametrize("args, command", [
    (("gguf", "inspect", "missing.gguf", "--json"), "gguf inspect"),
    (("config", "show", "--json"), "config show"),  # a ConfigError
    (("plan", "--json"), "plan"),  # a usage error found after --json was parsed
    (("plan", "x", "--ctx", "1", "--json"), "plan"),  # ... and one found before it
])
def test_json_errors_name_the_command(dslocal_home, args, command, monkeypatch):
    monkeypatch.setenv("DSLOCAL_CONNECTIONS", "0")
    result = invoke(*args)
    assert result.returncode != 0
    doc = json.loads(result.stdout)
    assert doc["command"] == command and doc["error"]["exit_code"] == result.returncode


def test_errors_without_json_leave_stdout_empty(dslocal_home):
    result = invoke("plan", "r1-671b-fp8", "--cluster", "2 nodes x 0 H20")
    assert result.returncode == ExitCode.USAGE and result.stdout == ""


@pytest.mark.parametrize("typo, suggestion", [
    ("recomend", "'recommend'"), ("lst", "'list'"), ("instal", None),
])
def test_mistyped_commands_get_a_suggestion(dslocal_home, typo, suggestion):
    """B8: the lazily loaded commands get click's did-you-mean like the eager subcommands do."""
    result = invoke(typo)
    assert_one_line_error(result, ExitCode.USAGE, f"No such command {typo!r}")
    if suggestion:
        assert suggestion in result.stderr
    sub = invoke("ollama", typo)
    assert sub.returncode == ExitCode.USAGE
    if typo == "instal":
        assert "Did you mean 'install'?" in sub.stderr


@pytest.mark.parametrize("args", [("plan", ""), ("plan", "  "), ("show", ""), ("gguf", "merge", "", "-o", "x.gguf"),
                                  ("config", "set", "connections", "")])
def test_an_empty_argument_is_a_usage_error(dslocal_home, args):
    """B8: ``plan ''`` used to say '. is a directory'."""
    result = invoke(*args)
    assert_one_line_error(result, ExitCode.USAGE, "is empty")
    assert ". is a directory" not in result.stderr


def test_hw_preset_typos_get_a_suggestion(dslocal_home):
    result = invoke("plan", "r1-distill-qwen-7b", "--hw", "rtx4090")
    assert_one_line_error(result, ExitCode.USAGE, "did you mean rtx4090-64gb")


def test_gguf_help_promises_only_real_subcommands(dslocal_home):
    """B9: the group's help said 'Inspect, check, merge and split' but there is no 'check'."""
    import click

    group = cli.get_command(click.Context(cli), "gguf")
    names = set(group.list_commands(click.Context(group)))
    assert "check" not in names
    for text in (group.help, invoke("--help").stdout, invoke("gguf", "--help").stdout):
        assert "Inspect, check" not in text
        assert "inspect" in text.lower() and "(and check)" in text
