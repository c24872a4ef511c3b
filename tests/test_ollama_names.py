"""Ollama's name rules, OLLAMA_HOST parsing and load timeouts, as Ollama v0.32.15's source has them.

Sources: types/model/name.go (ParseName, isValidPart), internal/modelref/modelref.go (source
suffixes), envconfig/config.go (Host, ConnectableHost, LoadTimeout).
"""

from __future__ import annotations

import pytest

from dslocal.errors import UsageError
from dslocal.ollama.client import base_url
from dslocal.ollama.daemon import is_loopback
from dslocal.ollama.duration import parse_duration
from dslocal.ollama.names import ModelName, check_name, parse_name
from dslocal.pipeline.pull import smoke_wait

VALID = ["r1", "deepseek-r1:671b-q2", "team/r1:latest", "hf.co/unsloth/DeepSeek-R1-GGUF:UD-IQ1_S", "R1:Latest",
         "_x", "m.1:v1.2", "localhost:5000/ns/model:tag", "a" * 80, "x:" + "t" * 80]
INVALID = ["", "../../x", "../x", "x/../y", "team.x/r1", "x:", ":x", "/x", "x/", "a:b:c", "ü", "r1 x", "-r1",
           ".r1", "r1:-t", "a" * 81, "x:" + "t" * 81, "a/b/c/d:e", "x/y\\z", "x:t/y"]


@pytest.mark.parametrize("text", VALID)
def test_valid_names(text):
    assert parse_name(text).valid
    assert check_name(text) == parse_name(text)


@pytest.mark.parametrize("text", INVALID)
def test_invalid_names_get_one_line_with_the_rule(text):
    assert not parse_name(text).valid
    with pytest.raises(UsageError) as info:
        check_name(text)
    assert "\n" not in info.value.message and "not a valid Ollama model name" in info.value.message
    assert info.value.hint


def test_parts_defaults_and_display():
    assert parse_name("r1") == ModelName("registry.ollama.ai", "library", "r1", "latest")
    assert parse_name("team/r1:q2") == ModelName("registry.ollama.ai", "team", "r1", "q2")
    assert parse_name("https://hf.co/u/m:t") == ModelName("hf.co", "u", "m", "t")
    assert parse_name("r1").shortest() == "r1:latest"
    assert parse_name("team/r1").shortest() == "team/r1:latest"
    assert parse_name("hf.co/u/m:t").shortest() == "hf.co/u/m:t"
    assert parse_name("R1:Latest").same(parse_name("r1"))


@pytest.mark.parametrize("text", ["r1:cloud", "r1:local", "r1:671b-cloud", "r1:CLOUD"])
def test_source_suffixes_are_refused(text):
    with pytest.raises(UsageError, match="source suffix"):
        check_name(text)


def test_manifest_path_stays_in_the_store(tmp_path):
    assert parse_name("team/r1:q2").manifest_path(tmp_path) == tmp_path / "manifests/registry.ollama.ai/team/r1/q2"
    with pytest.raises(ValueError):
        parse_name("../../x").manifest_path(tmp_path)


@pytest.mark.parametrize(("host", "url"), [
    ("", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:11500", "http://127.0.0.1:11500"),
    ("::", "http://[::1]:11434"),
    ("[::]:8080", "http://[::1]:8080"),
    ("::1", "http://[::1]:11434"),
    ("[::1]:11434", "http://[::1]:11434"),
    ("192.168.1.5", "http://192.168.1.5:11434"),
    ("http://example.com", "http://example.com:80"),
    ("https://example.com", "https://example.com:443"),
    ("http://[fe80::1]:3000/x", "http://[fe80::1]:3000"),
    ("localhost:99999", "http://localhost:11434"),
    (":11500", "http://127.0.0.1:11500"),
])
def test_ollama_host_as_ollama_connects(host, url):
    assert base_url(host) == url


def test_bind_address_is_not_mapped_for_the_exposure_warning():
    assert not is_loopback("0.0.0.0") and not is_loopback("[::]:11434") and not is_loopback("10.1.2.3")
    assert is_loopback("127.0.0.1:11434") and is_loopback("::1") and is_loopback("localhost")


def test_durations_as_envconfig_reads_them():
    assert parse_duration("30m") == 1800 and parse_duration("1h30m") == 5400 and parse_duration("90") == 90
    assert parse_duration("0") == 0 and parse_duration("-1") == -1 and parse_duration("1.5h") == 5400
    assert parse_duration("soon") is None and parse_duration("10x") is None


def test_the_smoke_test_waits_for_a_large_models_load():
    # OLLAMA_LOAD_TIMEOUT is a stall timeout: a 400 GB load takes longer than it; the old wait was 600 s.
    assert smoke_wait({}) >= 2 * 3600
    assert smoke_wait({"OLLAMA_LOAD_TIMEOUT": "45m"}) >= 4 * 45 * 60
    assert smoke_wait({"OLLAMA_LOAD_TIMEOUT": "0"}) is None  # no limit on the server: none here either
    assert smoke_wait({"OLLAMA_LOAD_TIMEOUT": "garbage"}) >= 2 * 3600
