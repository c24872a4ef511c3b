"""The facts of a GGUF model (single file or split set) as a plain report.

Used by ``dslocal gguf inspect`` and by the planner. Pure: it takes a validated
:class:`ShardSet` and reads nothing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from dslocal.gguf_tools.arch import CACHE_LAYOUTS
from dslocal.gguf_tools.ggml_types import FILE_TYPES, GGML_TYPES
from dslocal.gguf_tools.shards import ShardSet

DEEPSEEK_SPECIAL_TOKENS = (
    "<｜begin▁of▁sentence｜>",
    "<｜end▁of▁sentence｜>",
    "<｜User｜>",
    "<｜Assistant｜>",
    "<think>",
    "</think>",
)
_BLOCK = re.compile(r"^blk\.(\d+)\.")


# Architectures whose KV cache llama.cpp lays out its own way (llama_model::create_memory)
ARCH_CACHE_LAYOUTS = {"deepseek32": "dsa", "deepseek4": "dsv4"}


def attention_layout(shard_set: ShardSet) -> str | None:
    """The cache layout of a DeepSeek model (a key of :data:`CACHE_LAYOUTS`).

    deepseek2: ``mla`` (attn_k_b + attn_v_b, one KV head) or ``legacy`` (attn_kv_b, MHA-sized
    cache); deepseek32: ``dsa`` (MLA plus the indexer's key cache); deepseek4: ``dsv4``.
    """
    header = shard_set.first
    if header.arch in ARCH_CACHE_LAYOUTS:
        return ARCH_CACHE_LAYOUTS[header.arch]
    if header.arch != "deepseek2":
        return None
    names = {t.name.rsplit(".", 2)[-2] for _, t in shard_set.tensors() if t.name.startswith("blk.")}
    if "attn_k_b" in names or header.arch_get("attention.key_length_mla") is not None:
        return "mla"
    if "attn_kv_b" in names:
        return "legacy"
    return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _sparse_attention(h: Any) -> dict[str, Any]:
    """The lightning indexer (deepseek32, deepseek4) and V4's compression and hyper-connections."""
    ratios = h.arch_get("attention.compress_ratios")
    return {
        "indexer_head_count": _int(h.arch_get("attention.indexer.head_count")),
        "indexer_key_length": _int(h.arch_get("attention.indexer.key_length")),
        "indexer_top_k": _int(h.arch_get("attention.indexer.top_k")),
        "sliding_window": _int(h.arch_get("attention.sliding_window")),
        "compress_ratios": [int(r) for r in ratios] if isinstance(ratios, list) else None,
        "hyper_connection_count": _int(h.arch_get("hyper_connection.count")),
    }


def inspect_set(shard_set: ShardSet) -> dict[str, Any]:
    """Everything ``dslocal gguf inspect`` reports, as JSON-ready values."""
    h = shard_set.first
    blocks: dict[int, int] = defaultdict(int)
    outside = 0
    mix: dict[str, dict[str, int]] = {}
    params = 0
    for _, tensor in shard_set.tensors():
        params += tensor.n_elements
        entry = mix.setdefault(GGML_TYPES[tensor.ggml_type].name, {"tensors": 0, "bytes": 0})
        entry["tensors"] += 1
        entry["bytes"] += tensor.n_bytes
        match = _BLOCK.match(tensor.name)
        if match:
            blocks[int(match[1])] += tensor.n_bytes
        else:
            outside += tensor.n_bytes
    tokens = h.get("tokenizer.ggml.tokens") or []
    token_set = set(tokens) if isinstance(tokens, list) else set()
    file_type = _int(h.get("general.file_type"))
    template = h.get("tokenizer.chat_template")
    return {
        "architecture": h.arch,
        "name": h.get("general.name"),
        "parameter_count": params,
        "context_length": _int(h.arch_get("context_length")),
        "block_count": _int(h.arch_get("block_count")),
        "embedding_length": _int(h.arch_get("embedding_length")),
        "expert_count": _int(h.arch_get("expert_count")),
        "expert_used_count": _int(h.arch_get("expert_used_count")),
        "expert_shared_count": _int(h.arch_get("expert_shared_count")),
        "leading_dense_block_count": _int(h.arch_get("leading_dense_block_count")),
        "attention": {
            "layout": (layout := attention_layout(shard_set)),
            "cache": CACHE_LAYOUTS.get(layout) if layout else None,
            "head_count": _int(h.arch_get("attention.head_count")),
            "head_count_kv": _int(h.arch_get("attention.head_count_kv")),
            "key_length": _int(h.arch_get("attention.key_length")),
            "value_length": _int(h.arch_get("attention.value_length")),
            "kv_lora_rank": _int(h.arch_get("attention.kv_lora_rank")),
            "q_lora_rank": _int(h.arch_get("attention.q_lora_rank")),
            "rope_dimension_count": _int(h.arch_get("rope.dimension_count")),
            **(_sparse_attention(h) if h.arch in ARCH_CACHE_LAYOUTS else {}),
        },
        "file_type": FILE_TYPES.get(file_type, f"unknown ({file_type})") if file_type is not None else None,
        "quant_mix": dict(sorted(mix.items(), key=lambda kv: -kv[1]["bytes"])),
        "tensor_count": shard_set.tensor_count,
        "tensor_bytes": shard_set.tensor_bytes,
        "file_bytes": shard_set.file_bytes,
        "blocks": [{"index": i, "bytes": blocks[i]} for i in sorted(blocks)],
        "outside_blocks_bytes": outside,
        "split": {"count": len(shard_set.files), "files": list(shard_set.files)},
        "gguf_version": h.version,
        "alignment": h.alignment,
        "vocab_size": len(tokens) if isinstance(tokens, list) else None,
        "chat_template": isinstance(template, str) and bool(template),
        "special_tokens": {
            "found": [t for t in DEEPSEEK_SPECIAL_TOKENS if t in token_set],
            "missing": [t for t in DEEPSEEK_SPECIAL_TOKENS if t not in token_set],
        },
    }
