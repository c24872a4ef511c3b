"""The chat screen: a fake backend (its events, optionally slow) behind the real session, rules and history
store; what the screen shows, what the store keeps, and the keys (Ctrl+T, Escape, the model switcher, the
history sidebar)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from dslocal.chat.connect import Target
from dslocal.chat.events import (
    AnswerDelta,
    ChatOptions,
    Done,
    Message,
    Stats,
    ThinkingDelta,
    ThinkingWasAnswer,
)
from dslocal.chat.history import HistoryStore
from dslocal.chat.rules import parse_think, rules_for
from dslocal.errors import UsageError
from dslocal.chat.session import ChatSession
from dslocal.tui.app import make_app
from dslocal.tui.screens.chat import (
    ChatScreen,
    choose_model,
    options_from_settings,
)
from dslocal.tui.widgets.chat_answer import AnswerView, PromptArea, thinking_title
from tui.conftest import SIZES, Recorder, fake_services

MODELS = [{"name": "r1-distill-qwen-7b:latest", "size": 4_700_000_000},
          {"name": "r1-distill-qwen-14b:latest", "size": 9_000_000_000}]
THINKING = ["The user asks ", "about the sky. ", "Rayleigh scattering: ", "short wavelengths scatter more."]
ANSWER = ["## Why the sky is blue\n\n", "Air scatters **blue** light ", "more than red (Rayleigh).\n\n",
          "- sunsets are red\n", "- the Moon's sky is black\n"]
STATS = Stats(prompt_tokens=12, answer_tokens=40, decode_seconds=2.0, thinking_seconds=1.5, first_token_seconds=0.25,
              source="backend")


class FakeBackend:
    """Streams a fixed answer (reasoning first); ``delay`` between events; ``endless`` keeps answering
    (slowly) until the stream is closed."""

    name = "fake"

    def __init__(self, model: str, *, delay: float = 0.0, endless: bool = False, thinking: Sequence[str] = THINKING,
                 answer: Sequence[str] = ANSWER, stats: Stats = STATS, gate: threading.Event | None = None) -> None:
        self.model = model
        self.gate = gate  # the answer waits for it (after the reasoning)
        self.delay = delay
        self.endless = endless
        self.thinking = list(thinking)
        self.answer = list(answer)
        self.stats = stats
        self.requests: list[list[Message]] = []
        self.closed = threading.Event()
        self.streaming = threading.Event()

    def stream(self, messages: Sequence[Message], options: ChatOptions) -> Iterator:
        self.requests.append(list(messages))
        try:
            for piece in self.thinking:
                time.sleep(self.delay)
                yield ThinkingDelta(piece)
            if self.gate is not None:
                self.gate.wait(10)
            for piece in self.answer:
                time.sleep(self.delay)
                self.streaming.set()
                yield AnswerDelta(piece)
            n = 0
            while self.endless and n < 2000:
                time.sleep(self.delay or 0.01)
                n += 1
                yield AnswerDelta(f"word{n} ")
            yield Done(self.stats)
        finally:
            self.closed.set()


def target(backend: FakeBackend) -> Target:
    return Target(backend, rules_for("r1-distill-qwen-7b"), backend.model)


def chat_services(tmp_path: Path, recorder: Recorder, *, backends: dict[str, FakeBackend] | None = None,
                  store: HistoryStore | None = None, models=MODELS, **kw):
    backends = backends if backends is not None else {}

    def chat(name: str) -> Target:
        recorder.add("chat", name)
        if name not in backends:
            backends[name] = FakeBackend(name)
        return target(backends[name])

    return fake_services(tmp_path, recorder, chat=chat, history=lambda: store, ollama_models=lambda: list(models),
                         **kw)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(tmp_path / "h.sqlite3") as s:
        yield s


async def until(pilot, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the screen")
        await pilot.pause(0.02)


async def ready(pilot) -> ChatScreen:
    """The chat screen with a session (models listed, the model connected)."""
    await until(pilot, lambda: isinstance(pilot.app.screen, ChatScreen) and pilot.app.screen.session is not None)
    return pilot.app.screen


async def ask(pilot, text: str) -> None:
    screen = pilot.app.screen
    screen.query_one(PromptArea).insert(text)
    await pilot.press("enter")


async def answered(pilot) -> None:
    screen = pilot.app.screen
    await until(pilot, lambda: screen.stream is None and screen.query(AnswerView)
                and not screen.query(AnswerView).last().streaming)
    await pilot.pause()


def last_view(screen: ChatScreen) -> AnswerView:
    return screen.query(AnswerView).last()


def text_of(widget) -> str:
    return str(widget.render())


# -- pure helpers


def test_helpers():
    assert choose_model(None, ["a:latest", "b:latest"]) == "a:latest"
    assert choose_model("b", ["a:latest", "b:latest"]) == "b:latest"
    assert choose_model("c:7b", ["a:latest"]) == "c:7b"
    assert choose_model(None, []) is None
    assert parse_think("off") is False and parse_think("ON") is True and parse_think("high") == "high"
    with pytest.raises(UsageError):
        parse_think("lots")
    assert options_from_settings({"options": {"temperature": 0.3, "stop": ["x"], "bogus": 1, "think": None}}) == \
        ChatOptions(temperature=0.3, stop=("x",))
    assert thinking_title(2.04, streaming=False) == "Thought for 2.0 s"
    assert thinking_title(None, streaming=True) == "Thinking…"


# -- the screen


async def test_answer_streams_with_folded_reasoning_and_ctrl_t_unfolds(tmp_path, recorder, store):
    backends: dict[str, FakeBackend] = {}
    app = make_app(chat_services(tmp_path, recorder, backends=backends, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        assert recorder.calls[0] == ("chat", ("r1-distill-qwen-7b:latest",))  # Ollama's first model
        assert app.state.model_name == "r1-distill-qwen-7b:latest"
        await ask(pilot, "Why is the sky blue?")
        await answered(pilot)
        view = last_view(screen)
        assert view.body.source == "".join(ANSWER)
        assert view.collapsible.collapsed and view.collapsible.display
        assert view.collapsible.title == "Thought for 1.5 s"
        foot = text_of(view.query_one(".answer-foot"))
        assert "20.0 tok/s" in foot and "40 tokens" in foot and "first token 0.25 s" in foot
        assert not view.query_one(".thinking-tail").display
        # Ctrl+T: the reasoning in full, and new answers start unfolded too
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert not view.collapsible.collapsed
        assert view.query_one(".thinking-text").source == "".join(THINKING)
        assert app.state.extra["chat_show_thinking"] is True
        await pilot.press("ctrl+t")
        await pilot.pause()
        assert view.collapsible.collapsed
        # the store has the turn; the reasoning is kept, never sent back
        saved = store.latest()
        assert saved is not None and saved.title == "Why is the sky blue?"
        user, assistant = saved.messages
        assert (user.role, assistant.role) == ("user", "assistant")
        assert assistant.content == "".join(ANSWER) and "Rayleigh" in assistant.thinking and not assistant.partial
        await ask(pilot, "And at night?")
        await answered(pilot)
        sent = backends["r1-distill-qwen-7b:latest"].requests[-1]
        assert [m.role for m in sent] == ["user", "assistant", "user"]


async def test_reasoning_tail_while_it_streams_then_thought_for(tmp_path, recorder, store):
    gate = threading.Event()
    backends = {"r1-distill-qwen-7b:latest": FakeBackend("r1-distill-qwen-7b:latest", delay=0.02, gate=gate,
                                                         stats=Stats(answer_tokens=9))}
    app = make_app(chat_services(tmp_path, recorder, backends=backends, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "Why?")
        await until(pilot, lambda: screen.query(AnswerView) and "about the sky" in last_view(screen).thinking)
        view = last_view(screen)
        assert view.collapsible.title.startswith("Thinking…")
        assert view.query_one(".thinking-tail").display
        assert "about the sky" in text_of(view.query_one(".thinking-tail"))
        gate.set()
        await answered(pilot)
        assert view.collapsible.title.startswith("Thought for ")  # measured here: the backend gave no time
        assert not view.query_one(".thinking-tail").display


async def test_escape_stops_mid_stream_and_the_partial_answer_is_saved(tmp_path, recorder, store):
    backend = FakeBackend("r1-distill-qwen-7b:latest", delay=0.01, endless=True)
    app = make_app(chat_services(tmp_path, recorder, backends={backend.model: backend}, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "Count forever")
        await until(pilot, lambda: screen.query(AnswerView) and "word3 " in last_view(screen).body.source)
        assert screen.check_action("cancel", ())  # the footer offers Esc while an answer streams
        await pilot.press("escape")
        await answered(pilot)
        assert not screen.check_action("cancel", ())
        assert backend.closed.is_set()  # the backend's stream was closed, not left running
        view = last_view(screen)
        shown = view.body.source
        assert "word3 " in shown and "word1999" not in shown
        assert "stopped; the partial answer is kept" in text_of(view.query_one(".answer-foot"))
        saved = store.latest().messages[-1]
        assert saved.role == "assistant" and saved.partial
        assert saved.content == shown  # what the screen showed is what was kept
        # the chat goes on
        backend.endless = False
        await ask(pilot, "Stop counting")
        await answered(pilot)
        assert not store.latest().messages[-1].partial
        assert "(this answer was cut short)" not in text_of(last_view(screen).query_one(".answer-foot"))


async def test_switching_model(tmp_path, recorder, store):
    backends: dict[str, FakeBackend] = {}
    app = make_app(chat_services(tmp_path, recorder, backends=backends, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        from textual.widgets import Select

        select = screen.query_one("#chat-model", Select)
        assert select.value == "r1-distill-qwen-7b:latest"
        await ask(pilot, "Hello")
        await answered(pilot)
        select.value = "r1-distill-qwen-14b:latest"
        await until(pilot, lambda: screen.model_name == "r1-distill-qwen-14b:latest")
        assert ("chat", ("r1-distill-qwen-14b:latest",)) in recorder.calls
        assert app.state.model_name == "r1-distill-qwen-14b:latest"
        assert select.value == "r1-distill-qwen-14b:latest" and "via fake" in text_of(screen.query_one("#chat-status"))
        await ask(pilot, "Hello again")
        await answered(pilot)
        assert [m.model for m in store.latest().messages if m.role == "assistant"] == \
            ["r1-distill-qwen-7b:latest", "r1-distill-qwen-14b:latest"]  # one conversation goes on
        assert len(backends["r1-distill-qwen-14b:latest"].requests[0]) == 3


async def test_the_wizards_model_comes_first(tmp_path, recorder, store):
    app = make_app(chat_services(tmp_path, recorder, store=store), first="chat")
    app.state.model_name = "r1-distill-qwen-14b"
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        assert screen.model_name == "r1-distill-qwen-14b:latest"
        assert recorder.names() == ["chat"]


def saved_conversation(store: HistoryStore, model: str = "r1-distill-qwen-14b:latest") -> str:
    session = ChatSession(FakeBackend(model), rules_for("r1-distill-qwen-7b"), store=store)
    list(session.send("What is Rayleigh scattering?"))
    return session.conversation_id


async def test_resume_from_the_sidebar(tmp_path, recorder, store):
    old = saved_conversation(store)
    backends: dict[str, FakeBackend] = {}
    app = make_app(chat_services(tmp_path, recorder, backends=backends, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        from textual.widgets import OptionList

        history = screen.query_one("#chat-history", OptionList)
        assert history.option_count == 2  # "new conversation", then the saved one
        assert "What is Rayleigh scattering?" in str(history.get_option_at_index(1).prompt)
        history.focus()
        history.highlighted = 1
        await pilot.press("enter")
        await until(pilot, lambda: screen.session is not None and screen.session.conversation_id == old
                    and screen.model_name == "r1-distill-qwen-14b:latest")
        views = screen.query(AnswerView)
        assert len(views) == 1 and views.first().body.source == "".join(ANSWER)
        assert views.first().collapsible.title == "Thought for 1.5 s"
        assert "resumed “What is Rayleigh scattering?” (2 messages)" in text_of(screen.query(".chat-note").first())
        await ask(pilot, "Tell me more")
        await answered(pilot)
        conversation = store.get(old)
        assert [m.role for m in conversation.messages] == ["user", "assistant", "user", "assistant"]
        assert len(store.list()) == 1
        assert backends["r1-distill-qwen-14b:latest"].requests[0][0].content == "What is Rayleigh scattering?"
        # a new conversation from the sidebar's first entry (or Ctrl+N)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not screen.query(AnswerView) and screen.session.conversation_id is None


async def test_without_a_history_store_and_with_slash_commands(tmp_path, recorder):
    app = make_app(chat_services(tmp_path, recorder, store=None), first="chat")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert "history is off" in str(screen.query_one("#chat-history").get_option_at_index(1).prompt)
        await ask(pilot, "/think off")
        await pilot.pause()
        assert screen.session.options.think is False
        notes = " ".join(text_of(n) for n in screen.query(".chat-note"))
        assert "trained to reason" in notes and "think: off" in notes
        await ask(pilot, "/think lots")
        await pilot.pause()
        assert "not 'lots'" in text_of(screen.query(".chat-note").last())
        await ask(pilot, "Hi")
        await answered(pilot)
        assert last_view(screen).body.source == "".join(ANSWER)
        assert screen.session.conversation_id is None  # nothing kept


async def test_no_models_and_a_failing_backend(tmp_path, recorder, store):
    app = make_app(chat_services(tmp_path, recorder, store=store, models=[]), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await until(pilot, lambda: "no models" in text_of(screen.query_one("#chat-status")))
        await ask(pilot, "Hi")
        await pilot.pause()
        assert not screen.query(AnswerView)

    class Broken(FakeBackend):
        def stream(self, messages, options):
            from dslocal.chat.events import ChatError

            yield AnswerDelta("Half an ans")
            yield ChatError("Ollama went away", "start it with 'dslocal ollama start'", kind="connection")

    broken = Broken("r1-distill-qwen-7b:latest")
    app = make_app(chat_services(tmp_path, recorder, backends={broken.model: broken}, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "Hi")
        await answered(pilot)
        foot = text_of(last_view(screen).query_one(".answer-foot"))
        assert "error: Ollama went away" in foot and "dslocal ollama start" in foot
        assert store.latest().messages[-1].partial


async def test_thinking_that_was_the_answer_moves(tmp_path, recorder, store):
    class Moves(FakeBackend):
        def stream(self, messages, options):
            yield AnswerDelta("hmm, let me see")
            yield ThinkingWasAnswer("hmm, let me see")
            yield AnswerDelta("Blue.")
            yield Done(Stats(answer_tokens=5))

    moves = Moves("r1-distill-qwen-7b:latest")
    app = make_app(chat_services(tmp_path, recorder, backends={moves.model: moves}, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "Colour?")
        await answered(pilot)
        view = last_view(screen)
        assert view.body.source == "Blue." and view.thinking == "hmm, let me see"


async def test_enter_sends_and_alt_enter_adds_a_line(tmp_path, recorder, store):
    backends: dict[str, FakeBackend] = {}
    app = make_app(chat_services(tmp_path, recorder, backends=backends, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await pilot.press("l", "i", "n", "e", "5", "q", "alt+enter", "t", "w", "o")
        prompt = screen.query_one(PromptArea)
        assert prompt.text == "line5q\ntwo" and isinstance(app.screen, ChatScreen)  # 5 and q typed, not keys
        await pilot.press("enter")
        await answered(pilot)
        assert prompt.text == ""
        assert backends["r1-distill-qwen-7b:latest"].requests[0][-1].content == "line5q\ntwo"


async def test_a_long_answer_settles_into_pieces_and_keeps_every_character(tmp_path, recorder, store):
    block = ("## Part {n}\n\nSome prose about **scattering**, long enough to wrap at eighty columns or so, "
             "and then some more words.\n\n```python\ndef f(x):\n\n    return x ** 4\n```\n\n- one\n- two\n\n")
    text = "".join(block.format(n=n) for n in range(30))
    pieces = [text[i:i + 7] for i in range(0, len(text), 7)]
    backend = FakeBackend("r1-distill-qwen-7b:latest", answer=pieces)
    app = make_app(chat_services(tmp_path, recorder, backends={backend.model: backend}, store=store), first="chat")
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        await ask(pilot, "Write a lot")
        await answered(pilot)
        body = last_view(screen).body
        assert body.source == text
        assert body.chunks and "".join(body.chunks) + body.tail == text
        assert all(chunk.count("```") % 2 == 0 for chunk in body.chunks)  # never cut inside a code block
        assert body.step == 1 and body.size.height == len(body.settled_lines(body.size.width)) + len(
            body.live_lines(body.size.width))  # done: the exact height, no lines held in reserve
        shown = [strip.text for strip in body.settled_lines(body.size.width) + body.live_lines(body.size.width)]
        assert "Part 0" in shown[0] and any("Part 29" in line for line in shown) and "two" in shown[-1]


@pytest.mark.parametrize("size,show", [(s, False) for s in SIZES] + [(SIZES[1], True)],
                         ids=lambda v: f"{v[0]}x{v[1]}" if isinstance(v, tuple) else ("shown" if v else "folded"))
def test_snapshot(snap_compare, tmp_path, recorder, store, size, show):
    saved_conversation(store)
    app = make_app(chat_services(tmp_path, recorder, store=store), first="chat")

    async def run_before(pilot):
        await ready(pilot)
        await ask(pilot, "Why is the sky blue?")
        await answered(pilot)
        if show:
            await pilot.press("ctrl+t")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
