"""The generated test models are real: llama.cpp loads them and generates, split or not.

llama.cpp is xllamacpp's (tests/llama_engine.py): one llama-server per model file, shared.
"""

from __future__ import annotations

import gguf
import pytest

from dslocal.testing.ggufgen import SPECIAL_TOKENS, HeaderStyle, ModelSpec, build_vocab, tensor_plan, write_model

pytest.importorskip("xllamacpp")
from llama_engine import engine  # noqa: E402

KINDS = ("deepseek2-legacy", "deepseek2-mla", "qwen2", "llama")
DTYPES = ("f32", "f16", "q8_0")
PROMPT = "<｜User｜>Hello there, what is the cat doing?<｜Assistant｜><think>\n"


def greedy(path, n_tokens: int = 24, *, stop_at_eos: bool = False) -> tuple[list[int], list[int]]:
    """The prompt's tokens and ``n_tokens`` greedy tokens from ``path`` (a file or a set's first shard).

    EOS is banned (llama-server's ``ignore_eos``) so that a random-weight model always gives
    ``n_tokens``; with ``stop_at_eos`` it may end the generation instead, and is its last token."""
    llm = engine(path)
    prompt = llm.tokenize(PROMPT)
    return prompt, llm.generate(prompt, n_tokens, ignore_eos=not stop_at_eos).tokens


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_generated_model_loads_and_generates(make_gguf, kind, dtype):
    (path,) = make_gguf(kind, dtype)
    prompt, out = greedy(path)
    assert len(out) == 24
    vocab = build_vocab()
    assert all(0 <= t < len(vocab.tokens) for t in out)
    # The DeepSeek special tokens are single tokens in the prompt.
    for special in ("<｜User｜>", "<｜Assistant｜>", "<think>"):
        assert vocab.tokens.index(special) in prompt


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ("f16", "q8_0"))
def test_split_set_generates_exactly_what_the_single_file_does(make_gguf, kind, dtype):
    (single,) = make_gguf(kind, dtype)
    shards = make_gguf(kind, dtype, shards=4)
    assert [p.name for p in shards] == [f"{kind}-{dtype}-{i:05d}-of-00004.gguf" for i in range(1, 5)]
    assert greedy(shards[0]) == greedy(single)


def test_split_metadata_is_written_the_way_llama_cpp_writes_it(make_gguf):
    shards = make_gguf("deepseek2-mla", "q8_0", shards=4)
    readers = [gguf.GGUFReader(p) for p in shards]
    total = sum(len(r.tensors) for r in readers)
    (single,) = make_gguf("deepseek2-mla", "q8_0")
    assert total == len(gguf.GGUFReader(single).tensors)
    for i, reader in enumerate(readers):
        fields = reader.fields
        assert fields["split.no"].types == [gguf.GGUFValueType.UINT16]
        assert fields["split.count"].types == [gguf.GGUFValueType.UINT16]
        assert fields["split.tensors.count"].types == [gguf.GGUFValueType.INT32]
        assert fields["split.no"].contents() == i
        assert fields["split.count"].contents() == 4
        assert fields["split.tensors.count"].contents() == total
        # Only the first shard carries the model metadata.
        assert ("deepseek2.block_count" in fields) == (i == 0)
        assert ("tokenizer.ggml.tokens" in fields) == (i == 0)


@pytest.mark.parametrize("layout", ("legacy", "mla"))
def test_deepseek2_layouts_carry_the_keys_and_tensors_of_the_wild(make_gguf, layout):
    (path,) = make_gguf(f"deepseek2-{layout}", "f16")
    reader = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in reader.fields.items() if not k.startswith("tokenizer.ggml.")}
    names = {t.name for t in reader.tensors}
    spec = ModelSpec.deepseek2(layout)
    assert f["general.architecture"] == "deepseek2"
    assert reader.fields["tokenizer.ggml.pre"].contents() == "deepseek-v3"
    assert reader.fields["tokenizer.ggml.merges"].contents()  # llama.cpp refuses an empty merges list
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert all(t in tokens for t in SPECIAL_TOKENS)
    if layout == "legacy":
        assert f["deepseek2.attention.head_count_kv"] == f["deepseek2.attention.head_count"] == 4
        assert f["deepseek2.attention.key_length"] == spec.qk_nope_dim + spec.rope_dim
        assert "blk.1.attn_kv_b.weight" in names and "blk.1.attn_k_b.weight" not in names
    else:
        assert f["deepseek2.attention.head_count_kv"] == 1
        assert f["deepseek2.attention.key_length"] == spec.kv_lora_rank + spec.rope_dim
        assert f["deepseek2.attention.value_length"] == spec.kv_lora_rank
        assert {"blk.1.attn_k_b.weight", "blk.1.attn_v_b.weight"} <= names
        assert "blk.1.attn_kv_b.weight" not in names
    # one leading dense block, then MoE blocks with 3-D expert tensors
    assert "blk.0.ffn_gate.weight" in names and "blk.0.ffn_gate_exps.weight" not in names
    exps = next(t for t in reader.tensors if t.name == "blk.1.ffn_gate_exps.weight")
    assert list(exps.shape) == [spec.n_embd, spec.n_ff_exp, spec.n_expert]
    assert {"blk.1.exp_probs_b.bias", "blk.1.ffn_up_shexp.weight"} <= names


