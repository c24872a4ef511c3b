"""One conversation: DeepSeek's rules applied, the answer streamed, and the transcript saved as it grows.

``send(text)`` yields the backend's events and keeps the history: the user turn is saved before the
request, the answer is saved as a partial message while it streams (every ``save_every`` seconds) and
finalised when it ends. A cancel (closing the iterator, Ctrl+C), an error or a crash leaves the partial
answer in the history, marked. Thinking is kept in the transcript and never sent back to the model.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from dslocal.chat.events import (
    AnswerDelta,
    ChatBackend,
    ChatError,
    ChatEvent,
    ChatOptions,
    Done,
    Message,
    Stats,
    ThinkingDelta,
    ThinkingWasAnswer,
)
from dslocal.chat.rules import ModelRules, apply_system_rule, default_options, resolve_think


class Store(Protocol):  # dslocal.chat.history.HistoryStore
    def new_conversation(self, model: str, backend: str, settings: dict | None = None, title: str | None = None) -> str: ...
    def add_message(self, conversation_id: str, message: Message) -> int: ...
    def update_message(self, message_id: int, message: Message) -> None: ...
    def set_settings(self, conversation_id: str, settings: dict) -> None: ...


@dataclasses.dataclass
class Turn:
    """The answer being written: what has streamed so far."""

    thinking: list[str] = dataclasses.field(default_factory=list)
    answer: list[str] = dataclasses.field(default_factory=list)

    def add(self, event: ChatEvent) -> None:
        if isinstance(event, ThinkingDelta):
            self.thinking.append(event.text)
        elif isinstance(event, AnswerDelta):
            self.answer.append(event.text)
        elif isinstance(event, ThinkingWasAnswer):
            self.thinking, self.answer = [event.text], []

    def message(self, model: str, *, partial: bool, stats: Stats | None = None) -> Message:
        return Message("assistant", "".join(self.answer), "".join(self.thinking), partial=partial, stats=stats,
                       model=model)


class ChatSession:
    def __init__(self, backend: ChatBackend, rules: ModelRules, *, options: ChatOptions | None = None,
                 system: str | None = None, store: Store | None = None, conversation_id: str | None = None,
                 messages: Sequence[Message] = (), save_every: float = 0.5) -> None:
        self.backend = backend
        self.rules = rules
        self.options = options or ChatOptions()
        self.system = system
        self.store = store
        self.conversation_id = conversation_id
        self.messages: list[Message] = [m for m in messages if m.role != "system"]
        if system is None:
            self.system = next((m.content for m in messages if m.role == "system"), None)
        self.save_every = save_every
        self.notes: list[str] = []
        self.last_stats: Stats | None = None

    # -- settings
    def settings(self) -> dict[str, Any]:
        options = dataclasses.asdict(self.options)
        options["stop"] = list(self.options.stop)
        return {"options": options, "system": self.system}

    def set_options(self, **changes: Any) -> None:
        self.options = dataclasses.replace(self.options, **changes)
        self._save_settings()

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        self._save_settings()

    def clear(self) -> None:
        """A new conversation with the same settings (the old one stays in the history)."""
        self.messages = []
        self.conversation_id = None

    def _save_settings(self) -> None:
        if self.store is not None and self.conversation_id is not None:
            self.store.set_settings(self.conversation_id, self.settings())

    # -- the request
    def request(self) -> tuple[list[Message], ChatOptions, list[str]]:
        """The messages and options actually sent, with the model's rules applied, and notes about them."""
        options = default_options(self.rules, self.options)
        think, notes = resolve_think(self.rules, self.options.think, options.num_ctx)
        options = dataclasses.replace(options, think=think)
        history = list(self.messages)
        if self.system:
            history.insert(0, Message("system", self.system))
        if self.rules.system_prompt == "fold" and self.system:
            notes.append(f"{self.rules.family} works best without a system prompt: it was put in the first user turn")
        return apply_system_rule(self.rules, history), options, notes

    def _ensure_conversation(self) -> None:
        if self.store is not None and self.conversation_id is None:
            self.conversation_id = self.store.new_conversation(self.backend.model, self.backend.name, self.settings())

    def send(self, text: str) -> Iterator[ChatEvent]:
        """Ask; yields the answer's events. The user turn is kept even if the answer fails."""
        resolve_think(self.rules, self.options.think, self.options.num_ctx)  # refuse before anything is kept
        user = Message("user", text)
        self.messages.append(user)
        self._ensure_conversation()
        if self.store is not None and self.conversation_id is not None:
            self.store.add_message(self.conversation_id, user)
        yield from self._answer()

    def retry(self) -> Iterator[ChatEvent]:
        """Answer the last user turn again (after a cut-short or failed answer)."""
        while self.messages and self.messages[-1].role == "assistant":
            self.messages.pop()
        if not self.messages:
            return
        yield from self._answer()

    def _answer(self) -> Iterator[ChatEvent]:
        messages, options, notes = self.request()
        self.notes = notes
        turn = Turn()
        message_id = None
        if self.store is not None and self.conversation_id is not None:
            message_id = self.store.add_message(self.conversation_id, turn.message(self.backend.model, partial=True))
        finished: Message | None = None
        last_save = time.monotonic()
        stream = self.backend.stream(messages, options)
        try:
            for event in stream:
                turn.add(event)
                if isinstance(event, Done):
                    finished = turn.message(self.backend.model, partial=event.reason == "cancelled", stats=event.stats)
                    self.last_stats = event.stats
                elif isinstance(event, ChatError):
                    finished = turn.message(self.backend.model, partial=True)
                elif message_id is not None and time.monotonic() - last_save >= self.save_every:
                    self.store.update_message(message_id, turn.message(self.backend.model, partial=True))  # type: ignore[union-attr]
                    last_save = time.monotonic()
                yield event
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a cancelled answer closes the backend's connection
            message = finished or turn.message(self.backend.model, partial=True)
            self.messages.append(message)
            if message_id is not None:
                self.store.update_message(message_id, message)  # type: ignore[union-attr]
