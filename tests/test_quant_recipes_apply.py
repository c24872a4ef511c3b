"""'dslocal quantize': a recipe applied by llama.cpp's own quantizer, checked tensor by tensor, then run.

The model is a generated F32 deepseek2 (MLA layout: a dense block, then MoE blocks) whose row lengths
are multiples of 256, so every K- and IQ-quant applies without llama.cpp's fallback. The importance
matrix is written by the test in both formats llama.cpp reads (legacy .dat and GGUF), with positive
random values of the size llama.cpp checks (ne[0] per expert).
"""

from __future__ import annotations

import json
import random

import gguf
import numpy as np
import pytest
from llama_engine import engine

from dslocal.errors import ExitCode, InputError
from dslocal.gguf_tools.header import read_file_header
from dslocal.gguf_tools.shards import open_local_set
from dslocal.quant.apply import TYPE_IDS, QuantizeError, _run_child, quantize
from dslocal.quant.extract import recipe_from_set, recipe_toml
from dslocal.quant.imatrix import load_imatrix, write_legacy_imatrix
from dslocal.quant.recipes import IMATRIX_TYPES, kept_by_llama_cpp, parse_recipe
from dslocal.testing.ggufgen import ModelSpec, write_model

RECIPE = """\
name = "test-dynamic"
architecture = "deepseek2"
default_type = "IQ1_S"
imatrix = true

[[rules]]
pattern = '(_norm|ffn_gate_inp|exp_probs_b)\\.'
type = "F32"

[[rules]]
pattern = '^token_embd\\.weight$'
type = "Q4_K"

[[rules]]
pattern = '^output\\.weight$'
type = "Q6_K"

[[rules]]
pattern = '^blk\\.0\\.ffn_(gate|up)\\.weight$'
type = "Q3_K"

[[rules]]
pattern = '^blk\\.0\\.ffn_down\\.weight$'
type = "Q5_K"

[[rules]]
pattern = '_shexp\\.weight$'
type = "Q8_0"

[[rules]]
pattern = '\\.attn_(q_a|q_b)\\.weight$'
type = "IQ4_XS"

[[rules]]
pattern = '\\.attn_'
type = "Q6_K"

[[rules]]
pattern = '^blk\\.1\\.ffn_down_exps\\.weight$'
type = "IQ2_XXS"

[[rules]]
pattern = '\\.ffn_down_exps\\.weight$'
type = "IQ1_M"

[[rules]]
pattern = '^blk\\.3\\.ffn_(gate|up)_exps\\.weight$'
type = "Q2_K"
"""
SPEC = ModelSpec.deepseek2("mla", n_embd=256, n_layer=4, n_head=2, n_ff=256, q_lora_rank=256, kv_lora_rank=256,
                           rope_dim=64, qk_nope_dim=256, v_head_dim=128, n_expert=4, n_expert_used=2, n_ff_exp=256)
PROMPT = "<｜User｜>Hello there, what is the cat doing?<｜Assistant｜><think>\n"


def imatrix_entries(path) -> dict[str, list[float]]:
    rng = random.Random(7)
    header = read_file_header(path)
    return {t.name: [rng.uniform(0.1, 2.0) for _ in range(t.shape[0] * (t.shape[2] if len(t.shape) > 2 else 1))]
            for t in header.tensors if not kept_by_llama_cpp(t.name, tuple(t.shape))}


