"""What every backend does with what arrives: reasoning the server separated, content that may carry
inline ``<think>`` tags, and the client-side clock (time to first token, thinking time)."""

from __future__ import annotations

import time
from collections.abc import Callable

from dslocal.chat.events import AnswerDelta, ChatEvent, Stats, ThinkingDelta, ThinkingWasAnswer
from dslocal.chat.reasoning import ReasoningParser


class Assembler:
    """Turns a backend's raw pieces into chat events and keeps the times.

    ``thinking(text)``: reasoning the server sent in its own field (Ollama's ``message.thinking``,
    ``reasoning_content``, ``reasoning``). ``content(text)``: the answer field, parsed for inline tags
    (older servers and templates put the reasoning there).
    """

    def __init__(self, start: str = "detect", clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.parser = ReasoningParser(start)
        self.started = clock()
        self.first_at: float | None = None
        self.thinking_from: float | None = None
        self.thinking_to: float | None = None
        self.answer_at: float | None = None
        self.separate_thinking = False

    def _mark(self, events: list[ChatEvent]) -> list[ChatEvent]:
        """Reasoning time runs from the first reasoning piece to the first answer piece after it."""
        if not events:
            return events
        now = self.clock()
        if self.first_at is None:
            self.first_at = now
        for event in events:
            if isinstance(event, ThinkingDelta) and self.answer_at is None:
                self.thinking_from = self.thinking_from or now
                self.thinking_to = now
            elif isinstance(event, ThinkingWasAnswer):
                self.thinking_from, self.thinking_to, self.answer_at = self.first_at, now, None
            elif isinstance(event, AnswerDelta) and self.answer_at is None:
                self.answer_at = now
                if self.thinking_from is not None:
                    self.thinking_to = now
        return events

    def thinking(self, text: str) -> list[ChatEvent]:
        if not text:
            return []
        self.separate_thinking = True
        return self._mark([ThinkingDelta(text)])

    def content(self, text: str) -> list[ChatEvent]:
        return self._mark(list(self.parser.feed(text)))

    def finish(self) -> list[ChatEvent]:
        return self._mark(list(self.parser.finish()))

    @property
    def thinking_unterminated(self) -> bool:
        return self.parser.had_reasoning and not self.parser.closed and not self.separate_thinking

    def stats(self, **backend: float | int | None) -> Stats:
        """Client-side times plus whatever the backend counted (``source`` is ``backend`` if it gave counts)."""
        end = self.clock()
        thinking = None
        if self.thinking_from is not None and self.thinking_to is not None:
            thinking = max(self.thinking_to - self.thinking_from, 0.0)
        counted = {k: v for k, v in backend.items() if v is not None}
        if "decode_seconds" not in counted and self.first_at is not None:
            counted["decode_seconds"] = max(end - self.first_at, 1e-9)
        return Stats(
            first_token_seconds=None if self.first_at is None else self.first_at - self.started,
            thinking_seconds=thinking,
            total_seconds=end - self.started,
            source="backend" if "answer_tokens" in counted else "client",
            **counted,
        )
