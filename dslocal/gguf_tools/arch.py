"""Tensor layouts of the GGUF architectures dslocal handles (deepseek2, deepseek32, deepseek4, qwen2, llama).

Pure knowledge of which tensors a model of given dimensions has and their shapes
(ggml order). The test-model generator writes these; the planner counts them to
estimate a catalog model's per-block sizes before its header has been read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

ARCHES = ("deepseek2", "qwen2", "llama", "deepseek32", "deepseek4")
LAYOUTS = ("legacy", "mla")
# DeepSeek's multi-head latent attention (q/kv LoRA, latent cache); deepseek4 has one K=V head instead
MLA_ARCHES = ("deepseek2", "deepseek32")

# The KV cache each architecture gets in llama.cpp (llama_model::create_memory): deepseek32 gets
# llama_kv_cache_dsa (the MLA latent K cache plus the lightning indexer's K cache), deepseek4
# llama_kv_cache_dsv4; planner/memory.py sizes them.
CACHE_LAYOUTS = {
    "mla": "MLA (compressed KV cache)",  # K only: kv_lora_rank + rope per layer and token
    "legacy": "legacy (MHA-sized KV cache)",  # K and V for every head
    "dsa": "DSA (MLA latent K cache + lightning-indexer K cache)",  # llama_kv_cache_dsa
    # llama_kv_cache_dsv4: a head_dim K per token in a sliding window on every layer, compressed K
    # rows every 4 tokens (CSA layers, and as many indexer keys) or 128 (HCA layers), f32 compressor states
    "dsv4": "DSV4 (sliding-window K cache + CSA/HCA compressed K caches + indexer cache)",
    "gqa": "K and V per KV head",
}


@dataclass(frozen=True)
class ModelSpec:
    """Shape of a generated model. Defaults are the llama.cpp-verified tiny deepseek2."""

    arch: str = "deepseek2"
    layout: str = "mla"  # deepseek2 only: "legacy" (attn_kv_b) or "mla" (attn_k_b + attn_v_b)
    name: str = "dslocal-test"
    n_embd: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_head_kv: int = 2  # qwen2 / llama only; deepseek2 derives it from the layout
    n_ff: int = 128
    context_length: int = 4096
    # deepseek2 attention and MoE
    q_lora_rank: int = 32
    kv_lora_rank: int = 32
    rope_dim: int = 8
    qk_nope_dim: int = 8
    v_head_dim: int = 16
    n_dense_lead: int = 1
    n_expert: int = 8
    n_expert_used: int = 2
    n_expert_shared: int = 1
    n_ff_exp: int = 32
    seed: int = 0
    # deepseek32 (DeepSeek V3.2) lightning indexer (DSA); head_dim >= 64, a power of two (Hadamard rotation)
    index_n_head: int = 4
    index_head_dim: int = 64
    index_topk: int = 16
    # deepseek4 (DeepSeek V4): one shared K=V head, grouped low-rank output, hyper-connections,
    # per-layer compression (0: window only, 4: CSA + indexer, 128: HCA), hash-routed first layers
    head_dim: int = 64
    o_groups: int = 2
    o_lora_rank: int = 16
    hc_mult: int = 4  # llama.cpp asserts 4
    hc_sinkhorn_iters: int = 20
    compress_ratios: tuple[int, ...] = (0, 4, 128, 4)
    n_hash_layers: int = 1
    sliding_window: int = 128

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {ARCHES}, not {self.arch!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
        if self.arch == "deepseek4" and len(self.compress_ratios) != self.n_layer:
            raise ValueError("deepseek4 needs one compress ratio (0, 4 or 128) per layer")
        if self.arch == "deepseek32" and self.layout != "mla":
            raise ValueError("deepseek32 requires the MLA layout (llama.cpp refuses anything else)")

    @classmethod
    def deepseek2(cls, layout: str = "mla", **kw: object) -> ModelSpec:
        return cls(arch="deepseek2", layout=layout, name=f"dslocal-test-deepseek2-{layout}", **kw)  # type: ignore[arg-type]

    @classmethod
    def deepseek32(cls, **kw: object) -> ModelSpec:
        """DeepSeek V3.2: deepseek2's MLA blocks plus the lightning indexer (DSA top-k)."""
        return cls(arch="deepseek32", layout="mla", name="dslocal-test-deepseek32", **kw)  # type: ignore[arg-type]

    @classmethod
    def deepseek4(cls, **kw: object) -> ModelSpec:
        """DeepSeek V4: compressed/sparse attention caches, hyper-connections, many experts, few active."""
        fields = {"n_dense_lead": 0, "n_expert": 16, "n_expert_used": 2, "rope_dim": 16, **kw}
        return cls(arch="deepseek4", layout="mla", name="dslocal-test-deepseek4", **fields)  # type: ignore[arg-type]

    @classmethod
    def qwen2(cls, **kw: object) -> ModelSpec:
        return cls(arch="qwen2", name="dslocal-test-qwen2", **kw)  # type: ignore[arg-type]

    @classmethod
    def llama(cls, **kw: object) -> ModelSpec:
        return cls(arch="llama", name="dslocal-test-llama", **kw)  # type: ignore[arg-type]

    def replace(self, **kw: object) -> ModelSpec:
        return dataclasses.replace(self, **kw)  # type: ignore[arg-type]

    @property
    def is_mla_family(self) -> bool:
        return self.arch in MLA_ARCHES

    @property
    def cache_layout(self) -> str:
        """The key of :data:`CACHE_LAYOUTS` llama.cpp's cache for this model follows."""
        if self.arch == "deepseek32":
            return "dsa"
        if self.arch == "deepseek4":
            return "dsv4"
        return self.layout if self.is_mla_family else "gqa"

    @property
    def key_length(self) -> int:
        """Per-head K length as written in the GGUF (MLA: kv_lora_rank + rope)."""
        if self.arch == "deepseek4":
            return self.head_dim
        if not self.is_mla_family:
            return self.n_embd // self.n_head
        if self.layout == "mla":
            return self.kv_lora_rank + self.rope_dim
        return self.qk_nope_dim + self.rope_dim

    @property
    def value_length(self) -> int:
        if self.arch == "deepseek4":
            return self.head_dim
        if not self.is_mla_family:
            return self.n_embd // self.n_head
        return self.kv_lora_rank if self.layout == "mla" else self.v_head_dim

    @property
    def head_count_kv(self) -> int:
        if self.arch == "deepseek4":
            return 1
        if not self.is_mla_family:
            return self.n_head_kv
        return 1 if self.layout == "mla" else self.n_head