def write_gguf_imatrix(path, entries: dict[str, list[float]], n_expert: int) -> None:
    """llama-imatrix's GGUF output (tools/imatrix/imatrix.cpp save_imatrix): in_sum2 and counts per weight."""
    writer = gguf.GGUFWriter(path, arch="", )
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", ["test.txt"])
    writer.add_uint32("imatrix.chunk_count", 10)
    writer.add_uint32("imatrix.chunk_size", 512)
    for name, values in entries.items():
        rows = n_expert if len(values) > 256 else 1
        counts = np.arange(1, rows + 1, dtype=np.float32) * 100
        sums = np.asarray(values, dtype=np.float32).reshape(rows, -1) * counts[:, None]
        writer.add_tensor(name + ".in_sum2", sums)
        writer.add_tensor(name + ".counts", counts.reshape(rows, 1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quant")
    (src,) = write_model(folder / "test-f32.gguf", SPEC, dtype="f32")
    entries = imatrix_entries(src)
    write_legacy_imatrix(folder / "imatrix.dat", entries, ncall=10)
    write_gguf_imatrix(folder / "imatrix.gguf", entries, SPEC.n_expert)
    return src, folder, entries


@pytest.fixture(scope="module")
def quantized(model):
    src, folder, _ = model
    events = []
    result = quantize(src, folder / "out.gguf", parse_recipe(RECIPE, "test.toml"), imatrix=folder / "imatrix.dat",
                      threads=1, progress=events.append)
    return result, events


def test_both_imatrix_formats_read_back_the_values(model):
    _, folder, entries = model
    for name in ("imatrix.dat", "imatrix.gguf"):
        data = load_imatrix(folder / name)
        assert set(data) == set(entries)
        for key, values in entries.items():
            assert np.allclose(np.asarray(data[key]), values, rtol=1e-5), (name, key)


def test_the_output_has_exactly_the_types_the_recipe_names(model, quantized):
    src, _, _ = model
    result, events = quantized
    recipe = parse_recipe(RECIPE)
    written = {t.name: t.type_name for t in read_file_header(result.output).tensors}
    source = {t.name: tuple(t.shape) for t in read_file_header(src).tensors}
    assert set(written) == set(source)
    for name, type_name in written.items():
        assert type_name == recipe.type_for(name), name  # the recipe names F32 for what llama.cpp keeps
    assert {"IQ1_S", "IQ1_M", "IQ2_XXS", "Q2_K", "Q3_K", "IQ4_XS", "Q4_K", "Q5_K", "Q6_K", "Q8_0", "F32"} <= set(written.values())
    # progress: one event per tensor, in llama.cpp's order, ending at the total
    assert events[-1].done == events[-1].total == len(written)
    assert [e.done for e in events] == sorted(e.done for e in events)
    header = read_file_header(result.output)
    assert header.get("quantize.imatrix.file") == "imatrix.dat"
    assert header.get("quantize.imatrix.entries_count") == len(model[2])
    assert header.get("general.file_type") == 24  # LLAMA_FTYPE_MOSTLY_IQ1_S, the recipe's default type


def test_the_output_loads_in_llama_cpp_and_generates(quantized):
    result, _ = quantized
    llm = engine(result.output)
    prompt = llm.tokenize(PROMPT)
    out = llm.generate(prompt, 16, ignore_eos=True)
    assert len(out.tokens) == 16
    assert all(0 <= t < 200 for t in out.tokens)


def test_from_gguf_gives_back_an_equivalent_recipe(quantized, cli, dslocal_home, tmp_path):
    result, _ = quantized
    target = tmp_path / "extracted.toml"
    run = cli("recipe", "from-gguf", str(result.output), "-o", str(target), "--name", "back")
    assert run.returncode == 0, run.stderr
    back = parse_recipe(target.read_text(), str(target))
    original = parse_recipe(RECIPE)
    header = read_file_header(result.output)
    for t in header.tensors:
        assert back.type_for(t.name) == original.type_for(t.name) == t.type_name, t.name
    assert back.imatrix and back.architecture == "deepseek2" and back.name == "back"
    # the TOML it writes reads back to the same rules (recipe_toml checks that itself)
    assert recipe_toml(recipe_from_set(open_local_set(result.output), name="back", source=str(result.output)))


def test_quantize_refuses_imatrix_types_without_one_with_the_reason(model, cli, dslocal_home, tmp_path):
    src, _, _ = model
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    run = cli("quantize", str(src), str(tmp_path / "o.gguf"), "--recipe", str(recipe))
    assert run.returncode == ExitCode.INPUT
    assert "Traceback" not in run.stderr
    first = run.stderr.splitlines()[0]
    assert "need an importance matrix" in first and "IQ1_M, IQ1_S, IQ2_XXS" in first and "refuses without one" in first
    assert "--imatrix" in run.stderr
    assert not (tmp_path / "o.gguf").exists()


def test_quantize_refuses_an_imatrix_for_another_model(model, tmp_path):
    src, _, entries = model
    write_legacy_imatrix(tmp_path / "other.dat", {k: v for k, v in entries.items() if "exps" not in k})
    with pytest.raises(InputError, match=r"has no entry for blk\.1\.ffn_\w+_exps\.weight, which the recipe makes IQ"):
        quantize(src, tmp_path / "o.gguf", parse_recipe(RECIPE), imatrix=tmp_path / "other.dat")


def test_cli_quantize_json_and_refuses_to_overwrite(model, cli, dslocal_home, tmp_path):
    src, _, _ = model
    out = tmp_path / "q2kxl.gguf"
    run = cli("quantize", str(src), str(out), "--recipe", "R1-UD-Q2_K_XL", "--threads", "1", "--json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)["data"]
    assert data["bytes"] == out.stat().st_size
    assert data["types"]["Q2_K"] == 8 and data["types"]["Q3_K"] == 1  # blk.3 down_exps: the recipe's blocks 3-6
    written = {t.name: t.type_name for t in read_file_header(out).tensors}
    assert written == data["tensors"]
    again = cli("quantize", str(src), str(out), "--recipe", "R1-UD-Q2_K_XL")
    assert again.returncode == ExitCode.INPUT and "--force" in again.stderr


@pytest.mark.parametrize("type_name", sorted(IMATRIX_TYPES) + ["IQ3_S", "Q2_K", "IQ4_XS"])
def test_llama_cpp_refuses_exactly_these_without_an_imatrix(model, tmp_path, type_name):
    """The refusal set is llama.cpp's: without dslocal's check, its quantizer refuses the same types."""
    src, _, _ = model
    job = {"src": str(src), "dst": str(tmp_path / "o.gguf"), "threads": 1, "ftype": 15, "imatrix": None,
           "overrides": [["^blk\\.1\\.ffn_up_exps\\.weight$", TYPE_IDS[type_name]]]}
    if type_name in IMATRIX_TYPES:
        with pytest.raises(QuantizeError, match="importance matrix|imatrix"):
            _run_child(job, src, 1, lambda e: None)
    else:
        _run_child(job, src, 1, lambda e: None)
        written = {t.name: t.type_name for t in read_file_header(tmp_path / "o.gguf").tensors}
        assert written["blk.1.ffn_up_exps.weight"] == type_name
