"""Modelfiles: golden renderings per family, and quoting that round-trips through Ollama's rules."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dslocal.errors import InputError
from dslocal.ollama.modelfile import STOP_TOKENS, load_family, parse, quote, render

GOLDEN = Path(__file__).parent / "golden"
FAMILIES = ("deepseek-r1", "deepseek-r1-0528", "deepseek-v3", "deepseek-v3.1", "deepseek-v3.2", "deepseek-v4",
            "distill-qwen", "distill-llama", "qwen3")
NATIVE = ("deepseek-v3.2", "deepseek-v4")  # no TEMPLATE: the GGUF's own jinja runs (DSML tool calls)


@pytest.mark.parametrize("key", FAMILIES)
def test_golden_modelfiles(key):
    text = render(load_family(key), from_="./model.gguf", num_ctx=8192, num_thread=16,
                  num_gpu=7 if key == "deepseek-r1" else None)
    assert text == (GOLDEN / f"modelfile-{key}.txt").read_text(encoding="utf-8")
    parsed = parse(text)
    params = parsed.parameter_map()
    assert params["stop"] == list(STOP_TOKENS)
    assert params["num_ctx"] == 8192 and params["num_thread"] == 16
    assert ("num_gpu" in params) == (key == "deepseek-r1")
    if key in NATIVE:
        assert parsed.template is None and "TEMPLATE" not in text
        return
    assert "<｜User｜>" in parsed.template and "<｜Assistant｜>" in parsed.template
    thinking = "range $i, $_ := .Messages" in parsed.template and ".Thinking" in parsed.template
    assert thinking == (key != "deepseek-v3"), "thinking-capable exactly when the model reasons"
    # A tool round trip, so Ollama keeps this TEMPLATE over the GGUF's jinja (images.go
    # shouldPreferChatTemplate; tests/contract/test_chat.py runs it through the server).
    assert "range .Tools" in parsed.template and ".ToolCalls" in parsed.template
    assert 'eq .Role "tool"' in parsed.template


def test_sampling_follows_the_family():
    r1 = parse(render(load_family("deepseek-r1"), from_="x", num_ctx=4096, num_thread=4)).parameter_map()
    v3 = parse(render(load_family("deepseek-v3"), from_="x", num_ctx=4096, num_thread=4)).parameter_map()
    assert (r1["temperature"], r1["top_p"]) == (0.6, 0.95)
    assert v3["temperature"] == 0.3 and v3["min_p"] == 0.01


ALPHABET = ['a', 'Z', ' ', '"', '\n', '#', '\\', '｜', '▁', '}', '{', 't', '\t', "'"]


def test_quoting_round_trips_for_random_system_prompts():
    rng = random.Random(3)
    checked = refused = 0
    for _ in range(3000):
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 24)))
        try:
            quoted = quote(text)
        except InputError:
            assert '"""' in text or text.endswith('"')
            refused += 1
            continue
        modelfile = f"FROM base\nSYSTEM {quoted}\nPARAMETER num_ctx 2048\n"
        parsed = parse(modelfile)
        expected = text.strip() if quoted == text else text
        assert parsed.system == expected, (text, quoted)
        assert parsed.parameter_map() == {"num_ctx": 2048}
        checked += 1
    assert checked > 2000 and refused > 0


@pytest.mark.parametrize("value, form", [
    ("plain words", "plain words"),
    (" leading space", '" leading space"'),
    ("two\nlines", '"two\nlines"'),
    ('say "hi"\nplease', '"""say "hi"\nplease"""'),
    ('"starts quoted', '"""\"starts quoted"""'),
])
def test_quote_forms(value, form):
    assert quote(value) == form
    assert parse(f"FROM m\nSYSTEM {form}\n").system == value


def test_unquotable_values_are_refused_with_a_hint():
    for bad in ('line one\nends with a quote"', 'has """ inside\n'):
        with pytest.raises(InputError) as info:
            quote(bad)
        assert "escape" in info.value.hint


def test_parser_errors():
    with pytest.raises(InputError, match="no FROM"):
        parse("PARAMETER num_ctx 1\n")
    with pytest.raises(InputError, match="never closed"):
        parse('FROM x\nSYSTEM """open\n')
    with pytest.raises(InputError, match="unknown Modelfile instruction"):
        parse("FROM x\nBOGUS 1\n")
    assert parse("# comment\nfrom x\nparameter STOP a\n").parameters == [("STOP", "a")]


def test_cli_modelfile_uses_the_plan(cli, dslocal_home, tmp_path):
    out = tmp_path / "Modelfile"
    result = cli("modelfile", "r1-671b-iq1s", "--hw", "a100-80gb-256gb", "--ollama-version", "0.5.7",
                 "--system", 'Answer in "one" line.\nNo lists.', "-o", str(out))
    assert result.returncode == 0, result.stderr
    parsed = parse(out.read_text(encoding="utf-8"))
    plan = json.loads(cli("plan", "r1-671b-iq1s", "--hw", "a100-80gb-256gb", "--ollama-version", "0.5.7", "--json").stdout)
    params = parsed.parameter_map()
    assert params["num_gpu"] == plan["data"]["num_gpu"] and params["num_ctx"] == plan["data"]["num_ctx"]
    assert parsed.system == 'Answer in "one" line.\nNo lists.'
    assert parsed.from_ == "./DeepSeek-R1-UD-IQ1_S.gguf", "Ollama 0.5.7 imports no split sets: the merged file"
    assert params["min_p"] == 0.05
    new = cli("modelfile", "r1-distill-qwen-7b", "--hw", "rtx4090-64gb")
    assert "num_gpu" not in new.stdout, "Ollama >= 0.30: num_gpu stays unset"


def test_a_family_without_a_template_writes_none_and_sends_none():
    """V3.2 and V4: no TEMPLATE in the Modelfile, no template field in /api/create, no template layer."""
    from dslocal.ollama.templates import JINJA, expected_use
    from dslocal.pipeline import create

    for key in NATIVE:
        family = load_family(key)
        assert family.template == ""
        assert expected_use(family.template or None, "{% if thinking %}<think>{% endif %}</think>").runs == JINJA
    v31 = load_family("deepseek-v3.1")
    assert v31.template.startswith("{{") and (v31.temperature, v31.top_p) == (0.6, 0.95)
    v4 = load_family("deepseek-v4")
    assert (v4.temperature, v4.top_p) == (1.0, 1.0)

    sent = {}

    class Client:
        url = "http://x"

        def create(self, name, **kw):
            sent.update(kw)

    class Store:
        def blob_path(self, digest):
            return Path("/nonexistent") / digest

        def model_layer(self, name):
            return "sha256-model"

        def referenced(self):
            return {"sha256-abc"}

    class Resolved:
        template = "deepseek-v4"

    create.create_via_api(Client(), Store(), "v4:latest", "sha256-abc", 1, Resolved(), {"num_ctx": 4096},
                          shared_store=True, server_rewrites=False, notify=lambda _: None, progress=lambda _: None)
    assert sent["template"] is None and sent["parameters"] == {"num_ctx": 4096}
