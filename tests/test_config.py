"""Settings precedence (flags > env > file > defaults), paths, and crash-safe config writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dslocal.config import load_settings, set_config_value, unset_config_value
from dslocal.errors import ConfigError
from dslocal.paths import resolve_paths


def write_config(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(dslocal_home):
    settings = load_settings()
    assert settings["connections"] == 4
    assert settings.models_dir == dslocal_home / "data" / "models"
    assert set(settings.origins.values()) == {"default"}


def test_precedence_flags_over_env_over_file_over_defaults(dslocal_home, monkeypatch):
    write_config(dslocal_home, "connections = 6\nsource = 'modelscope'\nhf_endpoint = 'https://file.example'\n")
    monkeypatch.setenv("DSLOCAL_CONNECTIONS", "8")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    settings = load_settings(flags={"connections": 12, "source": None})
    assert (settings["connections"], settings.origins["connections"]) == (12, "flag")
    assert (settings["hf_endpoint"], settings.origins["hf_endpoint"]) == ("https://hf-mirror.com", "env:HF_ENDPOINT")
    assert (settings["source"], settings.origins["source"]) == ("modelscope", "file")
    assert settings.origins["ollama_host"] == "default"


def test_dslocal_env_name_wins_over_the_generic_one(dslocal_home, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://generic.example")
    monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", "https://specific.example")
    assert load_settings()["hf_endpoint"] == "https://specific.example"


def test_dslocal_home_puts_everything_under_one_folder(dslocal_home):
    paths = resolve_paths()
    for value in paths.as_dict().values():
        assert Path(value).is_relative_to(dslocal_home)
    assert not dslocal_home.exists(), "resolving paths must not create anything"


def test_platform_paths_without_override(monkeypatch):
    monkeypatch.delenv("DSLOCAL_HOME", raising=False)
    monkeypatch.delenv("DSLOCAL_CONFIG", raising=False)
    paths = resolve_paths()
    assert "dslocal" in str(paths.config_dir) and "dslocal" in str(paths.cache_dir)
    assert paths.config_file.name == "config.toml"


def test_set_and_unset_round_trip(dslocal_home):
    path = resolve_paths().config_file
    set_config_value(path, "models_dir", "~/models")
    set_config_value(path, "connections", "16")
    settings = load_settings()
    assert settings.models_dir == Path.home() / "models"
    assert settings["connections"] == 16 and settings.origins["connections"] == "file"
    assert unset_config_value(path, "connections") is True
    assert unset_config_value(path, "connections") is False
    assert load_settings()["connections"] == 4


def test_a_failed_write_leaves_the_config_untouched(dslocal_home, monkeypatch):
    path = write_config(dslocal_home, "connections = 6\n")
    import tomli_w

    def broken(_data):
        raise OSError("disk full")

    monkeypatch.setattr(tomli_w, "dumps", broken)
    with pytest.raises(OSError):
        set_config_value(path, "connections", "7")
    assert path.read_text() == "connections = 6\n"
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"], "no temporary file left behind"


def test_invalid_value_is_rejected_before_writing(dslocal_home):
    path = write_config(dslocal_home, "connections = 6\n")
    with pytest.raises(ConfigError, match="out of range"):
        set_config_value(path, "connections", "1000")
    assert path.read_text() == "connections = 6\n"


def test_cli_config_flow(cli, dslocal_home):
    assert cli("config", "set", "hf_endpoint", "https://hf-mirror.com").returncode == 0
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["data"]["settings"]["hf_endpoint"] == {"value": "https://hf-mirror.com", "origin": "file"}
    env_wins = json.loads(cli("config", "show", "--json", env={"HF_ENDPOINT": "https://other"}).stdout)
    assert env_wins["data"]["settings"]["hf_endpoint"]["origin"] == "env:HF_ENDPOINT"
    other = dslocal_home.parent / "other.toml"
    other.write_text("connections = 9\n")
    via_flag = json.loads(cli("--config", str(other), "config", "show", "--json").stdout)
    assert via_flag["data"]["settings"]["connections"] == {"value": 9, "origin": "file"}
    assert cli("config", "path").stdout.strip() == str(dslocal_home / "config" / "config.toml")
