"""The chat screen: a streaming answer as Markdown, its reasoning folded, a stats line, a model switcher, the
saved conversations in a sidebar, and an input where Enter sends.

The core does the work: ``services.chat(name)`` gives the model's backend and rules, a
:class:`dslocal.chat.session.ChatSession` applies them and keeps the history (``services.history()``; none
in the test doubles). The answer streams in a thread worker that hands its events to the screen in
batches: the worker posts one message per batch and the screen draws at most every :data:`FLUSH_EVERY`
seconds. Each draw appends: paragraphs that have settled are rendered once, only the live tail again
(:class:`AnswerBody`), so a draw costs the same late in a long answer as early and a fast model builds no
backlog (``benchmarks/tui_stream.py``). Escape stops the answer (the session keeps the partial answer,
marked); Ctrl+T shows or folds the reasoning, as ``/thinking show|fold`` does in the REPL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message as TextualMessage
from textual.timer import Timer
from textual.widgets import (
    Footer,
    Header,
    OptionList,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from dslocal.chat.events import (
    AnswerDelta,
    ChatEvent,
    ChatOptions,
    ThinkingDelta,
)
from dslocal.tui.screens.base import WizardScreen
from dslocal.tui.widgets.chat_answer import (
    AnswerView,
    Note,
    PromptArea,
    UserTurn,
    clip,
    error_text,
)

FLUSH_EVERY = 0.05  # seconds between two draws of a streaming answer (20 a second at most)
NEW_ID = "__new__"  # the sidebar's "new conversation" entry
HISTORY_LIMIT = 100
SIDEBAR_TEXT = 23  # characters of a sidebar line (the sidebar is 26 columns)

HELP = ("Enter sends · Alt+Enter or Ctrl+J adds a line · Esc stops the answer · Ctrl+T shows/folds reasoning · "
        "Ctrl+N new conversation · Ctrl+B sidebar · /think on|off|LEVEL · /model NAME · /new")


# -- pure helpers --------------------------------------------------------------------------------------------

def model_names(models: Sequence[dict[str, Any]]) -> list[str]:
    """The names in Ollama's /api/tags answer, in its order."""
    return [str(m.get("name") or m.get("model")) for m in models if m.get("name") or m.get("model")]


def choose_model(wanted: str | None, names: Sequence[str]) -> str | None:
    """The wizard's model when there is one (with or without its ``:latest``), else Ollama's first."""
    if wanted:
        for name in names:
            if name == wanted or name == f"{wanted}:latest":
                return name
        return wanted
    return names[0] if names else None


def options_from_settings(settings: dict[str, Any] | None) -> ChatOptions:
    """The options a saved conversation was asked with (``ChatSession.settings()``), unknown keys dropped."""
    saved = (settings or {}).get("options") or {}
    known = {f.name for f in dataclasses.fields(ChatOptions)}
    values = {k: v for k, v in saved.items() if k in known and v not in (None, [], {})}
    if "stop" in values:
        values["stop"] = tuple(values["stop"])
    return ChatOptions(**values)




@dataclasses.dataclass(eq=False)
class Stream:
    """One answer on its way: the worker fills ``inbox`` (under the screen's lock), the screen drains it."""

    view: AnswerView
    inbox: list[tuple[float, ChatEvent]] = dataclasses.field(default_factory=list)
    posted: bool = False  # a Streamed message is on its way: the worker posts no other
    cancelled: bool = False
    ended: bool = False
    chars: int = 0  # thinking + answer characters drawn so far


# -- the screen ----------------------------------------------------------------------------------------------