@dataclass(frozen=True)
class TensorPlan:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    kind: str  # "weight", "norm", "bias", "router", "embed", "index" (int32 expert ids)

    @property
    def numpy_shape(self) -> tuple[int, ...]:
        return tuple(reversed(self.ne))

    @property
    def n_elements(self) -> int:
        return math.prod(self.ne)


def _deepseek2_block(spec: ModelSpec, i: int) -> Iterator[TensorPlan]:
    e, h = spec.n_embd, spec.n_head
    k_head = spec.qk_nope_dim + spec.rope_dim
    p = f"blk.{i}."
    yield TensorPlan(p + "attn_norm.weight", (e,), "norm")
    yield TensorPlan(p + "attn_q_a_norm.weight", (spec.q_lora_rank,), "norm")
    yield TensorPlan(p + "attn_kv_a_norm.weight", (spec.kv_lora_rank,), "norm")
    yield TensorPlan(p + "attn_q_a.weight", (e, spec.q_lora_rank), "weight")
    yield TensorPlan(p + "attn_q_b.weight", (spec.q_lora_rank, h * k_head), "weight")
    yield TensorPlan(p + "attn_kv_a_mqa.weight", (e, spec.kv_lora_rank + spec.rope_dim), "weight")
    if spec.layout == "mla":
        yield TensorPlan(p + "attn_k_b.weight", (spec.qk_nope_dim, spec.kv_lora_rank, h), "weight")
        yield TensorPlan(p + "attn_v_b.weight", (spec.kv_lora_rank, spec.v_head_dim, h), "weight")
    else:
        yield TensorPlan(
            p + "attn_kv_b.weight", (spec.kv_lora_rank, h * (spec.qk_nope_dim + spec.v_head_dim)), "weight"
        )
    yield TensorPlan(p + "attn_output.weight", (h * spec.v_head_dim, e), "weight")
    yield TensorPlan(p + "ffn_norm.weight", (e,), "norm")
    if spec.arch == "deepseek32":
        yield from _indexer(spec, p)
    if i < spec.n_dense_lead:
        yield from _dense_ffn(p, e, spec.n_ff)
        return
    x, f = spec.n_expert, spec.n_ff_exp
    yield TensorPlan(p + "ffn_gate_inp.weight", (e, x), "router")
    yield TensorPlan(p + "exp_probs_b.bias", (x,), "bias")
    yield TensorPlan(p + "ffn_gate_exps.weight", (e, f, x), "weight")
    yield TensorPlan(p + "ffn_up_exps.weight", (e, f, x), "weight")
    yield TensorPlan(p + "ffn_down_exps.weight", (f, e, x), "weight")
    s = f * spec.n_expert_shared
    yield TensorPlan(p + "ffn_gate_shexp.weight", (e, s), "weight")
    yield TensorPlan(p + "ffn_up_shexp.weight", (e, s), "weight")
    yield TensorPlan(p + "ffn_down_shexp.weight", (s, e), "weight")


