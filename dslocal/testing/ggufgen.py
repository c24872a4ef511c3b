"""Generate real GGUF models of the DeepSeek family for tests and benchmarks.

The models are small (kilobytes) by default and can be scaled up to gigabytes for
benchmarks. They load and generate in llama.cpp: the weights are random, but the
file is a faithful ``deepseek2`` (legacy or MLA layout), ``deepseek32`` (V3.2: MLA plus the
lightning indexer), ``deepseek4`` (V4: compressed sparse attention, hyper-connections, hash-routed
first layers), ``qwen2`` or ``llama`` GGUF
with a GPT-2 byte-level vocabulary carrying DeepSeek's special tokens.

:func:`write_scripted_model` writes a *scripted* model instead: every block adds nothing, so
greedy (and low-temperature) generation emits an exact, chosen chain of tokens, such as
``<think>\nHm.</think>OK!`` after ``<｜Assistant｜>``, for tests that assert on real inference output.

Everything is streamed to disk one tensor at a time, so writing a multi-gigabyte
model needs only as much memory as its largest tensor.

The header is laid out the way convert_hf_to_gguf.py writes it by default;
:class:`HeaderStyle` writes it the way other published GGUFs are (llama-quantize's
output with ``quantize.imatrix.*`` keys, no ``general.file_type``, Llama 3.x's
``rope_freqs.weight``, a ``general.alignment``...).

Examples::

    from dslocal.testing.ggufgen import HeaderStyle, ModelSpec, write_model
    paths = write_model(tmp / "r1.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0", shards=4)
    paths = write_model(tmp / "r1.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0", header=HeaderStyle.quantized())
    paths = write_model(tmp / "v4.gguf", ModelSpec.deepseek4(compress_ratios=(0, 4, 128, 4)), dtype="q8_0")
"""

from __future__ import annotations

import itertools
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dslocal.gguf_tools.arch import ARCHES, LAYOUTS, ModelSpec, TensorPlan, tensor_plan
from dslocal.gguf_tools.layout import block_layer

__all__ = [
    "ARCHES", "LAYOUTS", "DTYPES", "KV_ORDERS", "TENSOR_ORDERS", "HeaderStyle", "ModelSpec", "TensorPlan",
    "tensor_plan", "write_model", "build_vocab", "rope_freqs_plan",
    "DEFAULT_SCRIPT", "SCRIPTED_ARCHES", "script_token_ids", "write_scripted_model",
]

DTYPES = ("f32", "f16", "q8_0")
KV_ORDERS = ("convert", "quantize")
TENSOR_ORDERS = ("convert", "llama.cpp")


@dataclass(frozen=True)
class HeaderStyle:
    """How the header is laid out, as the tools that publish GGUFs write it.

    * ``kv_order``: ``"convert"`` (default): ``general.file_type`` ends the model parameters and
      ``general.quantization_version`` follows it, before the tokenizer, as convert_hf_to_gguf.py
      writes; ``"quantize"``: both after everything else, quantization_version first, as
      llama-quantize writes (every published quant: Unsloth, bartowski, ...).
    * ``imatrix``: ``quantize.imatrix.file/dataset/entries_count/chunks_count`` right after
      ``general.file_type``, as ``llama-quantize --imatrix`` writes them.
    * ``file_type``: False leaves ``general.file_type`` out (llama.cpp then guesses it).
    * ``rope_freqs``: llama only: Llama 3.x's ``rope_freqs.weight`` (all ones here, so the
      model generates what it would without it).
    * ``extra_tensors``: more tensors (written in f32): llama.cpp's quantizer takes tensors a
      model does not use, its loader refuses them.
    * ``alignment``: write ``general.alignment`` (None: not written; data is aligned to 32).
    * ``tensor_order``: ``"convert"``: extra tensors, token_embd, the blocks, output_norm, output
      (convert_hf_to_gguf.py's order); ``"llama.cpp"``: llama.cpp's load order, as llama-quantize writes.
    """

    kv_order: str = "convert"
    imatrix: bool = False
    file_type: bool = True
    rope_freqs: bool = False
    extra_tensors: tuple[TensorPlan, ...] = ()
    alignment: int | None = None
    tensor_order: str = "convert"

    def __post_init__(self) -> None:
        if self.kv_order not in KV_ORDERS:
            raise ValueError(f"kv_order must be one of {KV_ORDERS}, not {self.kv_order!r}")
        if self.tensor_order not in TENSOR_ORDERS:
            raise ValueError(f"tensor_order must be one of {TENSOR_ORDERS}, not {self.tensor_order!r}")

    @classmethod
    def quantized(cls, **kw: object) -> HeaderStyle:
        """A published quant: llama-quantize's KV order with imatrix keys, tensors in llama.cpp's order."""
        return cls(**{"kv_order": "quantize", "imatrix": True, "tensor_order": "llama.cpp", **kw})  # type: ignore[arg-type]


