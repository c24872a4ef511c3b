"""Size estimates: R1's four published dynamic quants from its architecture numbers, and real files.

R1's tensor shapes come from its config (hidden 7168, 61 layers, 3 dense, 256 experts of 2048, q_lora 1536,
kv_lora 512, 128 heads of 128+64 / 128, vocab 129280: ollama-and-deepseek-facts.md section 9), built by
dslocal.gguf_tools.arch.tensor_plan with the planner's numbers (dslocal/planner/facts.py SHAPES), in the
legacy layout of the January 2025 uploads (attn_kv_b). The published sizes (131, 158, 183 and 212 "GB",
really GiB: the IQ1_S shards sum to 140.2e9 bytes = 130.6 GiB) are Unsloth's, facts section 6.
"""

from __future__ import annotations

import json

import pytest
from fileserver import serve_folder

from dslocal.gguf_tools.arch import ModelSpec, tensor_plan
from dslocal.gguf_tools.shards import open_local_set
from dslocal.gguf_tools.targets import open_target
from dslocal.planner.facts import SHAPES
from dslocal.quant.apply import quantize
from dslocal.quant.estimate import GIB, TensorShape, estimate, source_shapes
from dslocal.quant.recipes import find_recipe, parse_recipe
from dslocal.testing.ggufgen import ModelSpec as GenSpec
from dslocal.testing.ggufgen import write_model

PUBLISHED = {"R1-UD-IQ1_S": 131, "R1-UD-IQ1_M": 158, "R1-UD-IQ2_XXS": 183, "R1-UD-Q2_K_XL": 212}


def r1_bf16_shapes() -> list[TensorShape]:
    fields, n_vocab = SHAPES["DeepSeek-R1"]
    plans = tensor_plan(ModelSpec(**{**fields, "layout": "legacy"}), n_vocab)
    return [TensorShape(p.name, p.ne, "F32" if p.kind in ("norm", "bias", "router") else "BF16") for p in plans]


def test_r1_shapes_are_r1():
    shapes = r1_bf16_shapes()
    params = sum(__import__("math").prod(s.shape) for s in shapes)
    assert 670e9 < params < 672e9  # 671B without the MTP block, which the Jan 2025 GGUFs do not carry
    assert len(shapes) == 1025  # llama.cpp's tensor count for R1 (3 dense + 58 MoE legacy blocks)
    assert {s.shape for s in shapes if s.name == "blk.3.ffn_down_exps.weight"} == {(2048, 7168, 256)}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_r1_estimates_land_within_3_percent_of_the_published_sizes(name):
    result = estimate(find_recipe(name), r1_bf16_shapes(), header_bytes=8 << 20)
    gib = result.total_bytes / GIB
    assert abs(gib / PUBLISHED[name] - 1) < 0.03, f"{name}: {gib:.1f} GiB, published {PUBLISHED[name]}"
    assert not result.fallbacks  # every R1 row length is a multiple of 256
    assert result.source_bytes / GIB > 1240  # BF16 R1 is about 1.25 TiB


def test_mla_layout_gets_llama_cpps_fallback_for_attn_k_b():
    fields, n_vocab = SHAPES["DeepSeek-R1"]
    plans = tensor_plan(ModelSpec(**{**fields, "layout": "mla"}), n_vocab)
    shapes = [TensorShape(p.name, p.ne, "F32" if p.kind in ("norm", "bias", "router") else "BF16") for p in plans]
    result = estimate(find_recipe("R1-UD-IQ1_S"), shapes)
    k_b = {p.name: p.type for p in result.fallbacks}
    # attn_k_b rows are qk_nope (128) long: Q6_K's 256-blocks do not fit, llama.cpp falls back to Q8_0
    assert k_b and set(k_b.values()) == {"Q8_0"} and all(n.endswith("attn_k_b.weight") for n in k_b)


RECIPE = """\
name = "small"
architecture = "deepseek2"
default_type = "Q4_K"
imatrix = false

[[rules]]
pattern = '\\.ffn_(gate|up|down)_exps\\.weight$'
type = "Q2_K"

[[rules]]
pattern = '^output\\.weight$'
type = "Q6_K"

[[rules]]
pattern = '\\.attn_k_b\\.weight$'
type = "Q5_K"
"""


@pytest.fixture(scope="module")
def f16_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("est") / "DeepSeek-Test-BF16"
    folder.mkdir()
    spec = GenSpec.deepseek2("mla", n_embd=256, n_layer=3, n_head=2, n_ff=256, q_lora_rank=256, kv_lora_rank=256,
                             rope_dim=64, qk_nope_dim=128, v_head_dim=128, n_expert=8, n_ff_exp=256)
    files = write_model(folder / "DeepSeek-Test-BF16.gguf", spec, dtype="f16", shards=2)
    return folder, files


def test_estimate_of_a_real_file_is_what_llama_cpp_writes(f16_model, tmp_path):
    """The estimate against llama.cpp's quantizer on the same source: exact tensor bytes, fallback included."""
    _, files = f16_model
    recipe = parse_recipe(RECIPE, "small.toml")
    shapes, header = source_shapes(open_local_set(files[0]), recipe)
    result = estimate(recipe, shapes, header_bytes=header)
    out = quantize(files[0], tmp_path / "q.gguf", recipe)
    written = open_local_set(out.output)
    assert result.tensor_bytes == written.tensor_bytes
    assert {p.name: p.type for p in result.tensors} == {t.name: t.type_name for _, t in written.tensors()}
    assert {p.type for p in result.fallbacks} == {"Q5_1"}  # attn_k_b: 128-long rows, Q5_K -> Q5_1
    assert abs(result.total_bytes - out.bytes) < 64 << 10  # headers differ by a few keys


def test_cli_estimate_reads_only_the_remote_headers(f16_model, cli, dslocal_home, tmp_path):
    folder, files = f16_model
    recipe_file = tmp_path / "small.toml"
    recipe_file.write_text(RECIPE)
    local = estimate(parse_recipe(RECIPE), source_shapes(open_local_set(files[0]), parse_recipe(RECIPE))[0])
    with serve_folder(folder.parent) as (base, state):
        url = f"{base}{folder.name}/{files[1].name}"
        run = cli("recipe", "estimate", str(recipe_file), "--from", url, "--json", "--no-cache")
        sent = state.body_bytes_sent
        assert open_target(url, hf_endpoint="https://hf.invalid").shard_set.is_split
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)["data"]
    assert data["bytes"] - data["header_bytes"] == local.tensor_bytes
    assert data["fallbacks"] and data["fallbacks"][0]["type"] == "Q5_1"
    assert sent < sum(f.stat().st_size for f in files) / 4
    assert data["bytes_read"] <= sent


def test_cli_estimate_refuses_another_architecture(cli, dslocal_home, tmp_path):
    (path,) = write_model(tmp_path / "q.gguf", GenSpec.qwen2(), dtype="f16")
    run = cli("recipe", "estimate", "R1-UD-IQ1_S", "--from", str(path))
    assert run.returncode == 4 and "is a qwen2 model; recipe R1-UD-IQ1_S is for deepseek2" in run.stderr
    assert "Traceback" not in run.stderr
