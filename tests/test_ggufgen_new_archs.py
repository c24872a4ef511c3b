"""The newer DeepSeek architectures the generator writes are real: llama.cpp loads them and generates.

deepseek32 (DeepSeek V3.2) is deepseek2's MLA plus the lightning indexer (DSA top-k); its
tensors and keys are what llama_model_deepseek32::load_arch_hparams / load_arch_tensors read.
deepseek4 (DeepSeek V4) has one K=V head per layer, a grouped low-rank output, hyper-connections
(4 residual streams), per-layer compression (CSA with the indexer, HCA), hash-routed first layers
and many experts with few active (llama_model_deepseek4).

llama.cpp is xllamacpp's (tests/llama_engine.py) for deepseek32. deepseek4 runs on llama-cpp-python:
xllamacpp 2026.10.11549's llama.cpp traps creating its KV cache, which
test_xllamacpp_cannot_run_deepseek4_yet pins.
"""

from __future__ import annotations

import signal

import gguf
import pytest

from dslocal.gguf_tools.shards import open_local_set
from dslocal.planner.facts import from_shard_set
from dslocal.planner.memory import (
    MIB,
    dsv4_cache_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    kv_cache_bytes,
)
from dslocal.testing.ggufgen import ModelSpec, build_vocab, tensor_plan, write_model

pytest.importorskip("xllamacpp")
from llama_engine import NOT_IN_XLLAMACPP, backend_for, load_report  # noqa: E402
from llama_server import start_llama_server  # noqa: E402
from test_ggufgen_llama import greedy  # noqa: E402 - the same greedy generation

SPECS = {"deepseek32": ModelSpec.deepseek32(), "deepseek4": ModelSpec.deepseek4()}


@pytest.mark.parametrize("dtype", ("f32", "f16", "q8_0"))
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_new_architectures_load_and_generate(tmp_path, kind, dtype):
    """deepseek32 in xllamacpp's llama.cpp; deepseek4 in llama-cpp-python's (see the module docstring)."""
    (path,) = write_model(tmp_path / f"{kind}.gguf", SPECS[kind], dtype=dtype)
    assert backend_for(path) == ("llama-cpp-python" if kind == "deepseek4" else "xllamacpp")
    _, out = greedy(path, 16)
    assert len(out) == 16
    assert all(0 <= t < len(build_vocab().tokens) for t in out)


@pytest.mark.parametrize(("compress_ratios", "extra"), [
    ((0, 4, 128, 4), {}),  # llama-server's defaults: its -fit step makes a context first, and dies there
    ((0, 4, 128, 4), {"fit_params": False}),
    ((0, 0, 0, 0), {"fit_params": False, "swa_full": True}),  # window layers only, a full-size window
    ((4, 128, 4, 128), {"fit_params": False, "cache_type_k": "GGML_TYPE_Q8_0", "cache_type_v": "GGML_TYPE_Q8_0"}),
])
def test_xllamacpp_cannot_run_deepseek4_yet(tmp_path, compress_ratios, extra):
    """xllamacpp 2026.10.11549's llama.cpp dies of SIGFPE making any deepseek4 context: the raw
    cache's non-SWA half has no layers, and ``llama_kv_cache`` sizes its attention rotation from a
    head size of 0 (``n_rot`` doubles while it divides 0, overflows to 0, then divides by it). So the
    deepseek4 checks here and in tests/test_planner_reality.py and tests/test_ggufgen_scripted.py run
    on llama-cpp-python. When this fails, a newer xllamacpp loads V4: empty
    llama_engine.NOT_IN_XLLAMACPP, and those checks move to it."""
    spec = ModelSpec.deepseek4(n_layer=len(compress_ratios), compress_ratios=compress_ratios)
    (path,) = write_model(tmp_path / "v4.gguf", spec, dtype="f16")
    assert "deepseek4" in NOT_IN_XLLAMACPP
    with pytest.raises(RuntimeError, match=f"exited with status {-signal.SIGFPE} while starting"):
        start_llama_server(path, n_ctx=512, threads=1, startup_timeout=30, extra=extra)