class ChatScreen(WizardScreen):
    """Step 5: chat with the model the wizard set up (``state.model_name``), or Ollama's first."""

    BINDINGS = [
        Binding("escape", "cancel", "Stop answer"),
        Binding("ctrl+t", "toggle_thinking", "Reasoning"),
        Binding("ctrl+n", "new", "New chat"),
        Binding("ctrl+b", "toggle_sidebar", "Sidebar", show=False),
    ]

    DEFAULT_CSS = """
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #chat-side { width: 26; height: 1fr; border-right: vkey $panel; }
    ChatScreen #chat-side.-hidden { display: none; }
    ChatScreen #chat-side-title { text-style: bold; padding: 0 1; height: 1; }
    ChatScreen #chat-history { height: 1fr; border: none; padding: 0; background: transparent; }
    ChatScreen #chat-main { width: 1fr; height: 1fr; }
    ChatScreen #chat-bar { height: 1; }
    ChatScreen #chat-model { width: 30; }
    ChatScreen #chat-status { width: 1fr; height: 1; padding: 0 1; color: $text-muted; }
    ChatScreen #chat-log { height: 1fr; padding: 0 1; }
    ChatScreen #chat-prompt { height: auto; min-height: 3; max-height: 8; }
    ChatScreen .user-turn { background: $boost; text-style: bold; padding: 0 1; margin: 1 0 0 0; }
    ChatScreen .chat-note { color: $text-muted; padding: 0 1; }
    ChatScreen .chat-note.warn { color: $warning; }
    ChatScreen .chat-note.error { color: $error; }
    ChatScreen .answer-view { height: auto; }
    ChatScreen .answer-view Collapsible { border: none; padding: 0; margin-bottom: 1; background: transparent; }
    ChatScreen .answer-view Collapsible Contents { padding: 0 0 0 2; }
    ChatScreen .answer-view CollapsibleTitle { padding: 0; color: $text-muted; }
    ChatScreen .thinking-text { color: $text-muted; text-style: italic; }
    ChatScreen .thinking-tail { padding: 0 0 0 2; max-height: 4; }
    ChatScreen .answer-foot { height: auto; margin-top: 1; display: none; }
    """

    class Streamed(TextualMessage):
        """The worker has events waiting in the stream's inbox."""

        def __init__(self, stream: Stream) -> None:
            super().__init__()
            self.stream = stream

    class Ended(TextualMessage):
        """The answer's iterator is closed: the session has saved the answer."""

        def __init__(self, stream: Stream) -> None:
            super().__init__()
            self.stream = stream

    class Connected(TextualMessage):
        def __init__(self, name: str, target: Any, error: str | None) -> None:
            super().__init__()
            self.name, self.target, self.error = name, target, error

    class ModelsLoaded(TextualMessage):
        def __init__(self, names: list[str], error: str | None) -> None:
            super().__init__()
            self.names, self.error = names, error

    def __init__(self, services: Any, state: Any) -> None:
        super().__init__(services, state)
        self.show_thinking = bool(state.extra.get("chat_show_thinking", False))
        self.store: Any = None
        self.target: Any = None
        self.session: Any = None
        self.model_names: list[str] = []
        self.model_name: str | None = None
        self._wanted: str | None = None  # the model being connected to
        self.stream: Stream | None = None
        self._resumed: Any = None  # a Conversation picked before any model answered
        self._lock = threading.Lock()
        self._flush_timer: Timer | None = None
        self._flush_pending = False
        self._last_flush = 0.0
        self._loading_select = False
        # Called on the UI thread with the characters handed to the widgets so far, after each draw (the
        # screen paints them at its next refresh); for benchmarks/tui_stream.py.
        self.render_hook: Callable[[int], None] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="chat-body"):
            with Vertical(id="chat-side"):
                yield Static("Conversations", id="chat-side-title")
                yield OptionList(id="chat-history")
            with Vertical(id="chat-main"):
                with Horizontal(id="chat-bar"):
                    yield Select([], prompt="model…", id="chat-model", compact=True)
                    yield Static("looking for models…", id="chat-status")
                yield VerticalScroll(id="chat-log")
                yield PromptArea(id="chat-prompt", placeholder="Ask… (Enter sends, Alt+Enter adds a line)")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#chat-log", VerticalScroll).anchor()
        self.query_one("#chat-prompt", PromptArea).focus()
        self._open_store()
        self.load_models()

    def on_unmount(self) -> None:
        if self.stream is not None:
            self.stream.cancelled = True  # the worker closes the answer (saved, partial) at its next event
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.close()  # a later write (that partial answer) opens it again

    # -- status
    def status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(Text(text, no_wrap=True, overflow="ellipsis"))

    def note(self, text: str, kind: str = "note") -> None:
        self.query_one("#chat-log", VerticalScroll).mount(Note(text, kind))

    # -- the history sidebar
    def _open_store(self) -> None:
        try:
            self.store = self.services.history()
        except Exception as exc:  # noqa: BLE001 - shown, the chat works without a history
            self.store = None
            self.note(f"no saved history: {error_text(exc).message}", "warn")
        self.refresh_history()

    def refresh_history(self) -> None:
        history = self.query_one("#chat-history", OptionList)
        current = self.session.conversation_id if self.session is not None else None
        options = [Option(Text("+ New conversation", style="bold"), id=NEW_ID)]
        if self.store is None:
            options.append(Option(Text("(history is off)", style="dim"), disabled=True))
        else:
            try:
                summaries = self.store.list(limit=HISTORY_LIMIT)
            except Exception as exc:  # noqa: BLE001
                summaries = []
                options.append(Option(Text(error_text(exc).message, style="red"), disabled=True))
            for summary in summaries:
                label = Text(clip(summary.title or "untitled", 2 * SIDEBAR_TEXT))  # two lines at most
                model = summary.model.removesuffix(":latest")
                label.append("\n" + clip(f"{summary.message_count} msgs · {model}", SIDEBAR_TEXT), style="dim")
                options.append(Option(label, id=summary.id))
        history.clear_options()
        history.add_options(options)
        if current is not None:
            with contextlib.suppress(Exception):  # not listed (yet)
                history.highlighted = history.get_option_index(current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id == NEW_ID:
            self.action_new()
        elif event.option.id:
            self.resume(event.option.id)

    def resume(self, conversation_id: str) -> None:
        """Show a saved conversation and carry on with it (its options and system prompt too)."""
        if self._busy():
            return
        try:
            conversation = self.store.get(conversation_id)
        except Exception as exc:  # noqa: BLE001
            self.note(error_text(exc).message, "error")
            return
        log = self.query_one("#chat-log", VerticalScroll)
        log.remove_children()
        title = conversation.title or "untitled"
        views: list[Static | AnswerView] = [Note(f"resumed “{title}” ({len(conversation.messages)} messages)")]
        for message in conversation.messages:
            if message.role == "user":
                views.append(UserTurn(message.content))
            elif message.role == "assistant":
                views.append(AnswerView(show_thinking=self.show_thinking, message=message))
        log.mount_all(views)
        log.anchor()
        self._resumed = conversation
        if self.target is not None:
            self.session = self._new_session(conversation)
        if conversation.model in self.model_names and conversation.model != self.model_name:
            self.select_model(conversation.model)
        self.query_one("#chat-prompt", PromptArea).focus()

    # -- models
    @work(thread=True, group="chat-models")
    def load_models(self) -> None:
        try:
            names, error = model_names(self.services.ollama_models()), None
        except Exception as exc:  # noqa: BLE001
            names, error = [], error_text(exc).message
        self.post_message(self.ModelsLoaded(names, error))

    def on_chat_screen_models_loaded(self, message: ModelsLoaded) -> None:
        self.model_names = list(message.names)
        chosen = choose_model(self.state.model_name, self.model_names)
        if chosen is not None and chosen not in self.model_names:
            self.model_names.insert(0, chosen)
        select = self.query_one("#chat-model", Select)
        self._loading_select = True
        select.set_options([(name, name) for name in self.model_names])
        self._loading_select = False
        if chosen is None:
            self.status(f"no Ollama models: {message.error}" if message.error else
                        "Ollama has no models yet: pull one (2: Models)")
            return
        self.select_model(chosen)

    def select_model(self, name: str) -> None:
        select = self.query_one("#chat-model", Select)
        if select.value != name:
            self._loading_select = True
            select.value = name
            self._loading_select = False
        self.connect(name)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if self._loading_select or event.value is Select.NULL or event.value in (self.model_name, self._wanted):
            return
        if self._busy():
            self._loading_select = True
            event.select.value = self.model_name if self.model_name else Select.NULL
            self._loading_select = False
            return
        self.connect(str(event.value))

    def connect(self, name: str) -> None:
        self._wanted = name
        self.status(f"connecting to {name}…")
        self._connect(name)

    @work(thread=True, group="chat-connect", exclusive=True)
    def _connect(self, name: str) -> None:
        try:
            target, error = self.services.chat(name), None
            if target is None:
                error = f"cannot chat with {name}"
        except Exception as exc:  # noqa: BLE001
            target, error = None, error_text(exc)
            error = error.message + (f" ({error.hint})" if error.hint else "")
        self.post_message(self.Connected(name, target, error))

    def on_chat_screen_connected(self, message: Connected) -> None:
        if message.name != self._wanted:
            return  # another model was picked since
        if message.error is not None:
            self.status(f"{message.name}: {message.error}")
            return
        target = message.target
        self.target = target
        self.model_name = message.name
        self.state.model_name = message.name
        if self.session is None:
            self.session = self._new_session(self._resumed)
        else:
            self.session.backend, self.session.rules = target.backend, target.rules
        rules = target.rules
        self.status(f"via {target.backend.name} · {rules.family} rules · thinking {rules.thinking}")
        try:
            notes = self.session.request()[2]
        except Exception as exc:  # noqa: BLE001
            notes = [error_text(exc).message]
        for text in notes:
            self.note(text, "warn")

    def _new_session(self, conversation: Any = None) -> Any:
        from dslocal.chat.session import ChatSession

        target = self.target
        if conversation is None:
            return ChatSession(target.backend, target.rules, store=self.store)
        settings = conversation.settings or {}
        return ChatSession(target.backend, target.rules, options=options_from_settings(settings),
                           system=settings.get("system"), store=self.store, conversation_id=conversation.id,
                           messages=conversation.messages)

    # -- sending
    def _busy(self) -> bool:
        if self.stream is not None:
            self.notify("an answer is streaming: Esc stops it", severity="warning")
            return True
        return False

    def on_prompt_area_submitted(self, message: PromptArea.Submitted) -> None:
        message.stop()
        text = message.text.strip()
        if not text:
            return
        if text.startswith("/"):
            message.area.clear()
            self.command(text)
            return
        if self._busy():
            return
        if self.session is None:
            self.status("no model to answer yet: pick one above" if self.model_names else
                        "no model to answer: Ollama has none (2: Models)")
            return
        message.area.clear()
        self.send(text)

    def send(self, text: str) -> Stream:
        """Ask ``text``: the turn is drawn at once, the answer streams in from the worker."""
        log = self.query_one("#chat-log", VerticalScroll)
        view = AnswerView(show_thinking=self.show_thinking)
        log.mount_all([UserTurn(text), view])
        log.anchor()
        stream = Stream(view)
        self.stream = stream
        self.refresh_bindings()
        self._run(stream, self.session.send(text))
        return stream

    @work(thread=True, group="chat-stream")
    def _run(self, stream: Stream, events: Iterator[ChatEvent]) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        try:
            for event in events:
                with self._lock:
                    stream.inbox.append((time.perf_counter(), event))
                    post = not stream.posted
                    stream.posted = True
                if post:
                    self.post_message(self.Streamed(stream))
                if stream.cancelled or worker.is_cancelled:
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. /think refused by the model's rules
            with self._lock:
                stream.inbox.append((time.perf_counter(), error_text(exc)))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # the session saves what streamed, marked partial when it was cut short
            self.post_message(self.Ended(stream))

    def on_chat_screen_streamed(self, message: Streamed) -> None:
        """Draw now, or FLUSH_EVERY after the last draw. A draw takes everything that has arrived, so when
        a draw costs more than that (a slow machine) the batches grow and the answer never falls behind."""
        if self._flush_pending:
            return
        self._flush_pending = True
        wait = self._last_flush + FLUSH_EVERY - time.perf_counter()
        if wait > 0.001:
            self._flush_timer = self.set_timer(wait, lambda: self._flush(message.stream))
        else:
            self.call_next(self._flush, message.stream)

    async def _flush(self, stream: Stream) -> None:
        self._flush_timer = None
        self._flush_pending = False
        self._last_flush = time.perf_counter()
        with self._lock:
            batch, stream.inbox = stream.inbox, []
            stream.posted = False
        if not batch:
            return
        if stream.cancelled and stream.ended:
            return
        await stream.view.apply(batch)
        stream.chars += sum(len(e.text) for _, e in batch if isinstance(e, (ThinkingDelta, AnswerDelta)))
        self._after_draw(stream.chars)

    def _after_draw(self, chars: int) -> None:
        hook = self.render_hook
        if hook is not None:
            hook(chars)

    async def on_chat_screen_ended(self, message: Ended) -> None:
        stream = message.stream
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer = None
        await self._flush(stream)
        stream.ended = True
        stream.view.finish(cancelled=stream.cancelled)
        if self.stream is stream:
            self.stream = None
        self.refresh_bindings()
        self.refresh_history()

    # -- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.stream is not None and not self.stream.cancelled  # shown while an answer streams
        return True

    def action_cancel(self) -> None:
        stream = self.stream
        if stream is None or stream.cancelled:
            return
        stream.cancelled = True
        stream.view.mark_stopping()
        self.refresh_bindings()

    def action_toggle_thinking(self) -> None:
        self.show_thinking = not self.show_thinking
        self.state.extra["chat_show_thinking"] = self.show_thinking
        for view in self.query(AnswerView):
            view.set_show_thinking(self.show_thinking)
        self.status("reasoning shown" if self.show_thinking else "reasoning folded")

    def action_new(self) -> None:
        if self._busy():
            return
        self._resumed = None
        if self.session is not None:
            self.session.clear()
        self.query_one("#chat-log", VerticalScroll).remove_children()
        self.refresh_history()
        self.status("a new conversation" + (f" with {self.model_name}" if self.model_name else ""))
        self.query_one("#chat-prompt", PromptArea).focus()

    def action_toggle_sidebar(self) -> None:
        self.query_one("#chat-side").toggle_class("-hidden")

    # -- slash commands (the REPL's, where they make sense here)
    def command(self, line: str) -> None:
        name, _, arg = line[1:].partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("new", "clear"):
            self.action_new()
        elif name == "think":
            self._think(arg)
        elif name == "model":
            if not arg:
                self.note(f"model: {self.model_name or '(none)'}")
            elif not self._busy():
                self.select_model(choose_model(arg, self.model_names) or arg)
        elif name == "help":
            self.note(HELP)
        else:
            self.note(f"unknown command /{name}: {HELP}", "error")

    def _think(self, arg: str) -> None:
        if self.session is None:
            self.note("no model yet", "error")
            return
        if not arg:
            think = self.session.options.think
            self.note(f"think: {think if think is not None else 'model default'}")
            return
        from dslocal.chat.rules import parse_think, resolve_think

        try:
            value = parse_think(arg)
            _, notes = resolve_think(self.session.rules, value, self.session.options.num_ctx)
        except Exception as exc:  # noqa: BLE001
            self.note(error_text(exc).message, "error")
            return
        self.session.set_options(think=value)
        for text in notes:
            self.note(text, "warn")
        self.note(f"think: {arg}")
