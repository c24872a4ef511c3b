"""Scripted GGUFs: real models whose llama.cpp generation is an exact, chosen text.

Every block adds nothing to the residual stream, so the next token depends only on the current
one; the output matrix sends each chain item to the next and everything else to EOS.

llama.cpp is xllamacpp's llama-server, one per scripted file (tests/llama_engine.py); deepseek4
alone runs on llama-cpp-python, which xllamacpp's llama.cpp cannot run (llama_engine.NOT_IN_XLLAMACPP).
"""

from __future__ import annotations

import gguf
import pytest

from dslocal.testing.ggufgen import (
    ASSISTANT,
    CHAT_TEMPLATE,
    DEFAULT_SCRIPT,
    EOS,
    THINK_CLOSE,
    USER,
    build_vocab,
    script_token_ids,
    write_scripted_model,
)

pytest.importorskip("xllamacpp")
from llama_engine import Engine, open_engine  # noqa: E402
from test_ggufgen_llama import greedy  # noqa: E402 - its prompt is the chat template's generation prompt

SCRIPT_TEXT = "<think>\nHm.</think>OK!"
AFTER_ASSISTANT = f"{USER}Hi{ASSISTANT}"
AFTER_THINK = f"{USER}Hi{ASSISTANT}<think>\nHm.{THINK_CLOSE}"
OFF_SCRIPT = f"{USER}Hi"  # ends in "i", no item of the chain
ENDINGS = {AFTER_ASSISTANT: SCRIPT_TEXT, AFTER_THINK: "OK!", OFF_SCRIPT: ""}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``models(arch="llama", dtype="f32", chain=DEFAULT_SCRIPT)``: the written file and its engine, once each."""
    root = tmp_path_factory.mktemp("scripted")
    cache: dict = {}

    def get(arch: str = "llama", dtype: str = "f32", chain: tuple[str, ...] = DEFAULT_SCRIPT):
        key = (arch, dtype, chain)
        if key not in cache:
            path = write_scripted_model(root / f"{arch}-{dtype}-{len(cache)}.gguf", chain, arch=arch, dtype=dtype)
            cache[key] = path, open_engine(path)
        return cache[key]

    yield get
    for _, llm in cache.values():
        llm.close()


def run(llm: Engine, prompt: str, limit: int = 32, **sampling) -> tuple[list[int], str]:
    """Generate from ``prompt`` (special tokens parsed, as Ollama and llama-server do) up to EOS.

    Returns the tokens (EOS included) and the text of those before EOS, each piece rendered on
    its own as llama.cpp renders a token without ``special`` (EOS, a CONTROL token, as nothing).
    """
    out = llm.generate(llm.tokenize(prompt), limit, **sampling)
    return out.tokens, out.text


@pytest.mark.parametrize("dtype", ("f32", "f16", "q8_0"))
def test_greedy_generation_after_the_assistant_tag_is_the_script(models, dtype):
    _, llm = models(dtype=dtype)
    assert llm.backend == "xllamacpp"
    out = llm.generate(llm.tokenize(AFTER_ASSISTANT), 32)
    assert out.text == SCRIPT_TEXT
    assert out.tokens == script_token_ids(DEFAULT_SCRIPT)[1:]  # <think>, \n, H, m, ., </think>, O, K, !, EOS
    assert out.tokens[-1] == llm.eos == build_vocab().eos_id
    # <think> is USER_DEFINED: its text even without special; EOS (CONTROL) only with it
    assert out.pieces[0] == b"<think>" and out.pieces[-1] == b""
    assert llm.detokenize(out.tokens[-1:]) == EOS
    assert llm.detokenize(out.tokens) == SCRIPT_TEXT + EOS


def test_after_think_close_only_the_answer_follows(models):
    _, llm = models()
    out, text = run(llm, AFTER_THINK)
    assert text == "OK!" and len(out) == 4 and out[-1] == llm.eos


def test_a_prompt_ending_off_the_script_ends_at_once(models):
    _, llm = models()
    assert run(llm, OFF_SCRIPT) == ([llm.eos], "")


def test_the_chat_templates_generation_prompt_continues_inside_the_reasoning(models):
    """The template's generation prompt ends in ``<think>\\n``, so the reply is the rest of the script."""
    path, _ = models()
    _, out = greedy(path, 8, stop_at_eos=True)
    vocab = build_vocab()
    assert "".join(vocab.tokens[t] for t in out[:-1]) == "Hm.</think>OK!" and out[-1] == vocab.eos_id


