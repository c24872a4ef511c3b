"""Generate real GGUF models of the DeepSeek family for tests and benchmarks.

The models are small (kilobytes) by default and can be scaled up to gigabytes for
benchmarks. They load and generate in llama.cpp: the weights are random, but the
file is a faithful ``deepseek2`` (legacy or MLA layout), ``qwen2`` or ``llama`` GGUF
with a GPT-2 byte-level vocabulary carrying DeepSeek's special tokens.

Everything is streamed to disk one tensor at a time, so writing a multi-gigabyte
model needs only as much memory as its largest tensor.

Examples::

    from dslocal.testing.ggufgen import ModelSpec, write_model
    paths = write_model(tmp / "r1.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0", shards=4)
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARCHES = ("deepseek2", "qwen2", "llama")
LAYOUTS = ("legacy", "mla")
DTYPES = ("f32", "f16", "q8_0")

# DeepSeek's special tokens: full-width vertical bar U+FF5C and U+2581 for spaces.
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = (BOS, EOS, PAD, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE)

PRE_TOKENIZER = {"deepseek2": "deepseek-v3", "qwen2": "deepseek-r1-qwen", "llama": "llama-bpe"}

# A compact Jinja chat template in DeepSeek-R1's shape (system first, then
# <｜User｜>/<｜Assistant｜> turns, reasoning opened with <think>).
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] }}{% endif %}{% endfor %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)

# Merges of a tiny English BPE; every result is itself in the vocabulary.
_MERGES = (
    ("Ġ", "t"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("Ġ", "a"), ("o", "n"),
    ("r", "e"), ("Ġt", "he"), ("Ġ", "s"), ("e", "n"), ("o", "u"), ("Ġ", "w"), ("i", "s"),
    ("a", "t"), ("Ġ", "c"), ("i", "t"), ("Ġ", "th"), ("t", "h"), ("Ġ", "o"),
)


def _byte_symbols() -> list[str]:
    """GPT-2's byte-to-unicode symbols for the bytes 0x00-0x7F.

    Only ASCII bytes are used so that every token is valid UTF-8 on its own
    (a random model that samples a lone 0x80-0xFF byte breaks Ollama's chat).
    """
    printable = set(range(ord("!"), ord("~") + 1))
    symbols = []
    shift = 0
    for b in range(256):
        if b in printable or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF:
            ch = chr(b)
        else:
            ch = chr(256 + shift)
            shift += 1
        if b < 0x80:
            symbols.append(ch)
    return symbols


@dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]
    types: tuple[int, ...]
    merges: tuple[str, ...]
    bos_id: int
    eos_id: int
    pad_id: int


def build_vocab() -> Vocab:
    from gguf import TokenType

    tokens = _byte_symbols()
    for left, right in _MERGES:
        merged = left + right
        if merged not in tokens:
            tokens.append(merged)
    types = [int(TokenType.NORMAL)] * len(tokens)
    for special in SPECIAL_TOKENS:
        tokens.append(special)
        user_defined = special in (THINK_OPEN, THINK_CLOSE)
        types.append(int(TokenType.USER_DEFINED if user_defined else TokenType.CONTROL))
    merges = tuple(f"{a} {b}" for a, b in _MERGES)
    return Vocab(
        tokens=tuple(tokens),
        types=tuple(types),
        merges=merges,
        bos_id=tokens.index(BOS),
        eos_id=tokens.index(EOS),
        pad_id=tokens.index(PAD),
    )


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

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch must be one of {ARCHES}, not {self.arch!r}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, not {self.layout!r}")

    @classmethod
    def deepseek2(cls, layout: str = "mla", **kw: object) -> ModelSpec:
        return cls(arch="deepseek2", layout=layout, name=f"dslocal-test-deepseek2-{layout}", **kw)  # type: ignore[arg-type]

    @classmethod
    def qwen2(cls, **kw: object) -> ModelSpec:
        return cls(arch="qwen2", name="dslocal-test-qwen2", **kw)  # type: ignore[arg-type]

    @classmethod
    def llama(cls, **kw: object) -> ModelSpec:
        return cls(arch="llama", name="dslocal-test-llama", **kw)  # type: ignore[arg-type]

    def replace(self, **kw: object) -> ModelSpec:
        return dataclasses.replace(self, **kw)  # type: ignore[arg-type]

    @property
    def key_length(self) -> int:
        """Per-head K length as written in the GGUF (MLA: kv_lora_rank + rope)."""
        if self.arch != "deepseek2":
            return self.n_embd // self.n_head
        if self.layout == "mla":
            return self.kv_lora_rank + self.rope_dim
        return self.qk_nope_dim + self.rope_dim

    @property
    def value_length(self) -> int:
        if self.arch != "deepseek2":
            return self.n_embd // self.n_head
        return self.kv_lora_rank if self.layout == "mla" else self.v_head_dim

    @property
    def head_count_kv(self) -> int:
        if self.arch != "deepseek2":
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
        return int(np.prod(self.ne))


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
    block = _deepseek2_block if spec.arch == "deepseek2" else _gqa_block
    for i in range(spec.n_layer):
        plans.extend(block(spec, i))
    plans.append(TensorPlan("output_norm.weight", (spec.n_embd,), "norm"))
    plans.append(TensorPlan("output.weight", (spec.n_embd, n_vocab), "weight"))
    return plans


def _storage_type(plan: TensorPlan, dtype: str):  # -> GGMLQuantizationType
    from gguf import GGMLQuantizationType as Q

    if plan.kind in ("norm", "bias", "router") or dtype == "f32":
        return Q.F32
    if dtype == "q8_0" and plan.ne[0] % 32 == 0:
        return Q.Q8_0
    return Q.F16


class _Filler:
    """Deterministic tensor values: per-tensor RNG, or a tiled pool for big models."""

    def __init__(self, seed: int, fast: bool) -> None:
        self.seed = seed
        self.fast = fast
        self._pool = np.random.default_rng(seed).standard_normal(1 << 20, dtype=np.float32) if fast else None

    def values(self, plan: TensorPlan) -> np.ndarray:
        shape = plan.numpy_shape
        if plan.kind == "norm":
            return np.ones(shape, dtype=np.float32)
        if plan.kind == "bias":
            return np.zeros(shape, dtype=np.float32)
        fan_in = plan.ne[0]
        scale = 1.0 if plan.kind == "embed" else 1.0 / np.sqrt(fan_in)
        if self._pool is not None:
            offset = zlib.crc32(plan.name.encode()) % self._pool.size
            flat = np.resize(np.roll(self._pool, -offset), plan.n_elements)
            return (flat * np.float32(scale)).reshape(shape)
        rng = np.random.default_rng([self.seed, zlib.crc32(plan.name.encode())])
        return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).reshape(shape)


def _encode(values: np.ndarray, qtype) -> np.ndarray:
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import quantize

    if qtype == Q.F32:
        return np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(values, dtype=np.float16)
    return quantize(values, qtype)


def _add_metadata(writer, spec: ModelSpec, vocab: Vocab, dtype: str) -> None:
    from gguf import LlamaFileType

    a = spec.arch
    writer.add_type("model")
    writer.add_name(spec.name)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.head_count_kv)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(len(vocab.tokens))
    if a == "deepseek2":
        writer.add_leading_dense_block_count(spec.n_dense_lead)
        writer.add_q_lora_rank(spec.q_lora_rank)
        writer.add_kv_lora_rank(spec.kv_lora_rank)
        writer.add_key_length(spec.key_length)
        writer.add_value_length(spec.value_length)
        if spec.layout == "mla":
            writer.add_uint32(f"{a}.attention.key_length_mla", spec.qk_nope_dim + spec.rope_dim)
            writer.add_uint32(f"{a}.attention.value_length_mla", spec.v_head_dim)
        writer.add_expert_feed_forward_length(spec.n_ff_exp)
        writer.add_expert_count(spec.n_expert)
        writer.add_expert_used_count(spec.n_expert_used)
        writer.add_expert_shared_count(spec.n_expert_shared)
        writer.add_expert_weights_scale(2.5)
        writer.add_expert_weights_norm(True)
        writer.add_uint32(f"{a}.expert_gating_func", 2)  # sigmoid, as R1/V3
        writer.add_rope_dimension_count(spec.rope_dim)
    else:
        writer.add_rope_dimension_count(spec.n_embd // spec.n_head)
    file_type = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}
    writer.add_file_type(int(file_type[dtype]))
    writer.add_quantization_version(2)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER[a])
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def write_model(
    path: str | Path,
    spec: ModelSpec | None = None,
    *,
    dtype: str = "f32",
    shards: int = 1,
    split_max_size: int = 0,
    fast_fill: bool = False,
) -> list[Path]:
    """Write ``spec`` as a GGUF at ``path`` and return the written files.

    ``shards`` > 1 writes a split set the way llama-gguf-split does
    (``STEM-00001-of-0000N.gguf`` with ``split.no`` / ``split.count`` /
    ``split.tensors.count``, model metadata only in the first shard), splitting
    by tensor count; ``split_max_size`` splits by bytes instead. ``fast_fill``
    tiles a random pool instead of drawing fresh numbers, for gigabyte models.
    """
    import gguf

    spec = spec or ModelSpec()
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    path = Path(path)
    vocab = build_vocab()
    plans = tensor_plan(spec, len(vocab.tokens))
    split_max_tensors = -(-len(plans) // shards) if shards > 1 else 0
    writer = gguf.GGUFWriter(
        path, spec.arch, split_max_tensors=split_max_tensors, split_max_size=split_max_size
    )
    _add_metadata(writer, spec, vocab, dtype)
    filler = _Filler(spec.seed, fast_fill)
    qtypes = [_storage_type(p, dtype) for p in plans]
    for plan, qtype in zip(plans, qtypes):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        nbytes = plan.n_elements // block_size * type_size
        writer.add_tensor_info(plan.name, plan.numpy_shape, np.dtype(np.float32), nbytes, raw_dtype=qtype)
    files = writer.format_shard_names(path)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for plan, qtype in zip(plans, qtypes):
            writer.write_tensor_data(_encode(filler.values(plan), qtype))
    finally:
        writer.close()
    return files
