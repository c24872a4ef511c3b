"""B7: settings are checked where they are stored and where they are read; errors name their origin."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
from test_cli_boundary import assert_one_line_error, invoke, offline  # noqa: F401 - a fixture

from dslocal.config import load_settings, read_config_file
from dslocal.errors import ConfigError, ExitCode


def config_file(home: Path) -> Path:
    return home / "config" / "config.toml"


def write_config(home: Path, text: str) -> Path:
    path = config_file(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("key, value, needle", [
    ("source", "bogus", "'bogus' is not hf, hf-mirror, modelscope, auto"),
    ("hf_endpoint", "not a url", "is not an http(s) URL"),
    ("hf_mirror_endpoint", "ftp://mirror", "is not an http(s) URL"),
    ("modelscope_endpoint", "http://[::1", "is not a URL"),
    ("ollama_release_base", "https://", "is not an http(s) URL"),
    ("ollama_host", "a b", "is not an Ollama address"),
    ("connections", "-3", "connections = -3 is out of range 1..64"),
    ("connections", "0", "out of range"),
    ("connections", "1e3", "whole number"),
    ("models_dir", "", "is empty"),
])
def test_config_set_refuses_bad_values(dslocal_home, key, value, needle):
    result = invoke("config", "set", key, value)
    assert_one_line_error(result, ExitCode.USAGE if value == "" else ExitCode.CONFIG, needle if value else "is empty")
    assert "No such option" not in result.stderr
    assert not config_file(dslocal_home).exists(), "nothing is stored"


@pytest.mark.parametrize("key, value", [
    ("source", "hf-mirror"), ("source", "https://intranet.example:8000"), ("hf_endpoint", "https://hf-mirror.com"),
    ("ollama_host", "0.0.0.0"), ("ollama_host", "http://[::1]:11434"), ("connections", "64"),
])
def test_config_set_accepts_good_values(dslocal_home, key, value):
    result = invoke("config", "set", key, value)
    assert result.returncode == 0, result.stderr
    assert read_config_file(config_file(dslocal_home))[key] == (int(value) if key == "connections" else value)


def test_folders_are_stored_absolute(dslocal_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "usb").mkdir()
    assert invoke("config", "set", "models_dir", "relative/models").returncode == 0
    assert invoke("config", "set", "source", "usb").returncode == 0
    stored = read_config_file(config_file(dslocal_home))
    assert stored["models_dir"] == str(tmp_path / "relative" / "models")
    assert stored["source"] == str(tmp_path / "usb")


def test_relative_folders_from_the_environment_are_made_absolute(dslocal_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSLOCAL_MODELS_DIR", "relative/models")
    assert load_settings().models_dir == tmp_path / "relative" / "models"


def test_relative_folders_in_the_file_are_taken_from_the_file(dslocal_home):
    path = write_config(dslocal_home, "models_dir = 'models'\n")
    assert load_settings().models_dir == path.parent / "models"


@pytest.mark.usefixtures("offline")
def test_a_bad_stored_value_names_the_config_file_not_a_flag(dslocal_home):
    path = write_config(dslocal_home, "source = 'bogus'\n")
    result = invoke("download", "acme/Small-GGUF")
    assert_one_line_error(result, ExitCode.CONFIG, f"config file {path}", "source", "dslocal config set source")
    assert "--source" not in result.stderr


def test_setting_names_get_did_you_mean(dslocal_home):
    for command in (("config", "set", "hf_endpont", "https://x.example"), ("config", "unset", "hf_endpont")):
        assert_one_line_error(invoke(*command), ExitCode.CONFIG, "unknown setting 'hf_endpont'",
                              "did you mean 'hf_endpoint'?")


@pytest.mark.usefixtures("offline")
def test_a_bad_connections_variable_breaks_only_what_uses_it(dslocal_home, monkeypatch):
    monkeypatch.setenv("DSLOCAL_CONNECTIONS", "0")
    for command in (("hw", "--hw", "cpu-only-32gb"), ("list", "--hw", "cpu-only-32gb"), ("paths",),
                    ("plan", "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--ollama-version", "0.32.15")):
        result = invoke(*command)
        assert result.returncode == 0, (command, result.stderr)
    used = invoke("download", "acme/Small-GGUF")
    assert_one_line_error(used, ExitCode.CONFIG, "environment variable DSLOCAL_CONNECTIONS", "out of range",
                          "unset DSLOCAL_CONNECTIONS")
    settings = load_settings()
    with pytest.raises(ConfigError, match="DSLOCAL_CONNECTIONS"):
        settings["connections"]
    assert settings["source"] == "auto"


def test_broken_toml_hints_at_a_command_that_works(dslocal_home):
    write_config(dslocal_home, "models_dir = \n")
    result = invoke("config", "show")
    assert_one_line_error(result, ExitCode.CONFIG, "not valid TOML")
    hint = result.stderr.strip().splitlines()[-1]
    commands = re.findall(r"'(dslocal [^']+)'", hint)
    assert commands, hint
    for command in commands:
        followed = invoke(*command.split()[1:])
        assert followed.returncode == 0, (command, followed.stderr)


def test_unknown_keys_are_warned_about_and_kept(dslocal_home):
    path = write_config(dslocal_home, "connections = 6\nfuture_setting = 'x'\nhf_endpont = 'https://x.example'\n")
    shown = invoke("config", "show")
    assert shown.returncode == 0, shown.stderr
    assert "connections          6  (file)" in shown.stdout
    assert f"config file {path}: unknown setting 'future_setting' ignored" in shown.stderr
    assert "unknown setting 'hf_endpont' ignored (did you mean 'hf_endpoint'?)" in shown.stderr
    assert shown.stderr.count("future_setting") == 1, "warned once"
    assert invoke("config", "set", "connections", "8").returncode == 0
    assert read_config_file(path) == {"connections": 8, "future_setting": "x", "hf_endpont": "https://x.example"}


def test_config_show_fits_100_columns(monkeypatch):
    home = Path(tempfile.mkdtemp(prefix="h", dir="/tmp"))  # a short home, as people have
    monkeypatch.setenv("DSLOCAL_HOME", str(home))
    for name in ("DSLOCAL_CONFIG", "DSLOCAL_MODELS_DIR", "OLLAMA_HOST", "OLLAMA_MODELS", "DSLOCAL_CONNECTIONS",
                 "HF_ENDPOINT", "DSLOCAL_HF_ENDPOINT", "DSLOCAL_SOURCE", "DSLOCAL_OLLAMA_RELEASE_BASE",
                 "DSLOCAL_HF_MIRROR_ENDPOINT", "DSLOCAL_MODELSCOPE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DSLOCAL_HF_MIRROR_ENDPOINT", "https://hf-mirror.com")  # the longest origin
    monkeypatch.setenv("OLLAMA_MODELS", "/home/someone/.ollama/models")
    result = invoke("config", "show")
    assert result.returncode == 0, result.stderr
    widths = [len(line) for line in result.stdout.splitlines()]
    assert max(widths) <= 100, result.stdout
    assert "env DSLOCAL_HF_MIRROR_ENDPOINT" in result.stdout


@pytest.mark.usefixtures("offline")
def test_an_ollama_host_nothing_could_connect_to(dslocal_home, monkeypatch):
    monkeypatch.setenv("OLLAMA_HOST", "a b")
    assert_one_line_error(invoke("ls"), ExitCode.CONFIG, "environment variable OLLAMA_HOST", "'a b'")
    monkeypatch.setenv("OLLAMA_HOST", "http://[::1")  # Ollama itself reads this as [::1]:80
    result = invoke("ls")
    assert_one_line_error(result, ExitCode.OLLAMA, "http://[::1]:80")
