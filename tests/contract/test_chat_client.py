"""dslocal's chat client (dslocal.chat) against the server, with real inference of a scripted model.

The model (``write_scripted_model``) answers ``<think>\\nHm.</think>OK!`` after ``<｜Assistant｜>`` and
``OK!`` after ``</think>``, so every scenario knows what the server must pass on: reasoning split by the
server (``message.thinking``), reasoning inline in the content (a template without ``.Thinking``), V3.1's
switch by the assistant prefix, and the errors."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from contract.api import import_files

from dslocal.chat.backends.ollama import OllamaChat
from dslocal.chat.events import AnswerDelta, ChatError, ChatOptions, Done, Message, ThinkingDelta, ThinkingWasAnswer
from dslocal.chat.reasoning import collect
from dslocal.chat.rules import rules_for
from dslocal.chat.session import ChatSession
from dslocal.ollama.client import OllamaClient
from dslocal.ollama.modelfile import load_family
from dslocal.testing.ggufgen import ModelSpec, write_model, write_scripted_model

DSLOCAL_R1 = load_family("deepseek-r1").template
DSLOCAL_V31 = load_family("deepseek-v3.1").template
PLAIN = "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"  # an old template: no .Thinking


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_model(tmp_path_factory.mktemp("scripted") / "scripted.gguf", arch="deepseek2")


def ask(server, name: str, think=None, text: str = "Why is the sky blue?", **options) -> list:
    backend = OllamaChat(OllamaClient(server.url), name)
    return list(backend.stream([Message("user", text)], ChatOptions(think=think, **options)))


def split(events: list) -> tuple[str, str]:
    return collect([e for e in events if isinstance(e, (ThinkingDelta, AnswerDelta, ThinkingWasAnswer))])


def test_reasoning_split_by_the_server_and_the_servers_counters(ollama, scripted):
    server = ollama()
    import_files(server.url, "r1", [scripted], template=DSLOCAL_R1)
    events = ask(server, "r1")
    assert split(events) == ("Hm.", "OK!")
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "stop"
    assert done.stats.source == "backend"
    assert done.stats.answer_tokens >= 7 and done.stats.prompt_tokens > 5
    assert done.stats.decode_tps and done.stats.first_token_seconds is not None
    assert done.stats.thinking_seconds is not None and not done.thinking_unterminated
    assert all(not isinstance(e, ChatError) for e in events)


def test_think_false_on_r1_prefills_an_empty_block_and_no_tag_reaches_the_answer(ollama, scripted):
    """The template pre-fills ``<think>\\n\\n</think>\\n\\n``; this model reasons anyway, so the server's
    content is ``Hm.</think>OK!`` (no opening tag): the client files the text before ``</think>`` as reasoning."""
    server = ollama()
    import_files(server.url, "r1", [scripted], template=DSLOCAL_R1)
    events = ask(server, "r1", think=False)
    assert split(events) == ("Hm.", "OK!")
    assert any(isinstance(e, ThinkingWasAnswer) for e in events)
    assert "</think>" not in "".join(e.text for e in events if isinstance(e, AnswerDelta) and e.text != "Hm.")


def test_inline_reasoning_from_a_template_without_thinking(ollama, scripted):
    """An old template: the server marks no thinking capability and passes ``<think>`` through in the content."""
    server = ollama()
    import_files(server.url, "old", [scripted], template=PLAIN)
    events = ask(server, "old")
    assert split(events) == ("Hm.", "OK!")
    assert not any(isinstance(e, ChatError) for e in events)
    assert isinstance(events[-1], Done)


def test_v31_thinking_is_chosen_by_the_assistant_prefix(ollama, scripted):
    server = ollama()
    import_files(server.url, "v31", [scripted], template=DSLOCAL_V31)
    assert split(ask(server, "v31", think=True)) == ("Hm.", "OK!"), "the prompt ended in <think>"
    off = ask(server, "v31", think=False)
    assert split(off) == ("", "OK!"), "the prompt ended in </think>: the answer at once"
    assert not any(isinstance(e, ThinkingDelta) for e in off)


def test_a_session_sends_history_without_reasoning(ollama, scripted):
    server = ollama()
    import_files(server.url, "v31", [scripted], template=DSLOCAL_V31)
    backend = OllamaChat(OllamaClient(server.url), "v31")
    session = ChatSession(backend, rules_for("deepseek-v3.1", catalog_id="v3.1-ud-q2_k_xl"))
    list(session.send("First?"))
    assert session.messages[-1] == Message("assistant", "OK!", "Hm.", stats=session.last_stats, model="v31")
    sent, options, _ = session.request()
    assert [m.wire() for m in sent] == [{"role": "user", "content": "First?"}, {"role": "assistant", "content": "OK!"}]
    assert options.temperature == 0.6 and options.top_p == 0.95, "the catalog's sampling for V3.1"
    assert options.think is True
    second = list(session.send("Second?"))
    assert split(second) == ("Hm.", "OK!")


def test_missing_model_and_thinking_on_a_model_without_it(ollama, scripted):
    server = ollama()
    import_files(server.url, "plain", [scripted], template="{{ .Prompt }}")
    (error,) = ask(server, "ghost")
    assert isinstance(error, ChatError) and error.kind == "not_found" and "ghost" in error.message
    (error,) = ask(server, "plain", think=True)
    assert isinstance(error, ChatError) and error.kind == "no_thinking"
    assert "/think off" in error.hint


def test_no_server(tmp_path):
    backend = OllamaChat(OllamaClient("127.0.0.1:9"), "r1")
    (error,) = list(backend.stream([Message("user", "hi")], ChatOptions()))
    assert error.kind == "connection" and "dslocal ollama start" in (error.hint or "")


def test_the_server_going_away_mid_answer_keeps_the_partial_answer(ollama, tmp_path):
    """A random model told to write 2,000 tokens; the server process is killed after the first piece."""
    server = ollama()
    model = write_model(tmp_path / "long.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0")
    import_files(server.url, "long", model, template=PLAIN)
    backend = OllamaChat(OllamaClient(server.url), "long")
    session = ChatSession(backend, rules_for("long").without_thinking(), options=ChatOptions(max_tokens=2000))
    events = []
    for event in session.send("Write a long story."):
        events.append(event)
        if len(events) == 1:
            threading.Thread(target=server.proc.send_signal, args=(signal.SIGKILL,)).start()
    assert isinstance(events[-1], ChatError) and events[-1].kind == "connection", events[-1]
    assert "partial answer is kept" in events[-1].hint
    kept = session.messages[-1]
    assert kept.role == "assistant" and kept.partial and (kept.content or kept.thinking)


# A chat template in the shape of DeepSeek-V4's (written for these tests): thinking off closes the block,
# thinking on opens it, and the level reaches the template as ``reasoning_effort`` ("max" here leaves the
# prompt one token further into the scripted reasoning, so the answer shows which level arrived).
V4_JINJA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜></think>' + message['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '</think>' }}"
    "{% else %}{{ '<think>' }}{% if reasoning_effort is defined and reasoning_effort == 'max' %}{{ '\\nH' }}{% endif %}"
    "{% endif %}{% endif %}"
)


def test_v4_levels_reach_the_ggufs_template(ollama, scripted, tmp_path):
    """No TEMPLATE (the deepseek-v4 family): the server applies the GGUF's jinja with
    ``chat_template_kwargs`` {enable_thinking, reasoning_effort} (llm/llama_server.go)."""
    from contract.api import with_chat_template

    server = ollama()
    gguf = with_chat_template(scripted, tmp_path / "v4.gguf", V4_JINJA)
    import_files(server.url, "v4", [gguf])
    session = ChatSession(OllamaChat(OllamaClient(server.url), "v4"), rules_for("v4-flash-ud-q2_k_xl"))
    sent, options, _ = session.request()
    assert options.think == "high", "V4 thinks at 'high' unless told otherwise"
    assert split(list(session.send("Why?"))) == ("Hm.", "OK!")
    session.set_options(think="max")
    assert split(list(session.send("Why?"))) == ("m.", "OK!"), "reasoning_effort 'max' reached the template"
    session.set_options(think=False)
    assert split(list(session.send("Why?"))) == ("", "OK!")
