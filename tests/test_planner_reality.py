"""The memory model against llama.cpp itself: predicted model buffer and KV cache within 5%.

llama.cpp is xllamacpp's llama-server (tests/llama_engine.py: load_report), with llama-server's
defaults but one slot. Its figures equal llama-cpp-python 0.3.36's for every model here to the
0.01 MiB it prints (both keep no V cache for MLA and DSA: "V (f16): 0.00 MiB"), bar the repacked
weight copies: llama-cpp-python adds an AMX buffer on AMX CPUs, the xllamacpp CPU wheel has no AMX
and, on this machine, repacks nothing. deepseek4 alone is measured on llama-cpp-python: xllamacpp's
llama.cpp traps (SIGFPE) creating any V4 context (tests/test_ggufgen_new_archs.py pins it).
"""

from __future__ import annotations

import pytest

from dslocal.gguf_tools.shards import open_local_set
from dslocal.planner.facts import from_shard_set
from dslocal.planner.memory import kv_cache_bytes
from dslocal.testing.ggufgen import ModelSpec, write_model

pytest.importorskip("xllamacpp")
from llama_engine import load_report  # noqa: E402

MIB = 1 << 20
SPECS = {
    "deepseek2-mla": ModelSpec.deepseek2("mla", n_embd=512, n_layer=6, n_head=8, n_expert=16, n_ff_exp=256,
                                         q_lora_rank=128, kv_lora_rank=64, n_ff=1024),
    "deepseek2-legacy": ModelSpec.deepseek2("legacy", n_embd=512, n_layer=6, n_head=8, n_expert=16, n_ff_exp=256,
                                            q_lora_rank=128, kv_lora_rank=64, n_ff=1024),
    "deepseek32": ModelSpec.deepseek32(n_embd=512, n_layer=6, n_head=8, n_expert=16, n_ff_exp=256, q_lora_rank=128,
                                       kv_lora_rank=64, n_ff=1024, index_n_head=8, index_head_dim=128, index_topk=64),
    "deepseek4": ModelSpec.deepseek4(n_embd=512, n_layer=6, n_head=8, n_expert=32, n_expert_used=4, n_ff_exp=256,
                                     q_lora_rank=128, head_dim=128, index_n_head=8, index_head_dim=128,
                                     compress_ratios=(0, 4, 128, 4, 128, 4)),
    "qwen2": ModelSpec.qwen2(n_embd=512, n_layer=8, n_head=8, n_head_kv=2, n_ff=1536),
    "llama": ModelSpec.llama(n_embd=512, n_layer=8, n_head=8, n_head_kv=4, n_ff=1536),
}
BACKEND = {kind: "llama-cpp-python" if kind == "deepseek4" else "xllamacpp" for kind in SPECS}
KV_LINES = {"deepseek32": 2, "deepseek4": 8}  # DSA: latent + indexer; DSV4: 5 caches + 3 compressor states


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reality")
    return {kind: write_model(folder / f"{kind}.gguf", spec, dtype="q8_0" if "mla" in kind or kind in ("deepseek32", "deepseek4") else "f16", fast_fill=True)[0]
            for kind, spec in SPECS.items()}


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("n_ctx", [1000, 2048, 3500])
def test_predicted_sizes_match_llama_cpp(models, kind, n_ctx):
    facts = from_shard_set(open_local_set(models[kind]))
    report = load_report(models[kind], n_ctx)
    assert report.backend == BACKEND[kind]
    assert report.kv_lines == KV_LINES.get(kind, 1)
    predicted_model = facts.weight_bytes / MIB
    predicted_kv = kv_cache_bytes(facts, n_ctx) / MIB
    assert predicted_model == pytest.approx(report.model_mib, rel=0.05)
    assert report.repacked_mib <= predicted_model * 1.01, "a repacked copy holds some of the weights, never more"
    assert predicted_kv == pytest.approx(report.kv_mib, rel=0.05)
    assert report.model_mib > 10, "models must be large enough for llama.cpp's 0.01 MiB rounding not to matter"


@pytest.mark.parametrize("n_ctx", [20000, 70000])
def test_deepseek4_compressed_caches_at_long_contexts(models, n_ctx):
    """Long contexts: the compressed rows (every 4 and 128 tokens) dominate; the window stays fixed.

    llama-cpp-python's llama.cpp: xllamacpp's cannot make a deepseek4 context (module docstring)."""
    facts = from_shard_set(open_local_set(models["deepseek4"]))
    report = load_report(models["deepseek4"], n_ctx)
    assert report.backend == "llama-cpp-python"
    assert kv_cache_bytes(facts, n_ctx) / MIB == pytest.approx(report.kv_mib, rel=0.02)
    window_only = kv_cache_bytes(facts, 1000) / MIB
    assert report.kv_mib > 2 * window_only, "the compressed caches grow with the context"


@pytest.mark.parametrize("kind", ["deepseek2-mla", "llama"])
@pytest.mark.parametrize("kv_unified", [False, True])
def test_llama_server_slots_share_its_context(models, kind, kv_unified):
    """llama-server's ``-c`` is the whole cache, whatever ``-np``: four slots split 2048 cells into 512
    each (or share them all, ``--kv-unified``), so its KV cache is one sequence of ``-c`` tokens
    (``parallel=1``), unlike Ollama's, whose context is per sequence."""
    facts = from_shard_set(open_local_set(models[kind]))
    report = load_report(models[kind], 2048, n_parallel=4, kv_unified=kv_unified)
    assert report.backend == "xllamacpp"
    assert ("4/1 seqs" if kv_unified else "(   512 cells") in report.log
    assert kv_cache_bytes(facts, 2048) / MIB == pytest.approx(report.kv_mib, rel=0.05)
    assert kv_cache_bytes(facts, 2048, parallel=4) / MIB > 3 * report.kv_mib
