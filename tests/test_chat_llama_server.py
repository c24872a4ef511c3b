"""dslocal's OpenAI-compatible chat client against llama.cpp's own llama-server (xllamacpp), with real
inference of the scripted model: reasoning in ``reasoning_content``, inline, switched off per request,
the server's counters, a cancelled answer and a wrong base URL."""

from __future__ import annotations

import time

import pytest
from llama_server import THINKING_TEMPLATE, gbnf_literal, require_xllamacpp, start_llama_server

from dslocal.chat.backends.openai import OpenAIChat
from dslocal.chat.events import AnswerDelta, ChatError, ChatOptions, Done, Message, ThinkingDelta, ThinkingWasAnswer
from dslocal.chat.reasoning import collect
from dslocal.chat.rules import rules_for
from dslocal.chat.session import ChatSession
from dslocal.testing.ggufgen import write_scripted_model

require_xllamacpp()


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory):
    return write_scripted_model(tmp_path_factory.mktemp("chat-llama-server") / "scripted.gguf", arch="deepseek2",
                                dtype="q8_0")


@pytest.fixture(scope="module", params=["deepseek", "none"])
def server(request, scripted):
    """reasoning_format deepseek (reasoning_content) and none (inline tags): the client must give the same."""
    server = start_llama_server(scripted, alias="r1", n_ctx=512, chat_template=THINKING_TEMPLATE,
                                reasoning_format=request.param)
    yield server
    server.stop()


def chat(server, **options) -> list:
    backend = OpenAIChat(server.base_url + "/v1", "r1", dialect="llama-server", read_timeout=30)
    return list(backend.stream([Message("user", "Why is the sky blue?")], ChatOptions(**options)))


def texts(events: list) -> tuple[str, str]:
    return collect([e for e in events if isinstance(e, (ThinkingDelta, AnswerDelta, ThinkingWasAnswer))])


def test_reasoning_and_answer_whatever_the_servers_reasoning_format(server):
    events = chat(server)
    assert texts(events) == ("Hm.", "OK!")
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "stop" and not done.thinking_unterminated
    assert done.stats.source == "backend"
    assert done.stats.prompt_tokens > 3 and done.stats.answer_tokens >= 7
    assert done.stats.decode_seconds and done.stats.decode_seconds < 5, "llama-server's own timings"


def test_thinking_off_per_request(server):
    events = chat(server, think=False)
    assert texts(events) == ("", "OK!"), "chat_template_kwargs enable_thinking false: the prompt ended in </think>"


def test_a_token_limit_cuts_the_reasoning(server):
    events = chat(server, max_tokens=3)
    assert events[-1].reason == "length"
    thinking, answer = texts(events)
    assert answer == "" and thinking in ("H", "Hm", "Hm.")


def test_a_session_over_llama_server(server):
    backend = OpenAIChat(server.base_url + "/v1", "r1", dialect="llama-server", read_timeout=30)
    session = ChatSession(backend, rules_for("r1-distill-qwen-7b"))
    for question in ("First?", "Second?", "Third?"):
        assert texts(list(session.send(question))) == ("Hm.", "OK!")
    assert [m.content for m in session.messages if m.role == "assistant"] == ["OK!"] * 3


def test_a_cancelled_answer_leaves_the_server_serving(scripted):
    """A long reply (the grammar forces 3,000 'a's) is closed after the first pieces; the next request answers."""
    server = start_llama_server(scripted, alias="r1", n_ctx=4096, chat_template=THINKING_TEMPLATE)
    try:
        backend = OpenAIChat(server.base_url + "/v1", "r1", dialect="llama-server", read_timeout=30)
        stream = backend.stream([Message("user", "Go.")], ChatOptions(think=False, extra={"grammar": gbnf_literal("a" * 3000)}))
        first = [next(stream) for _ in range(3)]
        stream.close()
        assert all(isinstance(e, (AnswerDelta, ThinkingDelta)) for e in first)
        started = time.monotonic()
        assert texts(chat(server)) == ("Hm.", "OK!")
        assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_a_wrong_base_url_says_so(server):
    backend = OpenAIChat(server.base_url + "/api", "r1", dialect="llama-server", read_timeout=30)
    (error,) = list(backend.stream([Message("user", "hi")], ChatOptions()))
    assert isinstance(error, ChatError) and error.kind == "refused"
    assert "no chat completions endpoint" in error.message and "/v1" in error.hint