def _indexer(spec: ModelSpec, p: str) -> Iterator[TensorPlan]:
    """DeepSeek V3.2's lightning indexer (llama_model_deepseek32::load_arch_tensors)."""
    d, n = spec.index_head_dim, spec.index_n_head
    yield TensorPlan(p + "indexer.k_norm.weight", (d,), "norm")
    yield TensorPlan(p + "indexer.k_norm.bias", (d,), "bias")
    yield TensorPlan(p + "indexer.proj.weight", (spec.n_embd, n), "weight")
    yield TensorPlan(p + "indexer.attn_k.weight", (spec.n_embd, d), "weight")
    yield TensorPlan(p + "indexer.attn_q_b.weight", (spec.q_lora_rank, n * d), "weight")


def _deepseek4_attention(spec: ModelSpec, p: str) -> Iterator[TensorPlan]:
    e, h, d, q = spec.n_embd, spec.n_head, spec.head_dim, spec.q_lora_rank
    g, r = spec.o_groups, spec.o_lora_rank
    yield TensorPlan(p + "attn_norm.weight", (e,), "norm")
    yield TensorPlan(p + "attn_sinks.weight", (h,), "bias")
    yield TensorPlan(p + "attn_q_a.weight", (e, q), "weight")
    yield TensorPlan(p + "attn_q_a_norm.weight", (q,), "norm")
    yield TensorPlan(p + "attn_q_b.weight", (q, h * d), "weight")
    yield TensorPlan(p + "attn_kv.weight", (e, d), "weight")
    yield TensorPlan(p + "attn_kv_a_norm.weight", (d,), "norm")
    yield TensorPlan(p + "attn_output_a.weight", (h * d // g, r * g), "weight")
    yield TensorPlan(p + "attn_output_b.weight", (g * r, e), "weight")


def _hyper_connections(spec: ModelSpec, p: str) -> Iterator[TensorPlan]:
    hc_dim, mix = spec.hc_mult * spec.n_embd, (2 + spec.hc_mult) * spec.hc_mult
    for part in ("attn", "ffn"):
        yield TensorPlan(p + f"hc_{part}_fn.weight", (hc_dim, mix), "router")
        yield TensorPlan(p + f"hc_{part}_base.weight", (mix,), "bias")
        yield TensorPlan(p + f"hc_{part}_scale.weight", (3,), "norm")


def _compressor(p: str, prefix: str, e: int, width: int, d: int, ratio: int) -> Iterator[TensorPlan]:
    yield TensorPlan(p + f"{prefix}_kv.weight", (e, width), "weight")
    yield TensorPlan(p + f"{prefix}_gate.weight", (e, width), "weight")
    yield TensorPlan(p + f"{prefix}_ape.weight", (width, ratio), "router")
    yield TensorPlan(p + f"{prefix}_norm.weight", (d,), "norm")


def _deepseek4_compression(spec: ModelSpec, i: int, p: str) -> Iterator[TensorPlan]:
    ratio = spec.compress_ratios[i]
    if ratio == 0:
        return
    e, d = spec.n_embd, spec.head_dim
    yield from _compressor(p, "attn_compressor", e, (2 if ratio == 4 else 1) * d, d, ratio)
    if ratio == 4:  # CSA layers carry the lightning indexer, over the compressed keys
        n, di = spec.index_n_head, spec.index_head_dim
        yield TensorPlan(p + "indexer.proj.weight", (e, n), "weight")
        yield TensorPlan(p + "indexer.attn_q_b.weight", (spec.q_lora_rank, n * di), "weight")
        yield from _compressor(p, "indexer_compressor", e, 2 * di, di, ratio)


def _deepseek4_moe(spec: ModelSpec, i: int, p: str, n_vocab: int) -> Iterator[TensorPlan]:
    e, x, f = spec.n_embd, spec.n_expert, spec.n_ff_exp
    yield TensorPlan(p + "ffn_gate_inp.weight", (e, x), "router")
    if i < spec.n_hash_layers:  # hash routing: a fixed token -> experts table
        yield TensorPlan(p + "ffn_gate_tid2eid.weight", (spec.n_expert_used, n_vocab), "index")
    else:
        yield TensorPlan(p + "exp_probs_b.bias", (x,), "bias")
    yield TensorPlan(p + "ffn_norm.weight", (e,), "norm")
    yield TensorPlan(p + "ffn_gate_exps.weight", (e, f, x), "weight")
    yield TensorPlan(p + "ffn_down_exps.weight", (f, e, x), "weight")
    yield TensorPlan(p + "ffn_up_exps.weight", (e, f, x), "weight")
    s = f * spec.n_expert_shared
    yield TensorPlan(p + "ffn_gate_shexp.weight", (e, s), "weight")
    yield TensorPlan(p + "ffn_down_shexp.weight", (s, e), "weight")
    yield TensorPlan(p + "ffn_up_shexp.weight", (e, s), "weight")


def _deepseek4_block(spec: ModelSpec, i: int, n_vocab: int) -> Iterator[TensorPlan]:
    """One block as llama_model_deepseek4::load_arch_tensors creates it."""
    p = f"blk.{i}."
    yield from _deepseek4_attention(spec, p)
    yield from _hyper_connections(spec, p)
    yield from _deepseek4_compression(spec, i, p)
    yield from _deepseek4_moe(spec, i, p, n_vocab)


def _dense_ffn(p: str, e: int, ff: int) -> Iterator[TensorPlan]:
    yield TensorPlan(p + "ffn_gate.weight", (e, ff), "weight")
    yield TensorPlan(p + "ffn_up.weight", (e, ff), "weight")
    yield TensorPlan(p + "ffn_down.weight", (ff, e), "weight")


def _gqa_block(spec: ModelSpec, i: int) -> Iterator[TensorPlan]:
    e = spec.n_embd
    head = e // spec.n_head
    kv = head * spec.n_head_kv
    p = f"blk.{i}."
    yield TensorPlan(p + "attn_norm.weight", (e,), "norm")
    yield TensorPlan(p + "attn_q.weight", (e, e), "weight")
    yield TensorPlan(p + "attn_k.weight", (e, kv), "weight")
    yield TensorPlan(p + "attn_v.weight", (e, kv), "weight")
    if spec.arch == "qwen2":
        yield TensorPlan(p + "attn_q.bias", (e,), "bias")
        yield TensorPlan(p + "attn_k.bias", (kv,), "bias")
        yield TensorPlan(p + "attn_v.bias", (kv,), "bias")
    yield TensorPlan(p + "attn_output.weight", (e, e), "weight")
    yield TensorPlan(p + "ffn_norm.weight", (e,), "norm")
    yield from _dense_ffn(p, e, spec.n_ff)


def tensor_plan(spec: ModelSpec, n_vocab: int) -> list[TensorPlan]:
    """Every tensor of the model in the order convert_hf_to_gguf writes them."""
    plans = [TensorPlan("token_embd.weight", (spec.n_embd, n_vocab), "embed")]
    block = _deepseek2_block if spec.is_mla_family else _gqa_block
    for i in range(spec.n_layer):
        plans.extend(_deepseek4_block(spec, i, n_vocab) if spec.arch == "deepseek4" else block(spec, i))
    plans.append(TensorPlan("output_norm.weight", (spec.n_embd,), "norm"))
    plans.append(TensorPlan("output.weight", (spec.n_embd, n_vocab), "weight"))
    if spec.arch == "deepseek4":  # the head folds the hc_mult residual streams back into one
        hc = spec.hc_mult
        plans.append(TensorPlan("output_hc_fn.weight", (hc * spec.n_embd, hc), "router"))
        plans.append(TensorPlan("output_hc_base.weight", (hc,), "bias"))
        plans.append(TensorPlan("output_hc_scale.weight", (1,), "norm"))
    return plans
