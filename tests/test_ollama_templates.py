"""dslocal's reading of which template Ollama runs (server/images.go shouldPreferChatTemplate)."""

from __future__ import annotations

from dslocal.ollama.modelfile import load_family
from dslocal.ollama.templates import GO, JINJA, expected_use, go_capabilities, go_round_trip, jinja_capabilities

R1_LIKE = ("{% for message in messages %}{% if message['role'] == 'tool' %}x{% endif %}"
           "{% if message['tool_calls'] %}y{% endif %}{% set c = content.split('</think>')[-1] %}{% endfor %}")
V3_LIKE = "{% for message in messages %}{% if message['role'] == 'tool' %}{{ tools }}{% endif %}{{ tool_calls }}{% endfor %}"


def test_every_family_template_is_kept_over_deepseek_jinja():
    for key in ("deepseek-r1", "deepseek-r1-0528", "distill-qwen", "distill-llama", "qwen3", "deepseek-v3"):
        template = load_family(key).template
        assert go_round_trip(template), key
        for jinja in (V3_LIKE,) if key == "deepseek-v3" else (R1_LIKE, V3_LIKE):
            assert expected_use(template, jinja).runs == GO, (key, jinja)


def test_the_rules():
    thinking_only = "{{ range .Messages }}{{ .Thinking }}{{ end }}"
    assert go_capabilities(thinking_only) == {"thinking"} and not go_round_trip(thinking_only)
    assert jinja_capabilities(R1_LIKE) == {"tools", "thinking"}
    assert expected_use(thinking_only, R1_LIKE).runs == JINJA  # more capabilities
    assert expected_use(thinking_only, "").runs == GO
    assert expected_use(None, R1_LIKE).runs == JINJA
    assert expected_use(thinking_only, R1_LIKE, go_template_env="1").runs == GO
    assert expected_use(thinking_only, R1_LIKE, go_template_env="false").runs == JINJA
    tools_no_trip = "{{ range .Messages }}{{ .Thinking }}{{ end }}{{ .Tools }}"
    assert expected_use(tools_no_trip, R1_LIKE).runs == JINJA  # same capabilities, only the jinja round-trips
