"""The ``--json`` envelope and the keys scripts rely on are pinned here."""

from __future__ import annotations

import json


def test_paths_json_contract(cli, dslocal_home):
    result = cli("paths", "--json")
    assert result.returncode == 0 and result.stderr == ""
    doc = json.loads(result.stdout)
    assert set(doc) == {"version", "command", "data"}
    assert doc["version"] == 1 and doc["command"] == "paths"
    assert set(doc["data"]) == {
        "config_dir", "data_dir", "cache_dir", "state_dir", "log_dir", "config_file", "models_dir", "ollama_models",
    }
    assert doc["data"]["models_dir"] == str(dslocal_home / "data" / "models")


def test_config_show_json_contract(cli, dslocal_home):
    doc = json.loads(cli("config", "show", "--json").stdout)
    assert doc["version"] == 1 and doc["command"] == "config show"
    assert set(doc["data"]) == {"config_file", "settings"}
    assert set(doc["data"]["settings"]) == {
        "models_dir", "source", "hf_endpoint", "hf_mirror_endpoint", "modelscope_endpoint", "ollama_release_base", "ollama_host",
        "ollama_models", "connections",
    }
    for entry in doc["data"]["settings"].values():
        assert set(entry) == {"value", "origin"}


def test_human_output_is_not_json(cli, dslocal_home):
    result = cli("paths")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("config_dir")
