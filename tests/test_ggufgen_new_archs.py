"""The newer DeepSeek architectures the generator writes are real: llama.cpp loads them and generates.

deepseek32 (DeepSeek V3.2) is deepseek2's MLA plus the lightning indexer (DSA top-k); its
tensors and keys are what llama_model_deepseek32::load_arch_hparams / load_arch_tensors read.
"""

from __future__ import annotations

import gguf
import pytest

from dslocal.gguf_tools.shards import open_local_set
from dslocal.planner.facts import from_shard_set
from dslocal.planner.memory import kv_bytes_per_token
from dslocal.testing.ggufgen import ModelSpec, build_vocab, write_model

llama_cpp = pytest.importorskip("llama_cpp")
from llama_load import no_repack  # noqa: E402

no_repack()  # AMX repacking crashes batched Q8_0 decoding here (tests/llama_load.py)

PROMPT = "<｜User｜>Hello there, what is the cat doing?<｜Assistant｜><think>\n"
SPECS = {"deepseek32": ModelSpec.deepseek32()}


def greedy(path, n_tokens: int = 16) -> list[int]:
    llm = llama_cpp.Llama(str(path), n_ctx=256, n_threads=2, verbose=False)
    try:
        prompt = llm.tokenize(PROMPT.encode(), add_bos=True, special=True)
        out: list[int] = []
        for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            out.append(token)
            if len(out) == n_tokens:
                break
        return out
    finally:
        llm.close()


@pytest.mark.parametrize("dtype", ("f32", "f16", "q8_0"))
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_new_architectures_load_and_generate(tmp_path, kind, dtype):
    (path,) = write_model(tmp_path / f"{kind}.gguf", SPECS[kind], dtype=dtype)
    out = greedy(path)
    assert len(out) == 16
    assert all(0 <= t < len(build_vocab().tokens) for t in out)


def test_deepseek32_carries_the_indexer_keys_and_tensors(tmp_path):
    spec = ModelSpec.deepseek32(index_n_head=4, index_head_dim=64, index_topk=16)
    (path,) = write_model(tmp_path / "v32.gguf", spec, dtype="f16")
    reader = gguf.GGUFReader(path)
    f = {k: v.contents() for k, v in reader.fields.items()}
    assert f["general.architecture"] == "deepseek32"
    assert f["deepseek32.attention.indexer.head_count"] == 4
    assert f["deepseek32.attention.indexer.key_length"] == 64
    assert f["deepseek32.attention.indexer.top_k"] == 16
    assert f["deepseek32.attention.key_length_mla"] == spec.qk_nope_dim + spec.rope_dim
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}
    for i in range(spec.n_layer):
        assert shapes[f"blk.{i}.indexer.attn_q_b.weight"] == (spec.q_lora_rank, 4 * 64)
        assert shapes[f"blk.{i}.indexer.attn_k.weight"] == (spec.n_embd, 64)
        assert shapes[f"blk.{i}.indexer.proj.weight"] == (spec.n_embd, 4)
        assert shapes[f"blk.{i}.indexer.k_norm.bias"] == (64,)
        assert f"blk.{i}.attn_k_b.weight" in shapes and f"blk.{i}.attn_kv_b.weight" not in shapes


def test_deepseek32_kv_per_token_is_the_latent_plus_the_indexer_key(tmp_path):
    spec = ModelSpec.deepseek32(index_head_dim=128)
    (path,) = write_model(tmp_path / "v32.gguf", spec, dtype="f16")
    facts = from_shard_set(open_local_set(path))
    assert facts.layout == "dsa"
    per_layer = (spec.kv_lora_rank + spec.rope_dim + 128) * 2
    assert kv_bytes_per_token(facts, "f16") == spec.n_layer * per_layer
    assert facts.expert_count == spec.n_expert and facts.expert_used == spec.n_expert_used