def rope_freqs_plan(spec: ModelSpec) -> TensorPlan:
    """Llama 3.x's RoPE frequency factors: one per rotated pair of a head."""
    return TensorPlan("rope_freqs.weight", ((spec.n_embd // spec.n_head) // 2,), "norm")


def _plans(spec: ModelSpec, n_vocab: int, style: HeaderStyle) -> list[TensorPlan]:
    if style.rope_freqs and spec.arch != "llama":
        raise ValueError(f"rope_freqs is a llama tensor: llama.cpp refuses it in a {spec.arch} model")
    extra = [rope_freqs_plan(spec)] if style.rope_freqs else []
    plans = [*extra, *style.extra_tensors, *tensor_plan(spec, n_vocab)]
    if style.tensor_order == "llama.cpp":
        plans.sort(key=lambda p: (block_layer(p.name), p.name.encode("utf-8")))
    return plans

# DeepSeek's special tokens: full-width vertical bar U+FF5C and U+2581 for spaces.
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
SPECIAL_TOKENS = (BOS, EOS, PAD, USER, ASSISTANT, THINK_OPEN, THINK_CLOSE)

PRE_TOKENIZER = {"deepseek2": "deepseek-v3", "qwen2": "deepseek-r1-qwen", "llama": "llama-bpe", "deepseek32": "deepseek-v3",
                 "deepseek4": "deepseek-v3"}

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


def _storage_type(plan: TensorPlan, dtype: str, extra: bool = False):  # -> GGMLQuantizationType
    from gguf import GGMLQuantizationType as Q

    if plan.kind == "index":
        return Q.I32
    if extra or plan.kind in ("norm", "bias", "router") or dtype == "f32":
        return Q.F32
    if dtype == "q8_0" and plan.ne[0] % 32 == 0:
        return Q.Q8_0
    return Q.F16


class _Filler:
    """Deterministic tensor values: per-tensor RNG, or a tiled pool for big models."""

    def __init__(self, seed: int, fast: bool, n_expert: int = 0) -> None:
        self.seed = seed
        self.fast = fast
        self.n_expert = n_expert
        self._pool = np.random.default_rng(seed).standard_normal(1 << 20, dtype=np.float32) if fast else None

    def values(self, plan: TensorPlan) -> np.ndarray:
        shape = plan.numpy_shape
        if plan.kind == "norm":
            return np.ones(shape, dtype=np.float32)
        if plan.kind == "bias":
            return np.zeros(shape, dtype=np.float32)
        if plan.kind == "index":  # token -> experts: distinct ids per row, all below n_expert
            rows, cols = shape
            return ((np.arange(rows)[:, None] + np.arange(cols)[None, :]) % self.n_expert).astype(np.int32)
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

    if qtype == Q.I32:
        return np.ascontiguousarray(values, dtype=np.int32)
    if qtype == Q.F32:
        return np.ascontiguousarray(values, dtype=np.float32)
    if qtype == Q.F16:
        return np.ascontiguousarray(values, dtype=np.float16)
    return quantize(values, qtype)


def _add_parameters(writer, spec: ModelSpec, vocab: Vocab) -> None:
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
    if a == "deepseek4":
        _add_deepseek4(writer, spec)
    elif a in ("deepseek2", "deepseek32"):
        writer.add_leading_dense_block_count(spec.n_dense_lead)
        writer.add_q_lora_rank(spec.q_lora_rank)
        writer.add_kv_lora_rank(spec.kv_lora_rank)
        writer.add_key_length(spec.key_length)
        writer.add_value_length(spec.value_length)
        if spec.layout == "mla":
            writer.add_uint32(f"{a}.attention.key_length_mla", spec.qk_nope_dim + spec.rope_dim)
            writer.add_uint32(f"{a}.attention.value_length_mla", spec.v_head_dim)
        _add_experts(writer, spec, scale=2.5, gating=2)  # sigmoid gating, as R1/V3
        writer.add_rope_dimension_count(spec.rope_dim)
        if a == "deepseek32":
            _add_indexer(writer, spec)
    else:
        writer.add_rope_dimension_count(spec.n_embd // spec.n_head)


def _add_experts(writer, spec: ModelSpec, *, scale: float, gating: int) -> None:
    """The MoE keys every DeepSeek generation writes, in convert_hf_to_gguf's order."""
    writer.add_expert_feed_forward_length(spec.n_ff_exp)
    writer.add_expert_count(spec.n_expert)
    writer.add_expert_used_count(spec.n_expert_used)
    writer.add_expert_shared_count(spec.n_expert_shared)
    writer.add_expert_weights_scale(scale)
    writer.add_expert_weights_norm(True)
    writer.add_uint32(f"{spec.arch}.expert_gating_func", gating)


def _add_indexer(writer, spec: ModelSpec) -> None:
    """The lightning indexer's keys, as llama_model_deepseek32::load_arch_hparams reads them."""
    a = spec.arch
    writer.add_uint32(f"{a}.attention.indexer.head_count", spec.index_n_head)
    writer.add_uint32(f"{a}.attention.indexer.key_length", spec.index_head_dim)
    writer.add_uint32(f"{a}.attention.indexer.top_k", spec.index_topk)


def _add_deepseek4(writer, spec: ModelSpec) -> None:
    """V4's keys, as llama_model_deepseek4::load_arch_hparams reads them (convert's DeepseekV4Model writes)."""
    a, n = spec.arch, spec.n_layer
    writer.add_key_length(spec.key_length)
    writer.add_value_length(spec.value_length)
    writer.add_rope_dimension_count(spec.rope_dim)
    writer.add_q_lora_rank(spec.q_lora_rank)
    writer.add_uint32(f"{a}.attention.sliding_window", spec.sliding_window)
    _add_experts(writer, spec, scale=1.5, gating=4)  # sqrtsoftplus: the only gating V4's loader accepts
    writer.add_array(f"{a}.swiglu_clamp_exp", [10.0] * n)
    writer.add_array(f"{a}.swiglu_clamp_shexp", [10.0] * n)
    _add_indexer(writer, spec)
    writer.add_uint32(f"{a}.attention.output_group_count", spec.o_groups)
    writer.add_uint32(f"{a}.attention.output_lora_rank", spec.o_lora_rank)
    writer.add_array(f"{a}.attention.compress_ratios", list(spec.compress_ratios))
    writer.add_float32(f"{a}.attention.compress_rope_freq_base", 160000.0)
    writer.add_uint32(f"{a}.hyper_connection.count", spec.hc_mult)
    writer.add_uint32(f"{a}.hyper_connection.sinkhorn_iterations", spec.hc_sinkhorn_iters)
    writer.add_float32(f"{a}.hyper_connection.epsilon", 1e-6)
    writer.add_uint32(f"{a}.hash_layer_count", spec.n_hash_layers)
    writer.add_uint32(f"{a}.embedding_length_out", spec.n_embd * spec.hc_mult)


def _add_tokenizer(writer, spec: ModelSpec, vocab: Vocab) -> None:
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(PRE_TOKENIZER[spec.arch])
    writer.add_token_list(list(vocab.tokens))
    writer.add_token_types(list(vocab.types))
    writer.add_token_merges(list(vocab.merges))
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)


def _add_quantization(writer, dtype: str, style: HeaderStyle) -> None:
    """general.file_type and general.quantization_version in ``style``'s order, then any imatrix keys."""
    from gguf import LlamaFileType

    file_type = {"f32": LlamaFileType.ALL_F32, "f16": LlamaFileType.MOSTLY_F16, "q8_0": LlamaFileType.MOSTLY_Q8_0}
    if style.kv_order == "quantize":
        writer.add_quantization_version(2)
    if style.file_type:
        writer.add_file_type(int(file_type[dtype]))
    if style.imatrix:
        writer.add_string("quantize.imatrix.file", "imatrix_dslocal-test.dat")
        writer.add_string("quantize.imatrix.dataset", "calibration_datav3.txt")
        writer.add_int32("quantize.imatrix.entries_count", 720)
        writer.add_int32("quantize.imatrix.chunks_count", 124)
    if style.kv_order == "convert":
        writer.add_quantization_version(2)


def _add_metadata(writer, spec: ModelSpec, vocab: Vocab, dtype: str, style: HeaderStyle) -> None:
    _add_parameters(writer, spec, vocab)
    if style.kv_order == "convert":
        _add_quantization(writer, dtype, style)
    _add_tokenizer(writer, spec, vocab)
    if style.kv_order == "quantize":
        _add_quantization(writer, dtype, style)
    if style.alignment is not None:
        writer.add_custom_alignment(style.alignment)


def write_model(
    path: str | Path,
    spec: ModelSpec | None = None,
    *,
    dtype: str = "f32",
    shards: int = 1,
    split_max_size: int = 0,
    fast_fill: bool = False,
    header: HeaderStyle | None = None,
) -> list[Path]:
    """Write ``spec`` as a GGUF at ``path`` and return the written files.

    ``shards`` > 1 writes a split set the way llama-gguf-split does
    (``STEM-00001-of-0000N.gguf`` with ``split.no`` / ``split.count`` /
    ``split.tensors.count``, model metadata only in the first shard), splitting
    by tensor count; ``split_max_size`` splits by bytes instead. ``fast_fill``
    tiles a random pool instead of drawing fresh numbers, for gigabyte models.
    ``header`` lays the header out as other tools write it (:class:`HeaderStyle`).
    """
    spec = spec or ModelSpec()
    filler = _Filler(spec.seed, fast_fill, spec.n_expert)
    return _write(Path(path), spec, filler, dtype=dtype, shards=shards, split_max_size=split_max_size,
                  style=header or HeaderStyle())


def _write(
    path: Path, spec: ModelSpec, filler: _Filler, *, dtype: str, shards: int, split_max_size: int, style: HeaderStyle
) -> list[Path]:
    """Stream ``spec``'s header and tensors (values from ``filler``) to ``path`` (and its shards)."""
    import gguf

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, not {dtype!r}")
    vocab = build_vocab()
    plans = _plans(spec, len(vocab.tokens), style)
    extra = {p.name for p in style.extra_tensors}
    split_max_tensors = -(-len(plans) // shards) if shards > 1 else 0
    writer = gguf.GGUFWriter(
        path, spec.arch, split_max_tensors=split_max_tensors, split_max_size=split_max_size
    )
    _add_metadata(writer, spec, vocab, dtype, style)
    qtypes = [_storage_type(p, dtype, p.name in extra) for p in plans]
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


# --- Scripted models: real inference that emits a chosen text -------------------------------------

# The text a DeepSeek-R1-style chat answer takes: reasoning in <think>...</think>, then the answer.
DEFAULT_SCRIPT = (ASSISTANT, THINK_OPEN, "\n", "H", "m", ".", THINK_CLOSE, "O", "K", "!", EOS)
SCRIPTED_ARCHES = ("llama", "qwen2", "deepseek2", "deepseek32", "deepseek4")
_SCRIPT_GAIN = 4.0  # output weight unit: the margin after the final RMS norm is gain * sqrt(n_embd / 2)


def _scripted_spec(arch: str) -> ModelSpec:
    """Tiny dimensions, but n_embd above the vocabulary: every token gets its own axis, plus one shared."""
    if arch == "deepseek4":
        # a hash-routed window-only block, a CSA block (with the indexer), an HCA block
        spec = ModelSpec.deepseek4(n_embd=256, n_layer=3, compress_ratios=(0, 4, 128))
        return spec.replace(name="dslocal-test-scripted-deepseek4")
    # deepseek2/32: the MLA layout, one leading dense block then a MoE block
    return ModelSpec(arch=arch, layout="mla", name=f"dslocal-test-scripted-{arch}", n_embd=256, n_layer=2, n_ff=64)


def script_token_ids(chain: tuple[str, ...] | list[str]) -> list[int]:
    """The ids in :func:`build_vocab` of ``chain``'s items, each the text one token decodes to.

    Special tokens are given as themselves (``"<｜Assistant｜>"``, ``"<think>"``); other items as the
    text they decode to: ``"\\n"`` is the byte symbol ``"Ċ"``, ``" t"`` the merged ``"Ġt"``.
    Raises ValueError for an item that is not exactly one token, or one that repeats.
    """
    vocab = build_vocab()
    index = {t: i for i, t in enumerate(vocab.tokens)}
    symbols = _byte_symbols()
    ids: list[int] = []
    for item in chain:
        if not isinstance(item, str) or not item:
            raise ValueError(f"script item {item!r} is not a token text")
        if item in SPECIAL_TOKENS:
            token = index[item]
        else:
            raw = item.encode("utf-8")
            symbol = "".join(symbols[b] for b in raw) if all(b < 0x80 for b in raw) else None
            token = index.get(symbol) if symbol is not None else None
            if token is None:
                raise ValueError(
                    f"script item {item!r} is not exactly one token of the generated vocabulary "
                    "(single ASCII characters, the merges' results such as 'the' or ' t', and the special tokens are)"
                )
        if token in ids:
            raise ValueError(f"script item {item!r} repeats: the next token depends only on the current one, "
                             "so every item of a chain must be distinct")
        ids.append(token)
    if not ids:
        raise ValueError("a script needs at least one token")
    return ids


class _ScriptFiller(_Filler):
    """Random weights, except that every block adds nothing and the head maps each token to its successor.

    The residual stream stays the token's embedding ``e_i + d`` (one-hot plus a shared axis ``d``);
    the output matrix gives next(i) a logit of ``2g`` per unit of e_i, EOS ``g`` per unit of d.
    """

    def __init__(self, spec: ModelSpec, n_vocab: int, successors: dict[int, int], eos_id: int) -> None:
        super().__init__(spec.seed, False, spec.n_expert)
        if n_vocab >= spec.n_embd:
            raise ValueError(f"a scripted model needs n_embd > the vocabulary ({n_vocab})")
        self.n_vocab, self.n_embd, self.shared = n_vocab, spec.n_embd, spec.n_embd - 1
        self.successors, self.eos_id = successors, eos_id

    def values(self, plan: TensorPlan) -> np.ndarray:
        kind = plan.name.split(".")[-2]  # blk.N.KIND.weight (KIND.weight outside the blocks)
        if plan.name == "token_embd.weight":  # numpy (n_vocab, n_embd): row i is token i's embedding
            emb = np.zeros(plan.numpy_shape, dtype=np.float32)
            emb[np.arange(self.n_vocab), np.arange(self.n_vocab)] = 1.0
            emb[:, self.shared] = 1.0
            return emb
        if plan.name == "output.weight":  # numpy (n_vocab, n_embd): row j scores token j
            out = np.zeros(plan.numpy_shape, dtype=np.float32)
            for token, successor in self.successors.items():
                out[successor, token] = 2 * _SCRIPT_GAIN
            out[self.eos_id, self.shared] = _SCRIPT_GAIN
            return out
        if kind in ("attn_output", "attn_output_b", "ffn_down", "ffn_down_exps", "ffn_down_shexp"):
            return np.zeros(plan.numpy_shape, dtype=np.float32)
        return super().values(plan)


def write_scripted_model(
    path: str | Path, chain: tuple[str, ...] | list[str] = DEFAULT_SCRIPT, *, arch: str = "llama", dtype: str = "f32"
) -> Path:
    """Write a real GGUF whose greedy (and low-temperature) generation follows ``chain`` exactly.

    Every block's output projections (``attn_output`` or V4's ``attn_output_b``, ``ffn_down``, and in
    the DeepSeek MoE blocks ``ffn_down_exps``/``ffn_down_shexp``) are zero, so the residual stream stays
    the token's embedding, a one-hot ``e_i`` plus a shared axis ``d`` (n_embd 256 > the 155 tokens); the
    other weights are random, so attention, routing and the indexer really run. The output matrix
    makes the next token depend only on the current one: after ``chain[k]`` comes ``chain[k + 1]``,
    after the last item and after any token not in the chain comes EOS, by a logit margin of about 45
    after the final RMS norm (any position, any dtype), so temperature/top-p sampling picks the same
    tokens. A prompt whose last token is ``chain[k]`` therefore generates ``chain[k + 1:]`` and then
    EOS (the default chain ends in EOS itself), whatever came before it in the prompt.

    ``chain`` items are token texts as they decode (see :func:`script_token_ids`); they must be
    distinct. The default, from a prompt ending in ``<｜Assistant｜>``, is ``"<think>\\nHm.</think>OK!"``;
    from the chat template's generation prompt (which ends in ``<think>\\n``) it is ``"Hm.</think>OK!"``.
    The file has :func:`build_vocab`'s tokens, the tokenizer metadata and the chat template of every
    generated model; ``dtype`` is one of :data:`DTYPES`. Supported ``arch`` (:data:`SCRIPTED_ARCHES`):
    ``llama`` (GQA, the default), ``qwen2``, ``deepseek2`` (MLA layout: a dense block then a MoE block),
    ``deepseek32`` (MLA plus the lightning indexer) and ``deepseek4`` (hyper-connections, hash-routed,
    CSA and HCA blocks). Files are 0.5 to 7.3 MB (llama: 2.3 MB in f32, 0.6 MB in q8_0).
    """
    if arch not in SCRIPTED_ARCHES:
        raise ValueError(f"arch must be one of {SCRIPTED_ARCHES} for a scripted model, not {arch!r}")
    ids = script_token_ids(chain)
    vocab = build_vocab()
    spec = _scripted_spec(arch)
    filler = _ScriptFiller(spec, len(vocab.tokens), dict(itertools.pairwise(ids)), vocab.eos_id)
    (written,) = _write(Path(path), spec, filler, dtype=dtype, shards=1, split_max_size=0, style=HeaderStyle())
    return written
