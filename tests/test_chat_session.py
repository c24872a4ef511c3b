"""DeepSeek's usage rules, and the session: what is sent, what is kept (real SQLite), cancel, errors, a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deepseek_api_double import DeepSeekDouble

from dslocal.chat.backends.openai import OpenAIChat
from dslocal.chat.events import AnswerDelta, ChatError, ChatOptions, Done, Message
from dslocal.chat.history import HistoryStore, history_path
from dslocal.chat.rules import apply_system_rule, family_rules, resolve_think, rules_for
from dslocal.chat.session import ChatSession
from dslocal.errors import UsageError


# -- rules
@pytest.mark.parametrize(("model", "family", "thinking", "temperature"), [
    ("r1-671b-ud-iq1_s", "deepseek-r1", "always", 0.6),
    ("deepseek-r1:7b", "distill-qwen", "always", 0.6),  # Ollama's library name
    ("my-r1-distill-llama-8b:q4", "distill-llama", "always", 0.6),  # by name
    ("v3-0324-ud-q2_k_xl", "deepseek-v3", "none", 0.3),
    ("deepseek-v3.1-terminus:latest", "deepseek-v3.1", "hybrid", 0.6),
    ("v4-flash-ud-q2_k_xl", "deepseek-v4", "levels", 1.0),
])
def test_rules_come_from_the_catalog_or_the_name(model, family, thinking, temperature):
    rules = rules_for(model)
    assert (rules.family, rules.thinking) == (family, thinking)
    assert rules.temperature == temperature


def test_ollamas_capabilities_have_the_last_word_on_thinking():
    assert rules_for("r1-671b-ud-iq1_s", capabilities=["completion"]).thinking == "none"
    assert rules_for("r1-671b-ud-iq1_s", capabilities=["completion", "thinking"]).thinking == "always"


def test_thinking_switches_and_levels():
    r1, v31, v3, v4 = (family_rules(f) for f in ("deepseek-r1", "deepseek-v3.1", "deepseek-v3", "deepseek-v4"))
    assert resolve_think(r1, None) == (True, [])
    assert resolve_think(v3, None) == (None, [])
    assert resolve_think(v31, False) == (False, [])
    think, notes = resolve_think(r1, False)
    assert think is False and "trained to reason" in notes[0]
    assert resolve_think(v4, None)[0] == "high"
    assert resolve_think(v4, True)[0] == "high"
    think, notes = resolve_think(v4, "max", num_ctx=8192)
    assert think == "max" and "384K" in notes[0]
    assert resolve_think(v4, "max", num_ctx=400_000) == ("max", [])
    assert resolve_think(v4, "low")[0] == "high", "V4 has no low level: the nearest is sent"
    assert resolve_think(v31, "high")[0] is True, "V3.1 has no levels: thinking is simply on"
    with pytest.raises(UsageError, match="does not support thinking"):
        resolve_think(v3, True)
    with pytest.raises(UsageError, match="unknown thinking level"):
        resolve_think(v31, "loud")


def test_r1_folds_the_system_prompt_into_the_first_user_turn():
    messages = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello"),
                Message("user", "Again")]
    folded = apply_system_rule(family_rules("deepseek-r1"), messages)
    assert [(m.role, m.content) for m in folded] == [("user", "Be brief.\n\nHi"), ("assistant", "Hello"),
                                                      ("user", "Again")]
    assert apply_system_rule(family_rules("deepseek-r1-0528"), messages) == messages


# -- the session over a real server (the OpenAI-compatible double) and a real history file
@pytest.fixture
def server():
    with DeepSeekDouble(generic=True, api_key=None) as double:
        yield double


def make_session(server: DeepSeekDouble, tmp_path: Path, **kw) -> tuple[ChatSession, HistoryStore]:
    store = HistoryStore(history_path(tmp_path))
    backend = OpenAIChat(server.url, "r1-distill-qwen-7b", dialect="llama-server", read_timeout=10)
    return ChatSession(backend, rules_for("r1-distill-qwen-7b"), store=store, save_every=0.0, **kw), store


def test_what_is_sent_and_what_is_kept(server, tmp_path):
    session, store = make_session(server, tmp_path, system="Be brief.", options=ChatOptions(temperature=0.2))
    events = list(session.send("Why is the sky blue?"))
    assert isinstance(events[-1], Done)
    sent = server.last.body
    assert sent["messages"] == [{"role": "user", "content": "Be brief.\n\nWhy is the sky blue?"}], "R1: no system turn"
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.95), "the user's temperature, the card's top_p"
    assert sent["chat_template_kwargs"]["enable_thinking"] is True
    list(session.send("And at sunset?"))
    assert server.last.body["messages"][1] == {"role": "assistant", "content": "OK!"}, "no reasoning sent back"
    conversation = store.get(session.conversation_id)
    assert [(m.role, m.content, m.thinking, m.partial) for m in conversation.messages] == [
        ("user", "Why is the sky blue?", "", False), ("assistant", "OK!", "Hm.", False),
        ("user", "And at sunset?", "", False), ("assistant", "OK!", "Hm.", False)]
    assert conversation.messages[1].stats is not None and conversation.messages[1].stats.answer_tokens


def test_a_cancelled_answer_is_kept_marked(server, tmp_path):
    server.script(answer="one two three four five six", delay=0.05)
    session, store = make_session(server, tmp_path)
    stream = session.send("Count.")
    seen = ""
    for event in stream:
        seen += event.text if isinstance(event, AnswerDelta) else ""
        if "two" in seen:
            break
    stream.close()
    deadline = time.monotonic() + 5
    while not server.disconnects and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.disconnects, "closing the stream closed the connection"
    kept = store.get(session.conversation_id).messages[-1]
    assert kept.role == "assistant" and kept.partial and kept.content.startswith("one")
    assert session.messages[-1] == kept


def test_an_error_mid_answer_keeps_what_came(server, tmp_path):
    server.script(answer="one two three four", drop_after=4)
    session, store = make_session(server, tmp_path)
    events = list(session.send("Count."))
    assert isinstance(events[-1], ChatError) and events[-1].kind == "connection"
    kept = store.get(session.conversation_id).messages[-1]
    assert kept.partial and kept.thinking == "Hm." and kept.content
    server.script(answer="OK!")
    assert isinstance(list(session.retry())[-1], Done)
    messages = store.get(session.conversation_id).messages
    assert [(m.role, m.partial) for m in messages] == [("user", False), ("assistant", True), ("assistant", False)]
    assert [m.wire() for m in session.messages if not m.partial] == [
        {"role": "user", "content": "Count."}, {"role": "assistant", "content": "OK!"}]


def test_a_crash_mid_answer_leaves_the_partial_answer_in_the_history(server, tmp_path):
    """``dslocal ask --save`` is SIGKILLed while the answer streams: the history file is intact and holds
    the answer as far as it had come, marked."""
    server.script(answer=" ".join(f"word{i}" for i in range(60)), delay=0.05)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSLOCAL_", "OLLAMA_"))}
    env["DSLOCAL_HOME"] = str(home)
    proc = subprocess.Popen([sys.executable, "-m", "dslocal", "ask", "r1-distill-qwen-7b", "Count.", "--save",
                             "--backend", "openai", "--url", server.url], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(3.0)  # about 60 of 120 deltas; saved every half second
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with HistoryStore(history_path(home / "data")) as store:
        assert store.integrity_check() == "ok"
        (summary,) = store.list()
        messages = store.get(summary.id).messages
    assert [m.role for m in messages] == ["user", "assistant"]
    kept = messages[-1]
    assert kept.partial and kept.thinking == "Hm." and kept.content.startswith("word0 word1")
    assert "word59" not in kept.content
