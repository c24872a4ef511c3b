"""DeepSeek-V3.1's thinking switch through the server, and V3.2/V4 models left to the GGUF's jinja."""

from __future__ import annotations

import requests
from contract.api import chat, import_files, with_chat_template

from dslocal.ollama.modelfile import load_family
from dslocal.ollama.templates import GO, JINJA, expected_use, observed_use

DSLOCAL_V31 = load_family("deepseek-v3.1").template
# A chat template in the shape of DeepSeek-V3.1's (written for these tests): the generation prompt
# opens <think> when `thinking` (or Unsloth's `enable_thinking` alias) is set, else </think>; tool
# calls with a round trip.
V31_JINJA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜></think>' + (message['content'] or '') }}"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "{{ '<｜tool▁call▁begin｜>' + call['function']['name'] + '<｜tool▁sep｜>' }}{% endfor %}{% endif %}"
    "{{ '<｜end▁of▁sentence｜>' }}"
    "{% elif message['role'] == 'tool' %}{{ '<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}"
    "{% if thinking or enable_thinking %}{{ '<think>' }}{% else %}{{ '</think>' }}{% endif %}{% endif %}"
)


def show(url: str, name: str) -> dict:
    r = requests.post(f"{url}/api/show", json={"model": name})
    assert r.status_code == 200, r.text
    return r.json()


def test_v31_thinks_on_request_and_answers_directly_with_think_false(ollama, models, tmp_path):
    server = ollama()
    gguf = with_chat_template(models["single"][0], tmp_path / "v31.gguf", V31_JINJA)
    import_files(server.url, "v31", [gguf], template=DSLOCAL_V31)
    shown = show(server.url, "v31")
    assert shown["template"] == DSLOCAL_V31, "Ollama keeps dslocal's TEMPLATE over the GGUF's jinja"
    assert set(shown["capabilities"]) == {"completion", "tools", "thinking"}
    assert observed_use(shown).runs == GO == expected_use(DSLOCAL_V31, V31_JINJA).runs
    off = chat(server.url, "v31", "Why is the sky blue?", think=False)
    assert off.status_code == 200, off.text
    assert off.json()["done"] is True and "thinking" not in off.json()["message"], "the prompt ended in </think>"
    on = chat(server.url, "v31", "Why is the sky blue?", think=True)
    assert on.status_code == 200, on.text
    assert on.json()["message"].get("thinking"), "the prompt ended in <think>: the answer starts as reasoning"
    assert chat(server.url, "v31", "Why is the sky blue?").json()["message"] == on.json()["message"], \
        "think defaults on for a thinking model"


def test_v4_without_a_template_runs_the_ggufs_jinja(ollama, models, tmp_path):
    """The deepseek-v3.2 / deepseek-v4 families send no template: show reports the GGUF's jinja."""
    assert load_family("deepseek-v4").template == ""
    server = ollama()
    gguf = with_chat_template(models["single"][0], tmp_path / "v4.gguf", V31_JINJA)
    import_files(server.url, "v4", [gguf])
    shown = show(server.url, "v4")
    assert shown["template"] == V31_JINJA
    assert "thinking" in shown["capabilities"]
    assert observed_use(shown).runs == JINJA == expected_use(None, V31_JINJA).runs
    off = chat(server.url, "v4", "Why is the sky blue?", think=False)
    assert off.status_code == 200 and "thinking" not in off.json()["message"], "enable_thinking false reached the jinja"