def test_deepseek32_carries_the_indexer_keys_and_tensors(tmp_path):
    spec = ModelSpec.deepseek32(index_n_head=4, index_head_dim=64, index_topk=16)
    (path,) = write_model(tmp_path / "v32.gguf", spec, dtype="f16")
    reader = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in reader.fields.items()}
    assert f["general.architecture"] == "deepseek32"
    assert f["deepseek32.attention.indexer.head_count"] == 4
    assert f["deepseek32.attention.indexer.key_length"] == 64
    assert f["deepseek32.attention.indexer.top_k"] == 16
    assert f["deepseek32.attention.key_length_mla"] == spec.qk_nope_dim + spec.rope_dim
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    for i in range(spec.n_layer):
        assert shapes[f"blk.{i}.indexer.attn_q_b.weight"] == (spec.q_lora_rank, 4 * 64)
        assert shapes[f"blk.{i}.indexer.attn_k.weight"] == (spec.n_embd, 64)
        assert shapes[f"blk.{i}.indexer.proj.weight"] == (spec.n_embd, 4)
        assert shapes[f"blk.{i}.indexer.k_norm.bias"] == (64,)
        assert f"blk.{i}.attn_k_b.weight" in shapes and f"blk.{i}.attn_kv_b.weight" not in shapes


def test_deepseek32_kv_per_token_is_the_latent_plus_the_indexer_key(tmp_path):
    spec = ModelSpec.deepseek32(index_head_dim=128)
    (path,) = write_model(tmp_path / "v32.gguf", spec, dtype="f16")
    facts = from_shard_set(open_local_set(path))
    assert facts.layout == "dsa"
    per_layer = (spec.kv_lora_rank + spec.rope_dim + 128) * 2
    assert kv_bytes_per_token(facts, "f16") == spec.n_layer * per_layer
    assert facts.expert_count == spec.n_expert and facts.expert_used == spec.n_expert_used


def test_deepseek4_carries_its_keys_and_tensors(tmp_path):
    spec = ModelSpec.deepseek4()
    (path,) = write_model(tmp_path / "v4.gguf", spec, dtype="f16")
    reader = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in reader.fields.items()}
    assert f["general.architecture"] == "deepseek4"
    assert f["deepseek4.attention.compress_ratios"] == list(spec.compress_ratios)
    assert f["deepseek4.hyper_connection.count"] == 4
    assert f["deepseek4.expert_gating_func"] == 4  # sqrtsoftplus
    assert f["deepseek4.embedding_length_out"] == 4 * spec.n_embd
    assert f["deepseek4.attention.head_count_kv"] == 1
    tensors = {t.name: t for t in reader.tensors}
    shapes = {name: tuple(int(n) for n in t.shape) for name, t in tensors.items()}
    assert shapes["output_hc_fn.weight"] == (4 * spec.n_embd, 4)
    for i, ratio in enumerate(spec.compress_ratios):
        p = f"blk.{i}."
        assert shapes[p + "hc_attn_fn.weight"] == (4 * spec.n_embd, 6 * 4)
        assert (p + "attn_compressor_kv.weight" in shapes) == (ratio != 0)
        assert (p + "indexer.attn_q_b.weight" in shapes) == (ratio == 4)
        assert (p + "ffn_gate_tid2eid.weight" in shapes) == (i < spec.n_hash_layers)
        assert (p + "exp_probs_b.bias" in shapes) == (i >= spec.n_hash_layers)
    assert shapes["blk.1.attn_compressor_kv.weight"] == (spec.n_embd, 2 * spec.head_dim)  # CSA: two halves
    assert shapes["blk.2.attn_compressor_kv.weight"] == (spec.n_embd, spec.head_dim)  # HCA
    table = tensors["blk.0.ffn_gate_tid2eid.weight"]
    assert table.tensor_type == gguf.GGMLQuantizationType.I32
    assert table.data.min() >= 0 and table.data.max() < spec.n_expert


