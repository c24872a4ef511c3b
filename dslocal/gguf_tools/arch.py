"""Tensor layouts of the GGUF architectures dslocal handles (deepseek2, deepseek32, qwen2, llama).

Pure knowledge of which tensors a model of given dimensions has and their shapes
(ggml order). The test-model generator writes these; the planner counts them to
estimate a catalog model's per-block sizes before its header has been read.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

ARCHES = ("deepseek2", "qwen2", "llama", "deepseek32")
LAYOUTS = ("legacy", "mla")
MLA_ARCHES = ("deepseek2", "deepseek32")  # DeepSeek's multi-head latent attention (q/kv LoRA, latent cache)

# The KV cache each architecture gets in llama.cpp (llama_model::create_memory):
# deepseek32 gets llama_kv_cache_dsa: the MLA latent K cache plus the lightning indexer's K cache.
CACHE_LAYOUTS = {
    "mla": "MLA latent cache: K only, kv_lora_rank + rope per layer and token",
    "legacy": "MHA-sized cache: K and V for every head",
    "dsa": "DSA: MLA latent K cache (kv_lora_rank + rope) plus indexer K cache (indexer key_length) per layer and token",
    "gqa": "K and V for each KV head",
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

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {ARCHES}, not {self.arch!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")
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
        return self.layout if self.is_mla_family else "gqa"

    @property
    def key_length(self) -> int:
        """Per-head K length as written in the GGUF (MLA: kv_lora_rank + rope)."""
        if not self.is_mla_family:
            return self.n_embd // self.n_head
        if self.layout == "mla":
            return self.kv_lora_rank + self.rope_dim
        return self.qk_nope_dim + self.rope_dim

    @property
    def value_length(self) -> int:
        if not self.is_mla_family:
            return self.n_embd // self.n_head
        return self.kv_lora_rank if self.layout == "mla" else self.v_head_dim

    @property
    def head_count_kv(self) -> int:
        if not self.is_mla_family:
            return self.n_head_kv
        return 1 if self.layout == "mla" else self.n_head


@dataclass(frozen=True)
class TensorPlan:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] is the row length
    kind: str  # "weight", "norm", "bias", "router", "embed"

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
        plans.extend(block(spec, i))
    plans.append(TensorPlan("output_norm.weight", (spec.n_embd,), "norm"))
    plans.append(TensorPlan("output.weight", (spec.n_embd, n_vocab), "weight"))
    return plans
