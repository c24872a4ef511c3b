"""B10 and B12: the ollama subcommands when things are odd: already running, a broken binary, offline,
and a server that accepts connections but never answers (busy loading a 200 GB model)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

import pytest
from test_cli_boundary import assert_one_line_error, invoke, offline  # noqa: F401 - a fixture
from toolbox import free_port

from dslocal.errors import ExitCode

FAKE = Path(__file__).parent / "fake_ollama.py"




def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def fake_ollama(tmp_path, dslocal_home, monkeypatch) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "ollama", f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
           "OLLAMA_MODELS": str(tmp_path / "models"), "FAKE_OLLAMA_VERSION": "0.32.15"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_start_when_dslocal_s_server_already_runs_is_not_an_error(cli, fake_ollama):
    assert cli("ollama", "start").returncode == 0
    try:
        again = cli("ollama", "start")
        assert again.returncode == 0, again.stderr
        assert "already running (pid" in again.stderr and "error" not in again.stderr
        status = json.loads(cli("ollama", "status", "--json").stdout)["data"]
        assert status["running"] and status["managed_pid"] and not status["silent"]
    finally:
        assert cli("ollama", "stop").returncode == 0


@pytest.mark.usefixtures("offline")
def test_status_names_a_broken_binary(dslocal_home, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "ollama", "#!/bin/sh\necho 'error while loading shared libraries: libcuda.so.1' >&2\nexit 127\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    human = invoke("ollama", "status")
    assert human.returncode == 0, human.stderr
    line = next(line for line in human.stdout.splitlines() if line.startswith("binary"))
    assert "(None)" not in line and "broken" in line and "exited 127" in line and "libcuda.so.1" in line
    data = json.loads(invoke("ollama", "status", "--json").stdout)["data"]
    assert data["binary_version"] is None and "exited 127" in data["binary_error"]


@pytest.mark.usefixtures("offline")
def test_install_offline_fails_fast_with_the_mirror_setting(dslocal_home):
    started = time.monotonic()
    result = invoke("ollama", "install")
    assert time.monotonic() - started < 3, "no retries against a host that refuses connections"
    assert_one_line_error(result, ExitCode.NETWORK, "cannot reach", "ollama_release_base", "DSLOCAL_OLLAMA_RELEASE_BASE")


# -- B12: a server that accepts connections but never answers --------------------------------------------------

@pytest.fixture
def silent_ollama(monkeypatch, dslocal_home):
    """A listening socket that never accepts or answers: the kernel completes the handshake, nothing follows."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        monkeypatch.setenv("OLLAMA_HOST", host)
        yield host


def timed(*args: str):
    started = time.monotonic()
    result = invoke(*args)
    return result, time.monotonic() - started


def test_ls_gives_up_quickly_and_says_why(silent_ollama):
    result, seconds = timed("ls")
    assert seconds < 4.5, seconds
    assert_one_line_error(result, ExitCode.OLLAMA, f"Ollama at http://{silent_ollama} accepts connections but does not answer")


def test_ps_gives_up_quickly(silent_ollama):
    result, seconds = timed("ps")
    assert seconds < 4.5 and result.returncode == ExitCode.OLLAMA and "does not answer" in result.stderr


@pytest.mark.parametrize("command", [("plan", "r1-distill-qwen-7b"), ("modelfile", "r1-distill-qwen-7b")])
def test_plans_fall_back_to_the_newest_known_version_quickly(silent_ollama, command):
    result, seconds = timed(*command, "--hw", "cpu-only-32gb")
    assert result.returncode == 0, result.stderr
    assert seconds < 3.5, seconds
    assert "accepts connections but does not answer" in result.stderr


def test_plan_json_names_the_version_it_fell_back_to(silent_ollama):
    from dslocal.planner.fit import LATEST_OLLAMA

    data = json.loads(invoke("plan", "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--json").stdout)["data"]
    assert data["ollama_version"] == ".".join(map(str, LATEST_OLLAMA))


def test_status_says_the_server_does_not_answer(silent_ollama, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result, seconds = timed("ollama", "status")
    assert seconds < 5, seconds
    assert result.returncode == 0, result.stderr
    assert "accepts connections but does not answer" in result.stdout
    data = json.loads(invoke("ollama", "status", "--json").stdout)["data"]
    assert data["silent"] is True and data["running"] is False
