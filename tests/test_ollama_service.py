"""``dslocal ollama service``: the systemd user unit for the managed Ollama.

The unit is checked by systemd's own ``systemd-analyze verify --user`` (which needs an XDG_RUNTIME_DIR, not
a running manager), and run the way systemd runs it: its ExecStart with exactly its Environment= lines
starts the fake ``ollama`` (tests/fake_ollama.py, serving the Ollama double) at the settings' host and
appends to dslocal's log. No systemd user manager runs in this container, so ``status`` is checked
against the real ``systemctl``'s refusal; the enable/start path uses a stand-in ``systemctl`` that
answers as systemctl(1) documents (is-enabled: "enabled"/"disabled", exit 0/1; is-active:
"active"/"inactive", exit 0/3) and records its calls.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from toolbox import fake_ollama, free_port

from dslocal.ollama.daemon import server_env
from dslocal.ollama.service import UNIT_NAME, managed_environment, unit_text


@pytest.fixture
def service_env(tmp_path, dslocal_home):
    """A managed ollama binary (the fake), a host on a free port, a temporary XDG_CONFIG_HOME."""
    binary = dslocal_home / "data" / "ollama" / "bin" / "ollama"
    binary.parent.mkdir(parents=True)
    fake_ollama(binary.parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "ollama").exists())
    return {
        "PATH": path, "XDG_CONFIG_HOME": str(tmp_path / "config"), "OLLAMA_HOST": f"127.0.0.1:{free_port()}",
        "OLLAMA_MODELS": str(tmp_path / "my models"),
    }


def unit_file(env) -> Path:
    return Path(env["XDG_CONFIG_HOME"]) / "systemd" / "user" / UNIT_NAME


def verify(path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    return subprocess.run([analyze, "verify", "--user", "--man=no", str(path)], capture_output=True, text=True,
                          env=env, timeout=60)


def unquote(value: str) -> str:
    """One double-quoted systemd value back to its text (C escapes, %% for %)."""
    assert value[0] == value[-1] == '"'
    out, chars = [], iter(value[1:-1])
    for ch in chars:
        out.append(next(chars) if ch == "\\" else ch)
    return "".join(out).replace("%%", "%")


def test_install_writes_a_unit_that_verifies(cli, service_env, tmp_path, dslocal_home):
    installed = cli("ollama", "service", "install", "--kv-cache-type", "q8_0", "--json", env=service_env)
    assert installed.returncode == 0, installed.stderr
    data = json.loads(installed.stdout)["data"]
    path = unit_file(service_env)
    assert data["unit_file"] == str(path) and data["installed"] and path.is_file()
    assert data["systemd_user"] is False and "systemd --user is not running here" in data["problem"]
    assert data["enabled"] is None and data["active"] is None
    text = path.read_text()
    assert f'ExecStart="{dslocal_home}/data/ollama/bin/ollama" serve\n' in text
    assert f'Environment="OLLAMA_HOST={service_env["OLLAMA_HOST"]}"' in text
    assert 'Environment="OLLAMA_KV_CACHE_TYPE=q8_0"' in text and 'Environment="OLLAMA_NO_CLOUD=1"' in text
    assert f"StandardOutput=append:{dslocal_home}/logs/ollama.log\n" in text
    checked = verify(path, tmp_path)
    assert checked.returncode == 0 and checked.stderr == "" and checked.stdout == "", checked.stderr

    human = cli("ollama", "service", "install", env=service_env)  # again: replaced, and says why not enabled
    assert human.returncode == 0 and human.stdout.strip() == str(path)
    assert "written but not enabled" in human.stderr and "systemctl --user enable --now" in human.stderr


def test_the_verifier_catches_a_broken_unit(tmp_path):
    path = tmp_path / UNIT_NAME
    path.write_text(unit_text(tmp_path / "no-such-ollama", {}, tmp_path / "log").replace("Type=exec", "Type=sometimes"))
    checked = verify(path, tmp_path)
    assert "Failed to parse service type" in checked.stderr and "is not executable" in checked.stderr


def test_awkward_paths_are_escaped_and_still_verify(tmp_path):
    binary = tmp_path / "100% $HOME" / "ollama"
    binary.parent.mkdir()
    shutil.copy("/bin/true", binary)
    env = managed_environment("127.0.0.1:11434", tmp_path / 'models "50%"')
    text = unit_text(binary, env, tmp_path / "logs 1%" / "ollama.log")
    assert f'ExecStart="{tmp_path}/100%% $HOME/ollama" serve' in text
    assert f'Environment="OLLAMA_MODELS={tmp_path}/models \\"50%%\\""' in text
    path = tmp_path / UNIT_NAME
    path.write_text(text)
    checked = verify(path, tmp_path)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    with pytest.raises(Exception, match="line break"):
        unit_text(binary, {"OLLAMA_X": "a\nb"}, tmp_path / "log")


def test_the_unit_gives_the_managed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OLLAMA_DEBUG", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv("SOMETHING_ELSE", "x")
    env = managed_environment("127.0.0.1:11500", tmp_path, context_length=16384)
    full = server_env("127.0.0.1:11500", tmp_path, context_length=16384)
    assert env == {key: full[key] for key in full if key.startswith("OLLAMA_") or key == "CUDA_VISIBLE_DEVICES"}
    assert env["OLLAMA_CONTEXT_LENGTH"] == "16384" and env["OLLAMA_DEBUG"] == "1" and "SOMETHING_ELSE" not in env


def test_the_unit_runs_a_server_as_systemd_would(cli, service_env, tmp_path, dslocal_home):
    assert cli("ollama", "service", "install", "--no-start", env=service_env).returncode == 0
    lines = unit_file(service_env).read_text().splitlines()
    exec_start = next(line for line in lines if line.startswith("ExecStart="))[len("ExecStart="):]
    binary, verb = exec_start.rsplit(" ", 1)
    environment = dict(unquote(line[len("Environment="):]).split("=", 1)
                       for line in lines if line.startswith("Environment="))
    log = Path(next(line for line in lines if line.startswith("StandardOutput=append:")).split(":", 1)[1])
    log.parent.mkdir(parents=True, exist_ok=True)
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # what a user manager provides by itself
    with open(log, "ab") as out:
        proc = subprocess.Popen([unquote(binary), verb], env={**base, **environment}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            status = json.loads(cli("ollama", "status", "--json", env=service_env).stdout)["data"]
            if status["running"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["running"] and status["host"].endswith(service_env["OLLAMA_HOST"])
        assert "Listening on" in cli("ollama", "logs", env=service_env).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert environment["OLLAMA_MODELS"] == service_env["OLLAMA_MODELS"]


def test_status_says_when_systemd_user_is_not_available(cli, service_env):
    if shutil.which("systemctl") is None:
        pytest.skip("no systemctl here")
    probe = subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True, text=True)
    if probe.returncode == 0:
        pytest.skip("a systemd user manager runs here")
    out = cli("ollama", "service", "status", env=service_env)
    assert out.returncode == 0, out.stderr
    assert "not installed" in out.stdout and "systemd --user is not running here" in out.stdout
    assert "enabled         unknown: systemd --user is not available" in out.stdout


def fake_systemctl(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "systemctl"
    state = folder / "state"
    script.write_text(f"""#!/bin/sh