@pytest.mark.parametrize("seed", (0, 1, 7, 1234))
def test_low_temperature_sampling_gives_the_same_text(models, seed):
    _, llm = models()
    for prompt, expected in ENDINGS.items():
        assert run(llm, prompt, temperature=0.6, top_p=0.95, seed=seed)[1] == expected


def test_chat_completion_through_the_ggufs_template(models):
    """llama-server renders the GGUF's own template (jinja); it has no reasoning markers, so the
    reasoning and ``</think>`` stay in content (tests/test_llama_server_real.py)."""
    _, llm = models()
    reply = llm.chat([{"role": "user", "content": "Hi"}], temperature=0.6, top_p=0.95, seed=3)
    assert reply["choices"][0]["message"]["content"] == "Hm.</think>OK!"
    assert reply["choices"][0]["finish_reason"] == "stop"


def test_the_file_is_a_generated_model_with_zero_block_outputs(models):
    path, _ = models()
    reader = gguf.GGUFReader(path)
    fields = reader.fields
    vocab = build_vocab()
    assert fields["general.architecture"].contents() == "llama"
    assert fields["tokenizer.ggml.tokens"].contents() == list(vocab.tokens)
    assert fields["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    tensors = {t.name: t for t in reader.tensors}
    assert fields["llama.embedding_length"].contents() > len(vocab.tokens)
    for name in ("blk.0.attn_output.weight", "blk.1.ffn_down.weight"):
        assert not tensors[name].data.any()
    assert tensors["blk.0.attn_q.weight"].data.any()  # the rest stays random: attention really runs


@pytest.mark.parametrize(("chain", "prompt", "expected"), [
    ((ASSISTANT, " the", " c", "at", ".", EOS), AFTER_ASSISTANT, " the cat."),  # merged symbols, leading spaces kept
    (("H", "e", "y"), f"{USER}H", "ey"),  # a chain without EOS: EOS follows its last item
])
def test_a_custom_chain(models, chain, prompt, expected):
    _, llm = models(chain=chain)
    out, text = run(llm, prompt)
    assert text == expected and out[-1] == llm.eos
    assert run(llm, OFF_SCRIPT)[1] == ""


@pytest.mark.parametrize(("chain", "words"), [
    (("a", "b", "a"), "repeats"),
    ((ASSISTANT, "<think>", "\n", "<think>"), "repeats"),
    (("a", "cat"), "not exactly one token"),  # two tokens: "c" "at"
    (("a", "é"), "not exactly one token"),  # outside the ASCII byte vocabulary
    (("a", "Ċ"), "not exactly one token"),  # the byte symbol itself: "\n" is how that token decodes
    (("a", ""), "not a token text"),
    ((), "at least one token"),
])
def test_a_chain_that_is_not_distinct_single_tokens_is_refused(tmp_path, chain, words):
    with pytest.raises(ValueError, match=words):
        write_scripted_model(tmp_path / "bad.gguf", chain)
    assert not (tmp_path / "bad.gguf").exists()


def test_an_unsupported_architecture_is_refused(tmp_path):
    with pytest.raises(ValueError, match="arch must be one of"):
        write_scripted_model(tmp_path / "bad.gguf", arch="gemma")


@pytest.mark.parametrize("arch", ("qwen2", "deepseek2", "deepseek32", "deepseek4"))
def test_other_architectures_follow_the_script(models, arch):
    """deepseek4 on llama-cpp-python: xllamacpp's llama.cpp traps (SIGFPE) creating its KV cache
    (tests/llama_engine.py); the rest on xllamacpp."""
    path, llm = models(arch=arch, dtype="q8_0")
    assert gguf.GGUFReader(path).fields["general.architecture"].contents() == arch
    assert llm.backend == ("llama-cpp-python" if arch == "deepseek4" else "xllamacpp")
    for prompt, expected in ENDINGS.items():
        out, text = run(llm, prompt)
        assert text == expected and out[-1] == llm.eos