def test_deepseek4_facts_count_the_experts_and_the_compressed_caches(tmp_path):
    spec = ModelSpec.deepseek4(n_expert=16, n_expert_used=2)
    (path,) = write_model(tmp_path / "v4.gguf", spec, dtype="f16")
    facts = from_shard_set(open_local_set(path))
    assert (facts.layout, facts.compress_ratios, facts.sliding_window) == ("dsv4", spec.compress_ratios, 128)
    assert facts.expert_count == 16 and facts.expert_used == 2
    assert facts.expert_bytes == spec.n_layer * 3 * spec.n_embd * spec.n_ff_exp * 16 * 2
    assert facts.active_bytes < facts.weight_bytes - facts.expert_bytes * 0.8
    d, di = spec.head_dim, spec.index_head_dim
    per_token = (2 * (d + di) / 4 + d / 128) * 2  # 2 CSA layers (+indexer), 1 HCA; the window is fixed
    assert kv_bytes_per_token(facts, "f16") == pytest.approx(per_token)
    assert kv_bytes_per_token_layer(facts, "f16") * spec.n_layer == pytest.approx(per_token)


@pytest.mark.parametrize("swa_full", (True, False))
def test_deepseek4_window_cache_follows_swa_full(tmp_path, swa_full):
    """Without swa_full the raw cache holds the window plus a ubatch, not the whole context.

    llama-cpp-python's llama.cpp: xllamacpp's cannot make a deepseek4 context (see above)."""
    spec = ModelSpec.deepseek4(head_dim=128, index_head_dim=128, n_layer=6, compress_ratios=(0, 4, 128, 4, 0, 0))
    (path,) = write_model(tmp_path / "v4.gguf", spec, dtype="f16")
    facts = from_shard_set(open_local_set(path))
    predicted = dsv4_cache_bytes(facts, 8192, "f16", swa_full=swa_full) / MIB
    report = load_report(path, 8192, swa_full=swa_full)
    assert report.backend == "llama-cpp-python"
    assert report.kv_lines == 8  # raw base + window, CSA, HCA, indexer; three compressor states
    assert predicted == pytest.approx(report.kv_mib, rel=0.02)
    assert kv_cache_bytes(facts, 8192, swa_full=swa_full) == dsv4_cache_bytes(facts, 8192, "f16", swa_full)


@pytest.mark.parametrize(("kind", "layout", "words"), [
    ("deepseek32", "dsa", "lightning-indexer"),
    ("deepseek4", "dsv4", "CSA/HCA compressed"),
])
def test_gguf_inspect_names_the_architecture_and_its_cache(tmp_path, dslocal_home, cli, kind, layout, words):
    from dslocal.gguf_tools.inspect import inspect_set

    (path,) = write_model(tmp_path / f"{kind}.gguf", SPECS[kind], dtype="q8_0")
    att = inspect_set(open_local_set(path))["attention"]
    assert att["layout"] == layout and words in att["cache"]
    assert att["indexer_top_k"] == SPECS[kind].index_topk
    assert (att["compress_ratios"] is not None) == (kind == "deepseek4")
    result = cli("gguf", "inspect", str(path))
    assert result.returncode == 0, result.stderr
    assert f"architecture    {kind}" in result.stdout
    assert words in result.stdout


@pytest.mark.parametrize(("model", "total_b", "active_b"), [
    ("DeepSeek-V4-Flash", 284, 13),  # the model card's 284B total, 13B active
    ("DeepSeek-V3.2", 671, 37),  # V3's 671B / 37B, plus the indexer (about 0.9B)
])
def test_full_size_tensor_plans_add_up_to_the_published_parameter_counts(model, total_b, active_b):
    from dslocal.planner.facts import SHAPES

    fields, n_vocab = SHAPES[model]
    spec = ModelSpec(**fields)
    plans = tensor_plan(spec, n_vocab)
    total = sum(p.n_elements for p in plans)
    experts = sum(p.n_elements for p in plans if "_exps." in p.name)
    active = total - experts * (1 - spec.n_expert_used / spec.n_expert) - spec.n_embd * n_vocab  # input embedding
    assert total / 1e9 == pytest.approx(total_b, rel=0.01)
    assert active / 1e9 == pytest.approx(active_b, rel=0.04)
