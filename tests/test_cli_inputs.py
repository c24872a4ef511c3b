"""A7, A16, B13: plain bad input is a one-line error with a hint (exit 2/3/4), never an internal error."""

from __future__ import annotations

import json
import math

import pytest
from ollama_double import run_ollama
from test_cli_boundary import assert_one_line_error, invoke, offline  # noqa: F401 - a fixture

from dslocal.errors import ExitCode
from dslocal.hardware.presets import PRESETS, load_profile
from dslocal.ollama.client import OllamaClient, file_digest

# -- A7: --cluster ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, needle", [
    ("2 nodes x 0 H20", "0 GPUs per node is out of range 1..16"),
    ("0 nodes x 8 H20", "0 nodes is out of range 1..64"),
    ("1000 nodes x 8 H20", "1000 nodes is out of range 1..64"),
    ("9" * 40 + "x8xH20", "nodes is out of range"),
])
def test_cluster_counts_are_checked(dslocal_home, spec, needle):
    assert_one_line_error(invoke("plan", "r1-671b-fp8", "--cluster", spec), ExitCode.USAGE, needle)


# -- A7: --hw FILE -------------------------------------------------------------------------------------------

def profile(**changes) -> dict:
    data = PRESETS["rtx4090-64gb"].to_dict()
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            target = data[section][0] if section == "gpus" else data[section]
            target[key] = value
        else:
            data[section] = value
    return data


@pytest.mark.parametrize("content, needle", [
    ([], "profile must be a JSON object, not a list"),
    ({}, "os must be a string"),
    ("text", "profile must be a JSON object, not a string"),
    (profile(memory__available_bytes="lots"), "memory.available_bytes must be a whole number"),
    (profile(cpu__physical_cores=-4), "cpu.physical_cores = -4 is out of range"),
    (profile(cpu__physical_cores=0), "cpu.physical_cores = 0 is out of range"),
    (profile(memory__total_bytes=0), "memory.total_bytes = 0 is out of range"),
    (profile(memory__total_bytes=10**30), "memory.total_bytes = 1000000000000000000000000000000 is out of range"),
    (profile(memory__total_bytes=1.5e10), "memory.total_bytes must be a whole number"),
    (profile(gpus__memory_total_bytes=-5), "gpus[0].memory_total_bytes = -5 is out of range"),
    (profile(gpus__memory_total_bytes=10**30), "gpus[0].memory_total_bytes"),
    (profile(gpus__name=None), "gpus[0].name must be a string"),
    (profile(gpus="all"), "gpus must be a list"),
    (profile(cpu="fast"), "cpu must be a JSON object"),
    (profile(cpu__cores=8), "cpu has unknown field 'cores'"),
    (profile(profile_version=99), "profile_version 99"),
])
@pytest.mark.parametrize("command", [("plan", "r1-distill-qwen-7b"), ("recommend",), ("hw",), ("list",)])
def test_bad_hardware_files(dslocal_home, tmp_path, content, needle, command):
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(content))
    no_server = () if command == ("hw",) else ("--ollama-version", "0.32.15")
    result = invoke(*command, "--hw", str(path), *no_server)
    assert_one_line_error(result, ExitCode.INPUT, f"{path} is not a dslocal hardware profile", needle, "hw --save")


@pytest.mark.parametrize("content, needle", [(b"\xff\xfe\x00binary", "not JSON"), (b"", "not JSON")])
def test_hardware_files_that_are_not_json(dslocal_home, tmp_path, content, needle):
    path = tmp_path / "hw.json"
    path.write_bytes(content)
    assert_one_line_error(invoke("hw", "--hw", str(path)), ExitCode.INPUT, needle)


def test_a_saved_profile_and_a_json_envelope_still_load(dslocal_home, tmp_path):
    saved = tmp_path / "saved.json"
    assert invoke("hw", "--hw", "2xh100-512gb", "--save", str(saved)).returncode == 0
    envelope = tmp_path / "envelope.json"
    envelope.write_text(invoke("hw", "--hw", "2xh100-512gb", "--json").stdout)  # carries each GPU's "support"
    for path in (saved, envelope):
        loaded = load_profile(str(path))
        assert loaded.gpus == PRESETS["2xh100-512gb"].gpus and loaded.memory == PRESETS["2xh100-512gb"].memory


def test_every_preset_passes_the_file_checks(tmp_path):
    for name, preset in PRESETS.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(preset.to_dict()))
        assert load_profile(str(path)).cpu == preset.cpu


# -- A16: tune ------------------------------------------------------------------------------------------------

@pytest.fixture
def ollama_with_a_model(make_gguf, tmp_path, monkeypatch):
    """The Ollama double with 'tiny' imported from a 4-layer, 4096-context qwen2 GGUF."""
    with run_ollama(tmp_path / "store", "0.32.15") as ollama:
        client = OllamaClient(ollama.url)
        path = make_gguf("qwen2")[0]
        digest = file_digest(path)
        client.push_blob(path, digest)
        client.create("tiny", files={path.name: digest}, parameters={"temperature": 0.6})
        monkeypatch.setenv("OLLAMA_HOST", ollama.url.removeprefix("http://"))
        yield client


def parameters(client: OllamaClient) -> str:
    return client.show("tiny")["parameters"]


@pytest.mark.parametrize("args, needle", [
    (("--temperature", "nan"), "not a finite number"),
    (("--temperature", "inf"), "not in the range"),
    (("--temperature", "-5"), "not in the range"),
    (("--temperature", "1e308"), "not in the range"),
    (("--ctx", "99999999999"), "not in the range"),
    (("--ctx", "100"), "not in the range"),
    (("--ctx", "8192"), "more than tiny's trained context (4096)"),
    (("--num-gpu", "-1"), "not in the range"),
    (("--num-gpu", "50"), "more than tiny's 4 layers"),
])
def test_tune_refuses_nonsense(dslocal_home, ollama_with_a_model, args, needle):
    before = parameters(ollama_with_a_model)
    assert_one_line_error(invoke("tune", "tiny", *args), ExitCode.USAGE, needle)
    assert parameters(ollama_with_a_model) == before, "nothing was re-created"


def test_tune_accepts_what_the_model_can_do(dslocal_home, ollama_with_a_model):
    result = invoke("tune", "tiny", "--ctx", "4096", "--temperature", "2", "--num-gpu", "5")
    assert result.returncode == 0, result.stderr
    shown = parameters(ollama_with_a_model)
    assert "num_ctx" in shown and "4096" in shown and "num_gpu" in shown
    assert not any(math.isnan(float(line.split()[-1])) for line in shown.splitlines() if "temperature" in line)


# -- B13: gguf split --max-size --------------------------------------------------------------------------------

def test_split_refuses_a_max_size_below_the_largest_tensor(dslocal_home, make_gguf, tmp_path):
    source = make_gguf("qwen2")[0]
    result = invoke("gguf", "split", str(source), "--max-size", "1", "--prefix", str(tmp_path / "x"))
    assert_one_line_error(result, ExitCode.USAGE, "smaller than the largest tensor", "token_embd.weight",
                          "give --max-size")
    assert not list(tmp_path.glob("x-*")), "no shard was written"
    needed = result.stderr.split("give --max-size ")[1].split()[0]
    enough = invoke("gguf", "split", str(source), "--max-size", needed, "--prefix", str(tmp_path / "y"), "--json")
    assert enough.returncode == 0, enough.stderr
    assert "warning" not in enough.stderr
    from dslocal.units import parse_size

    assert all(f["bytes"] <= parse_size(needed) for f in json.loads(enough.stdout)["data"]["files"])