def test_q8_0_models_really_are_quantized(make_gguf):
    (path,) = make_gguf("deepseek2-mla", "q8_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types["blk.1.ffn_up_exps.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.1.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    # a row of 8 cannot hold a 32-wide Q8_0 block: kept at F16, as llama-quantize would
    assert types["blk.1.attn_k_b.weight"] == gguf.GGMLQuantizationType.F16


def test_big_models_stream_with_fast_fill(tmp_path):
    spec = ModelSpec.deepseek2("mla", n_expert=64, n_ff_exp=256, n_embd=256, n_layer=6, n_head=8)
    files = write_model(tmp_path / "big.gguf", spec, dtype="f16", shards=3, fast_fill=True)
    sizes = [f.stat().st_size for f in files]
    plan_bytes = sum(p.n_elements for p in tensor_plan(spec, len(build_vocab().tokens)))
    assert len(files) == 3 and sum(sizes) > plan_bytes  # f16 weights: ~2 bytes per element
    # the tiled pool still gives each tensor its own values
    reader = gguf.GGUFReader(files[1])
    first, second = reader.tensors[0], reader.tensors[1]
    assert first.data.tobytes()[:64] != second.data.tobytes()[:64]


def test_published_header_styles_load_and_generate_like_the_default(tmp_path):
    """A llama-quantize-style header with imatrix keys and Llama 3.x's rope_freqs is still a real model."""
    spec = ModelSpec.llama()
    (plain,) = write_model(tmp_path / "plain.gguf", spec, dtype="f16")
    (styled,) = write_model(tmp_path / "styled.gguf", spec, dtype="f16", header=HeaderStyle.quantized(rope_freqs=True))
    reader = gguf.GGUFReader(styled)
    keys = [f.name for f in reader.fields.values() if not f.name.startswith("GGUF.")]
    assert keys[-6:] == [
        "general.quantization_version", "general.file_type", "quantize.imatrix.file", "quantize.imatrix.dataset",
        "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count",
    ]
    names = [t.name for t in reader.tensors]
    assert names[:5] == ["output.weight", "output_norm.weight", "rope_freqs.weight", "token_embd.weight", "blk.0.attn_k.weight"]
    rope = next(t for t in reader.tensors if t.name == "rope_freqs.weight")
    assert list(rope.shape) == [spec.n_embd // spec.n_head // 2] and set(rope.data.tolist()) == {1.0}
    assert greedy(styled) == greedy(plain)


def test_default_header_is_convert_hf_to_gguf_order_and_options_change_it(tmp_path):
    (default,) = write_model(tmp_path / "d.gguf", ModelSpec.qwen2())
    keys = [f.name for f in gguf.GGUFReader(default).fields.values()]
    i = keys.index("general.file_type")
    assert keys[i + 1] == "general.quantization_version" and keys[i + 2] == "tokenizer.ggml.model"
    (bare,) = write_model(tmp_path / "b.gguf", ModelSpec.qwen2(), header=HeaderStyle(file_type=False, alignment=64))
    fields = gguf.GGUFReader(bare).fields
    assert "general.file_type" not in fields and fields["general.alignment"].contents() == 64
    with pytest.raises(ValueError, match="llama tensor"):
        write_model(tmp_path / "q.gguf", ModelSpec.qwen2(), header=HeaderStyle(rope_freqs=True))
