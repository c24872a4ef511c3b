"""The daemon commands against a fake ``ollama`` executable that serves the Ollama double."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
from toolbox import fake_ollama, free_port


@pytest.fixture
def fake_ollama_env(tmp_path, dslocal_home):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ollama(bin_dir)
    port = free_port()
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "OLLAMA_HOST": f"127.0.0.1:{port}",
        "OLLAMA_MODELS": str(tmp_path / "models"),
        "FAKE_OLLAMA_VERSION": "0.32.15",
    }


def test_start_status_stop(cli, fake_ollama_env, dslocal_home):
    env = fake_ollama_env
    started = cli("ollama", "start", env=env)
    assert started.returncode == 0, started.stderr
    try:
        status = json.loads(cli("ollama", "status", "--json", env=env).stdout)["data"]
        assert status["running"] and status["api_version"] == "0.32.15" and status["managed_pid"]
        assert status["binary_version"] == "0.32.15"
        assert (dslocal_home / "state" / "ollama.pid").read_text().strip() == str(status["managed_pid"])
        again = cli("ollama", "start", env=env)
        assert again.returncode == 0 and "already running" in again.stderr  # idempotent (newcomer trial B10)
        logs = cli("ollama", "logs", env=env)
        assert "Listening on" in logs.stdout
    finally:
        stopped = cli("ollama", "stop", env=env)
    assert stopped.returncode == 0
    deadline = time.monotonic() + 10
    while json.loads(cli("ollama", "status", "--json", env=env).stdout)["data"]["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert not (dslocal_home / "state" / "ollama.pid").exists()


def test_a_port_taken_by_another_program(cli, fake_ollama_env):
    env = fake_ollama_env
    host, port = env["OLLAMA_HOST"].split(":")
    with socket.socket() as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        result = cli("ollama", "start", env=env)
    assert result.returncode == 8 and "taken by another program" in result.stderr
    assert "ollama_host" in result.stderr


def test_missing_ollama_and_a_dead_daemon(cli, dslocal_home, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "OLLAMA_HOST": f"127.0.0.1:{free_port()}"}
    result = cli("ollama", "start", env=env)
    assert result.returncode == 8 and "not installed" in result.stderr and "dslocal ollama install" in result.stderr
    dead = cli("ls", env=env)
    assert dead.returncode == 8 and "no Ollama server answers" in dead.stderr and "dslocal ollama start" in dead.stderr


def test_binding_beyond_loopback_warns(cli, fake_ollama_env):
    env = {**fake_ollama_env, "OLLAMA_HOST": f"0.0.0.0:{free_port()}"}
    started = cli("ollama", "start", env=env)
    try:
        assert started.returncode == 0, started.stderr
        assert "reachable from other machines" in started.stderr
    finally:
        cli("ollama", "stop", env=env)
