"""How an answer looks in the terminal: reasoning dimmed (folded to one line once the answer starts, or
shown in full), the answer as Markdown while it streams, and a stats line. Off a terminal: plain text."""

from __future__ import annotations

import time
from typing import IO

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.text import Text

from dslocal.chat.events import (
    AnswerDelta,
    ChatError,
    ChatEvent,
    Done,
    Stats,
    ThinkingDelta,
    ThinkingWasAnswer,
)
from dslocal.chat.text import stable_split

THINKING_MODES = ("fold", "show", "hide")


def stats_line(stats: Stats | None, reason: str = "stop") -> str:
    return stats.summary(detail=True, reason=reason) if stats is not None else ""


class _Answer:
    """The live region of one answer. Only what is still changing is in it: reasoning shows its last few
    lines while it streams, and answer paragraphs that scrolled past are printed above it for good, so each
    refresh costs the same however long the answer grows."""

    TAIL_LINES = 8

    def __init__(self, thinking_mode: str) -> None:
        self.thinking_mode = thinking_mode
        self.thinking = ""
        self.answer = ""  # what is still in the live region
        self.answered = False
        self.flushed = False  # the reasoning line and earlier paragraphs were printed above
        self.done: Done | None = None
        self.error: ChatError | None = None
        self.cancelled = False
        self.thinking_from: float | None = None
        self.thinking_to: float | None = None

    def thinking_line(self) -> Text | None:
        if not self.thinking or self.thinking_mode == "hide":
            return None
        if self.thinking_mode == "show":
            return Text(self.thinking, style="dim italic")
        seconds = self.done.stats.thinking_seconds if self.done and self.done.stats.thinking_seconds else None
        if seconds is None and self.thinking_from is not None and self.thinking_to is not None:
            seconds = self.thinking_to - self.thinking_from
        took = f" for {seconds:.1f} s" if seconds else ""
        return Text(f"▸ thought{took} (/thinking shows it)", style="dim")

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        parts = []
        if not self.flushed and self.thinking and self.thinking_mode != "hide":
            if not (self.answered or self.done) and self.thinking_mode == "fold":
                tail = "\n".join(self.thinking[-4000:].splitlines()[-self.TAIL_LINES:])
                parts.append(Text(tail, style="dim italic"))
            else:
                parts.append(self.thinking_line())
        if self.answer:
            parts.append(Markdown(self.answer))
        if self.done is not None and self.done.thinking_unterminated:
            parts.append(Text("the reasoning never finished (token limit?): no answer", style="yellow"))
        if self.done is not None:
            line = stats_line(self.done.stats, self.done.reason)
            if line:
                parts.append(Text(line, style="dim"))
        if self.cancelled:
            parts.append(Text("stopped; the partial answer is kept", style="yellow"))
        yield Group(*parts)

    def add(self, event: ChatEvent, now: float) -> None:
        if isinstance(event, ThinkingDelta):
            self.thinking += event.text
            self.thinking_from = self.thinking_from or now
            self.thinking_to = now
        elif isinstance(event, AnswerDelta):
            if not self.answered and self.thinking_from is not None:
                self.thinking_to = now
            self.answer += event.text
            self.answered = True
        elif isinstance(event, ThinkingWasAnswer):
            self.thinking, self.answer, self.answered = event.text, "", False
            self.thinking_to = now
        elif isinstance(event, Done):
            self.done = event
        elif isinstance(event, ChatError):
            self.error = event


class RichRenderer:
    """On a terminal: a Live region re-drawn a few times a second (not per token)."""

    def __init__(self, console: Console, thinking_mode: str = "fold", refresh_per_second: float = 8) -> None:
        self.console = console
        self.thinking_mode = thinking_mode
        self.refresh_per_second = refresh_per_second
        self.current: _Answer | None = None
        self._live: Live | None = None
        self._lines = 0  # lines of the live answer, counted as they arrive

    def __enter__(self) -> RichRenderer:
        self.current = _Answer(self.thinking_mode)
        self._live = Live(self.current, console=self.console, refresh_per_second=self.refresh_per_second,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.__enter__()
        return self

    def event(self, event: ChatEvent) -> None:
        current = self.current
        assert current is not None
        current.add(event, time.perf_counter())
        if isinstance(event, AnswerDelta):
            self._lines += event.text.count("\n")
            if self._lines > self.console.height:
                self._flush()
        elif isinstance(event, ThinkingWasAnswer):
            self._lines = 0

    def _flush(self) -> None:
        """Print the settled part of the answer above the live region (with the reasoning line first)."""
        current = self.current
        assert current is not None and self._live is not None
        cut = stable_split(current.answer)
        if not cut:
            return
        if not current.flushed:
            line = current.thinking_line() if current.thinking else None
            if line is not None:
                self._live.console.print(line)
            current.flushed = True
        self._live.console.print(Markdown(current.answer[:cut]))
        current.answer = current.answer[cut:]
        self._lines = current.answer.count("\n")

    def cancel(self) -> None:
        if self.current is not None:
            self.current.cancelled = True

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        if self.current is not None and self.current.error is not None:
            error = self.current.error
            self.console.print(Text(f"error: {error.message}", style="bold red"))
            if error.hint:
                self.console.print(Text(f"hint: {error.hint}", style="red"))


class PlainRenderer:
    """Off a terminal: the answer as it arrives; reasoning only when asked for, marked, on ``thinking_out``."""

    def __init__(self, out: IO[str], err: IO[str], thinking_mode: str = "hide", thinking_out: IO[str] | None = None,
                 *, live: bool = True) -> None:
        self.live = live  # the answer is written as it arrives (not collected for the end)
        self.out = out
        self.err = err
        self.thinking_mode = thinking_mode
        self.thinking_out = thinking_out or err
        self.current: _Answer | None = None
        self._thinking_open = False

    def __enter__(self) -> PlainRenderer:
        self.current = _Answer(self.thinking_mode)
        return self

    def event(self, event: ChatEvent) -> None:
        assert self.current is not None
        self.current.add(event, time.perf_counter())
        if isinstance(event, ThinkingDelta) and self.thinking_mode == "show":
            if not self._thinking_open:
                self.thinking_out.write("<think>\n")
                self._thinking_open = True
            self.thinking_out.write(event.text)
            self.thinking_out.flush()
        elif isinstance(event, ThinkingWasAnswer) and self.live:
            self.err.write("(the text above was the model's reasoning)\n")
        elif isinstance(event, AnswerDelta):
            self._close_thinking()
            self.out.write(event.text)
            self.out.flush()
        elif isinstance(event, Done):
            self._close_thinking()

    def _close_thinking(self) -> None:
        if self._thinking_open:
            self.thinking_out.write("\n</think>\n")
            self.thinking_out.flush()
            self._thinking_open = False

    def cancel(self) -> None:
        if self.current is not None:
            self.current.cancelled = True

    def __exit__(self, *exc: object) -> None:
        self._close_thinking()
        current = self.current
        if current is not None and current.answer and not current.answer.endswith("\n"):
            self.out.write("\n")
            self.out.flush()
        if current is not None and current.cancelled:
            self.err.write("stopped; the partial answer is kept\n")
        if current is not None and current.error is not None:
            self.err.write(f"dslocal: error: {current.error.message}\n")
            if current.error.hint:
                self.err.write(f"hint: {current.error.hint}\n")
        self.err.flush()
