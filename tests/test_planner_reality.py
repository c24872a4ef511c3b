"""The memory model against llama.cpp itself: predicted model buffer and KV cache within 5%."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from dslocal.gguf_tools.shards import open_local_set
from dslocal.planner.facts import from_shard_set
from dslocal.planner.memory import kv_cache_bytes
from dslocal.testing.ggufgen import ModelSpec, write_model

pytest.importorskip("llama_cpp")

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
LOADER = """
import sys
from llama_cpp import Llama
Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, swa_full=False, verbose=True)  # llama-server's default
"""


REPACKED = ("AMX", "CPU_REPACK")  # buffers holding a second, repacked copy of some weights


def llama_cpp_report(path, n_ctx: int) -> tuple[float, float, float]:
    """(model buffer MiB, repacked-copy MiB, KV cache MiB) as llama.cpp prints them when loading.

    On CPUs with AMX (like this project's machines) llama.cpp copies the weights it can use
    there into an extra ``AMX`` buffer beside the mapped file; that copy is reported apart.
    """
    out = subprocess.run([sys.executable, "-c", LOADER, str(path), str(n_ctx)], capture_output=True, text=True, timeout=120)
    log = out.stdout + out.stderr
    buffers = re.findall(r"(\S+) model buffer size\s*=\s*([\d.]+) MiB", log)
    model = sum(float(size) for kind, size in buffers if kind not in REPACKED)
    repacked = sum(float(size) for kind, size in buffers if kind in REPACKED)
    # one line per cache: deepseek32's DSA cache is two (MLA latent cache, then the indexer's), deepseek4's
    # five (raw base and window, CSA, HCA, indexer) and three compressor states
    kv = re.findall(r"llama_kv_cache(?:_unified)?: size\s*=\s*([\d.]+) MiB", log)
    states = re.findall(r"llama_dsv4_comp_state: \w+ ratio = .* size =\s*([\d.]+) MiB", log)
    assert model and kv, log[-2000:]
    return model, repacked, sum(float(size) for size in kv + states)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reality")
    return {kind: write_model(folder / f"{kind}.gguf", spec, dtype="q8_0" if "mla" in kind or kind in ("deepseek32", "deepseek4") else "f16", fast_fill=True)[0]
            for kind, spec in SPECS.items()}


@pytest.mark.parametrize("kind", sorted(SPECS))
@pytest.mark.parametrize("n_ctx", [1000, 2048, 3500])
def test_predicted_sizes_match_llama_cpp(models, kind, n_ctx):
    facts = from_shard_set(open_local_set(models[kind]))
    model_mib, repacked_mib, kv_mib = llama_cpp_report(models[kind], n_ctx)
    predicted_model = facts.weight_bytes / MIB
    predicted_kv = kv_cache_bytes(facts, n_ctx) / MIB
    assert predicted_model == pytest.approx(model_mib, rel=0.05)
    assert repacked_mib <= predicted_model * 1.01, "a repacked copy holds some of the weights, never more"
    assert predicted_kv == pytest.approx(kv_mib, rel=0.05)
    assert model_mib > 10, "models must be large enough for llama.cpp's 0.01 MiB rounding not to matter"


@pytest.mark.parametrize("n_ctx", [20000, 70000])
def test_deepseek4_compressed_caches_at_long_contexts(models, n_ctx):
    """Long contexts: the compressed rows (every 4 and 128 tokens) dominate; the window stays fixed."""
    facts = from_shard_set(open_local_set(models["deepseek4"]))
    _, _, kv_mib = llama_cpp_report(models["deepseek4"], n_ctx)
    assert kv_cache_bytes(facts, n_ctx) / MIB == pytest.approx(kv_mib, rel=0.02)
    window_only = kv_cache_bytes(facts, 1000) / MIB
    assert kv_mib > 2 * window_only, "the compressed caches grow with the context"
