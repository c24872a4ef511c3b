"""The memory model: KV cache, compute buffers and runtime overheads, as llama.cpp allocates them.

Checked against llama.cpp's own report (``tests/test_planner_reality.py``): the model
buffer is the sum of tensor bytes; the KV cache has ``n_ctx`` rounded up to 256 cells;
the MLA layout caches K only (``kv_lora_rank + rope`` per layer and token, since
llama.cpp's V-less cache); deepseek32's DSA cache (``llama_kv_cache_dsa``) is that MLA
cache plus the lightning indexer's K-only cache (one head of ``indexer.key_length``), both
of the K cache type, for the trunk layers (MTP blocks excluded); deepseek4's
``llama_kv_cache_dsv4`` is described at :func:`dsv4_cache_bytes`; every other layout caches
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
    if facts.layout == "dsv4":  # the average over the trunk layers
        return _dsv4_bytes_per_token(facts, cache_type) / max(_dsv4_counts(facts)[0], 1)
    if facts.layout == "dsa":
        return (facts.key_length * facts.n_head_kv + facts.indexer_key_length) * size
    if facts.layout == "mla":
        return facts.key_length * facts.n_head_kv * size  # K only (kv_lora_rank + rope)
    return facts.n_head_kv * (facts.key_length + facts.value_length) * size


DSV4_CSA, DSV4_HCA = 4, 128  # llama-kv-cache-dsv4.cpp: DSV4_CSA_RATIO, DSV4_HCA_RATIO


def _pad256(n: int) -> int:
    return -(-n // 256) * 256


def _dsv4_counts(facts: ModelFacts) -> tuple[int, int, int]:
    """(trunk layers, CSA layers, HCA layers) of a deepseek4 model."""
    ratios = facts.compress_ratios[: facts.block_count - facts.nextn_layers]
    return len(ratios), ratios.count(DSV4_CSA), ratios.count(DSV4_HCA)


def dsv4_state_bytes(facts: ModelFacts) -> int:
    """The f32 compressor states (kv and score planes), one sequence: fixed, whatever the context.

    llama_dsv4_comp_state: CSA ``2*head x 8`` and the indexer's ``2*indexer_head x 8`` per CSA
    layer, HCA ``head x 128`` per HCA layer.
    """
    _, csa, hca = _dsv4_counts(facts)
    d, di = facts.key_length, facts.indexer_key_length
    per_plane = csa * (2 * d + 2 * di) * 2 * DSV4_CSA + hca * d * DSV4_HCA
    return 4 * 2 * per_plane


def dsv4_cache_bytes(facts: ModelFacts, n_ctx: int, cache_type: str = "f16", swa_full: bool = False) -> int:
    """llama_kv_cache_dsv4 for one sequence, K-only caches of the K type throughout.

    * raw: a sliding-window cache of one ``head_dim`` K per token on every trunk layer, of
      ``pad256(min(ctx, window + ubatch))`` cells (llama_kv_cache_iswa), or the whole context
      with ``swa_full`` (off in llama-server, on in libllama's own defaults);
    * CSA layers (ratio 4): ``pad256(ceil(ctx/4))`` compressed K rows, and as many indexer keys;
    * HCA layers (ratio 128): ``pad256(ceil(ctx/128))`` compressed K rows;
    * the compressor states (:func:`dsv4_state_bytes`).
    """
    size = CACHE_TYPES[cache_type]
    kv = padded_ctx(n_ctx)
    layers, csa, hca = _dsv4_counts(facts)
    d, di = facts.key_length, facts.indexer_key_length
    raw_cells = kv if swa_full else _pad256(min(kv, facts.sliding_window + N_UBATCH))
    csa_cells, hca_cells = _pad256(-(-kv // DSV4_CSA)), _pad256(-(-kv // DSV4_HCA))
    caches = layers * d * raw_cells + csa * (d + di) * csa_cells + hca * d * hca_cells
    return int(caches * size) + dsv4_state_bytes(facts)


def _dsv4_bytes_per_token(facts: ModelFacts, cache_type: str, swa_full: bool = False) -> float:
    """What one more token of context costs, on average (compressed rows every 4 / 128 tokens).

    Without ``swa_full`` the window cache is a fixed size (about a MiB per layer at most), not per token.
    """
    layers, csa, hca = _dsv4_counts(facts)
    d, di = facts.key_length, facts.indexer_key_length
    raw = layers * d if swa_full else 0
    return (raw + csa * (d + di) / DSV4_CSA + hca * d / DSV4_HCA) * CACHE_TYPES[cache_type]


def kv_layers(facts: ModelFacts) -> int:
    """Blocks with a KV cache: the DSA cache covers the trunk, not the MTP (nextn) blocks."""
    if facts.layout == "dsa":
        return facts.block_count - facts.nextn_layers
    return facts.block_count


def kv_bytes_per_token(facts: ModelFacts, cache_type: str = "f16") -> float:
    if facts.layout == "dsv4":
        return _dsv4_bytes_per_token(facts, cache_type)
    return kv_layers(facts) * kv_bytes_per_token_layer(facts, cache_type)


def kv_cache_bytes(facts: ModelFacts, n_ctx: int, cache_type: str = "f16", parallel: int = 1,
                   swa_full: bool = False) -> int:
    """The KV cache llama.cpp allocates for ``n_ctx`` tokens (times ``parallel`` sequences).

    ``swa_full``: llama.cpp's ``--swa-full`` (off by default in llama-server); only deepseek4 has a window.
    """
    if facts.layout == "dsv4":  # per-sequence streams throughout (unified_raw = false)
        return dsv4_cache_bytes(facts, n_ctx, cache_type, swa_full) * parallel
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
