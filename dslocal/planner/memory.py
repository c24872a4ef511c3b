"""The memory model: KV cache, compute buffers and runtime overheads, as llama.cpp allocates them.

Checked against llama.cpp's own report (``tests/test_planner_reality.py``): the model
buffer is the sum of tensor bytes; the KV cache has ``n_ctx`` rounded up to 256 cells;
the MLA layout caches K only (``kv_lora_rank + rope`` per layer and token, since
llama.cpp's V-less cache); deepseek32's DSA cache (``llama_kv_cache_dsa``) is that MLA
cache plus the lightning indexer's K-only cache (one head of ``indexer.key_length``), both
of the K cache type, for the trunk layers (MTP blocks excluded); every other layout caches
K and V for each KV head.
"""

from __future__ import annotations

from dslocal.planner.facts import ModelFacts

MIB = 1 << 20
GIB = 1 << 30
CACHE_TYPES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
RUNTIME_OVERHEAD = {"cuda": 457 * MIB, "rocm": 457 * MIB, "metal": 512 * MIB}  # Ollama's MinimumMemory per GPU
N_UBATCH = 512
KV_PAD = 256


def padded_ctx(n_ctx: int) -> int:
    return -(-n_ctx // KV_PAD) * KV_PAD


def kv_bytes_per_token_layer(facts: ModelFacts, cache_type: str = "f16") -> float:
    size = CACHE_TYPES[cache_type]
    if facts.layout == "dsa":
        return (facts.key_length * facts.n_head_kv + facts.indexer_key_length) * size
    if facts.layout == "mla":
        return facts.key_length * facts.n_head_kv * size  # K only (kv_lora_rank + rope)
    return facts.n_head_kv * (facts.key_length + facts.value_length) * size


def kv_layers(facts: ModelFacts) -> int:
    """Blocks with a KV cache: the DSA cache covers the trunk, not the MTP (nextn) blocks."""
    if facts.layout == "dsa":
        return facts.block_count - facts.nextn_layers
    return facts.block_count


def kv_bytes_per_token(facts: ModelFacts, cache_type: str = "f16") -> float:
    return kv_layers(facts) * kv_bytes_per_token_layer(facts, cache_type)


def kv_cache_bytes(facts: ModelFacts, n_ctx: int, cache_type: str = "f16", parallel: int = 1) -> int:
    """The KV cache llama.cpp allocates for ``n_ctx`` tokens (times ``parallel`` sequences)."""
    return int(kv_bytes_per_token(facts, cache_type) * padded_ctx(n_ctx) * parallel)


def compute_buffer_bytes(facts: ModelFacts, n_ctx: int, flash_attention: bool) -> int:
    """An estimate of the compute graph's scratch memory for one ubatch of 512 tokens.

    Without flash attention the attention scores (ubatch x ctx x heads, f32) dominate;
    with it they are computed in tiles. Logits for the ubatch and a few activations remain.
    """
    ctx = padded_ctx(n_ctx)
    activations = 4 * N_UBATCH * (facts.n_vocab + 16 * facts.n_embd)
    scores = 0 if flash_attention else 4 * N_UBATCH * ctx * max(facts.n_head, 1)
    return activations + scores
