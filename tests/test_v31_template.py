"""DeepSeek-V3.1's hybrid thinking through dslocal's TEMPLATE, rendered by Go's own text/template.

The format is V3.1's model card: ``<｜Assistant｜><think>`` starts a thinking answer,
``<｜Assistant｜></think>`` a direct one, and earlier assistant turns keep only ``</think>``
and their answer (the reasoning is dropped). Tool calls and results are V3.1's own
(name, ``<｜tool▁sep｜>``, JSON arguments; ``<｜tool▁output▁begin｜>``), as Ollama's
``deepseek3.1`` renderer writes them.
"""

from __future__ import annotations

import gotemplate
import pytest

from dslocal.ollama.modelfile import load_family
from dslocal.ollama.templates import GO, expected_use, go_capabilities, go_round_trip

TEMPLATE = load_family("deepseek-v3.1").template
A, U, EOS = "<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>"
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!", "thinking": "The user greets me."},
    {"role": "user", "content": "2+2?"},
]


def render(messages, think, *, tools=None, is_think_set=True):
    return gotemplate.render(TEMPLATE, {"messages": messages, "tools": tools, "think": think, "think_level": "",
                                        "is_think_set": is_think_set})


@pytest.mark.parametrize("think, prefix", [(True, "<think>"), (False, "</think>")])
def test_the_assistant_prefix_is_the_thinking_switch(think, prefix):
    prompt = render(HISTORY, think)
    assert prompt == f"Be brief.{U}Hi{A}</think>Hello!{EOS}{U}2+2?{A}{prefix}"
    assert "The user greets me." not in prompt, "earlier reasoning is dropped, </think> kept"


def test_think_unset_answers_directly_as_ollamas_renderer_does():
    assert render(HISTORY[1:2], False, is_think_set=False) == f"{U}Hi{A}</think>"


def test_ollama_sees_thinking_and_tools_and_keeps_the_template():
    facts = gotemplate.inspect(TEMPLATE)
    assert (facts["thinking_open"], facts["thinking_close"]) == ("<think>", "</think>")
    assert facts["tool_round_trip"]
    assert go_capabilities(TEMPLATE) == {"thinking", "tools"} and go_round_trip(TEMPLATE)
    unsloth_like = "{% if tools %}{% endif %}{% if message['role'] == 'tool' %}{% endif %}tool_calls<think></think>"
    assert expected_use(TEMPLATE, unsloth_like).runs == GO


def test_tool_calls_and_results_in_v31s_format():
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                               "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                          "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"},
    ]
    prompt = render(messages, False, tools=tools)
    assert prompt.startswith("\n\n## Tools\nYou have access to the following tools:\n\n### get_weather\n")
    assert "{{additional_tool_calls}}" in prompt
    assert prompt.endswith(
        f"{U}Weather in Paris?{A}</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>"
        f'{{"city":"Paris"}}<｜tool▁call▁end｜><｜tool▁calls▁end｜>{EOS}<｜tool▁output▁begin｜>sunny<｜tool▁output▁end｜>'
    ), "after a tool result the model goes on without a new assistant prefix"
    final = [*messages, {"role": "assistant", "content": "It is sunny."}]
    assert render(final, False, tools=tools).endswith("<｜tool▁output▁end｜>It is sunny.")


def test_a_continued_answer_keeps_its_reasoning_when_thinking():
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hel", "thinking": "greet"}]
    assert render(messages, True) == f"{U}Hi{A}<think>greet</think>Hel"
    assert render(messages, False) == f"{U}Hi{A}</think>Hel"