echo "$*" >> "{folder}/calls"
[ "$1" = --user ] || exit 1
shift
case "$1" in
  show-environment) echo "HOME=$HOME" ;;
  daemon-reload) ;;
  enable) echo enabled > "{state}.enabled"; [ "$2" = --now ] && echo active > "{state}.active" ;;
  disable) rm -f "{state}.enabled" "{state}.active" ;;
  is-enabled) if [ -f "{state}.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
  is-active) if [ -f "{state}.active" ]; then echo active; else echo inactive; exit 3; fi ;;
  *) exit 1 ;;
esac
""")
    script.chmod(0o755)
    return folder


def test_enable_start_and_remove_through_systemctl(cli, service_env, tmp_path):
    folder = fake_systemctl(tmp_path / "sysbin")
    env = {**service_env, "PATH": f"{folder}:{service_env['PATH']}"}
    installed = json.loads(cli("ollama", "service", "install", "--json", env=env).stdout)["data"]
    assert installed["systemd_user"] and installed["enabled"] == "enabled" and installed["active"] == "active"
    status = json.loads(cli("ollama", "service", "status", "--json", env=env).stdout)["data"]
    assert status["installed"] and status["enabled"] == "enabled" and status["active"] == "active"
    removed = cli("ollama", "service", "uninstall", env=env)
    assert removed.returncode == 0 and "stopped, disabled and removed" in removed.stderr
    assert not unit_file(service_env).exists()
    calls = (folder / "calls").read_text().splitlines()
    assert f"--user enable --now {UNIT_NAME}" in calls and f"--user disable --now {UNIT_NAME}" in calls
    assert calls.count("--user daemon-reload") == 2
    after = json.loads(cli("ollama", "service", "status", "--json", env=env).stdout)["data"]
    assert (after["installed"], after["enabled"], after["active"]) == (False, "disabled", "inactive")
    again = cli("ollama", "service", "uninstall", env=env)
    assert again.returncode == 0 and "nothing to remove" in again.stderr


def test_no_ollama_is_a_one_line_error(cli, dslocal_home, tmp_path):
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not (Path(p) / "ollama").exists())
    out = cli("ollama", "service", "install", env={"PATH": path, "XDG_CONFIG_HOME": str(tmp_path / "c")})
    if "Ollama is not installed" not in out.stderr:
        pytest.skip("an ollama binary is installed in a common location on this machine")
    assert out.returncode == 8 and "Traceback" not in out.stderr and "dslocal ollama install" in out.stderr
    assert not (tmp_path / "c").exists()
