"""The chat screen's widgets: the prompt, a turn, and an answer whose settled paragraphs render once.

:class:`AnswerBody` keeps the answer as Rich-rendered strips: paragraphs that have settled
(:func:`dslocal.chat.text.stable_split`) are rendered once, only the live tail again, so a draw costs the
same late in a long answer as early. :class:`AnswerView` is one answer: reasoning in a collapsible block
("Thought for N s" once the answer starts), the answer, and its stats line.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.events import Key
from textual.geometry import Size
from textual.message import Message as TextualMessage
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import (
    Collapsible,
    Static,
    TextArea,
)

from dslocal.chat.events import (
    AnswerDelta,
    ChatError,
    ChatEvent,
    Done,
    Message,
    ThinkingDelta,
    ThinkingWasAnswer,
)
from dslocal.chat.text import stable_split

TAIL_LINES = 4  # the reasoning's last lines, shown while it streams folded


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def thinking_title(seconds: float | None, *, streaming: bool) -> str:
    if streaming:
        return f"Thinking… {seconds:.0f} s" if seconds else "Thinking…"
    return f"Thought for {seconds:.1f} s" if seconds else "Thought"


def error_text(exc: BaseException) -> ChatError:
    """A failure of the core as the answer's error (a DslocalError's message and hint, never a traceback)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return ChatError(str(message), getattr(exc, "hint", None))


# -- widgets -------------------------------------------------------------------------------------------------

class PromptArea(TextArea):
    """The input: Enter sends, Alt+Enter / Shift+Enter / Ctrl+J add a line (a paste keeps its lines)."""

    NEWLINE_KEYS = ("alt+enter", "shift+enter", "ctrl+j")

    class Submitted(TextualMessage):
        def __init__(self, area: PromptArea, text: str) -> None:
            super().__init__()
            self.area = area
            self.text = text

    async def _on_key(self, event: Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(self.Submitted(self, self.text))
            return
        if event.key in self.NEWLINE_KEYS:
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)


class UserTurn(Static):
    def __init__(self, text: str) -> None:
        super().__init__(Text(text), classes="user-turn")


class Note(Static):
    def __init__(self, text: str, kind: str = "note") -> None:
        super().__init__(Text(text), classes=f"chat-note {kind}")


def render_markdown(widget: Widget, text: str, width: int) -> list[Strip]:
    """``text`` as Rich renders Markdown (as the REPL does), in lines of ``width`` cells."""
    if not text or width <= 0:
        return []
    app = widget.app
    options = app.console_options.update_width(width).update(highlight=False, height=None)
    segments = app.console.render(RichMarkdown(text, code_theme="monokai", hyperlinks=True), options)
    base = widget.rich_style
    return [Strip(line).apply_style(base)
            for line in Segment.split_and_crop_lines(segments, width, include_new_lines=False, pad=False)]


class AnswerBody(Widget):
    """Markdown that is cheap to grow, in one widget however long it gets.

    Paragraphs that have settled (cut after a blank line outside a code fence, as the REPL does) are
    rendered once and their lines kept; only the live tail is rendered again on each draw. While it streams
    (``step`` > 1) the height grows ``step`` lines at a time, the last of them blank until text reaches them:
    a draw that adds words within those lines repaints this widget alone, and only one that needs more lines
    lays the screen out again (and scrolls it). So a draw costs the same late in a long answer as early.
    (Textual's ``Markdown.append`` mounts a widget per block and list item, and the layout walks them all on
    every draw: the reference run of benchmarks/tui_stream.py.)"""

    DEFAULT_CSS = "AnswerBody { height: auto; }"

    SETTLE_CHARS = 400  # the live tail hands a settled prefix on once it is at least this long
    LIVE_STEP = 4  # lines the height grows by at a time while the text streams

    def __init__(self, text: str = "", *, classes: str | None = None, streaming: bool = False) -> None:
        super().__init__(classes=classes)
        self.source = ""
        self.chunks: list[str] = []  # settled text, in the pieces it settled in
        self.tail = ""
        self.step = self.LIVE_STEP if streaming else 1
        self._settled: tuple[int, list[Strip]] = (0, [])
        self._live: tuple[int, list[Strip]] | None = None
        self._height: int | None = None  # the height the layout was last given
        if text:
            self.append(text)

    # -- the text
    def append(self, text: str) -> None:
        self.source += text
        self.tail += text
        if len(self.tail) > self.SETTLE_CHARS:
            cut = stable_split(self.tail)
            if cut >= self.SETTLE_CHARS // 2:
                self._settle(self.tail[:cut])
                self.tail = self.tail[cut:]
        self._live = None
        self._changed()

    def _settle(self, text: str) -> None:
        self.chunks.append(text)
        width, lines = self._settled
        if width:  # rendered at this width already: add the new chunk's lines (a blank line between)
            self._settled = (width, [*lines, *render_markdown(self, text, width), Strip.blank(width)])

    def finish(self) -> None:
        """The text is complete: its exact height."""
        if self.step != 1:
            self.step = 1
            self.refresh(layout=True)

    def reset(self) -> None:
        self.source = self.tail = ""
        self.chunks = []
        self._settled = (0, [])
        self._live = None
        self._changed()

    def _changed(self) -> None:
        if not self.is_mounted:
            return
        width = self.size.width
        if width and self._height is not None and self.height_for(width) == self._height:
            self.refresh()  # the same height: a repaint of this widget, no layout
        else:
            self.refresh(layout=True)

    # -- the lines
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._settled = (0, [])  # rendered with the old colours: again at the next draw
        self._live = None

    def settled_lines(self, width: int) -> list[Strip]:
        if self._settled[0] != width:
            lines: list[Strip] = []
            for chunk in self.chunks:
                lines += [*render_markdown(self, chunk, width), Strip.blank(width)]
            self._settled = (width, lines)
        return self._settled[1]

    def live_lines(self, width: int) -> list[Strip]:
        if self._live is None or self._live[0] != width:
            self._live = (width, render_markdown(self, self.tail, width))
        return self._live[1]

    def height_for(self, width: int) -> int:
        count = len(self.settled_lines(width)) + len(self.live_lines(width))
        return -(-count // self.step) * self.step if count else 0

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self._height = self.height_for(width)
        return self._height

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        settled = self.settled_lines(width)
        if y < len(settled):
            return settled[y]
        live = self.live_lines(width)
        y -= len(settled)
        return live[y] if y < len(live) else Strip.blank(width, self.rich_style)


class AnswerView(Vertical):
    """One answer: the reasoning in a collapsible block (its tail while it streams folded), the answer as
    Markdown, then the stats line or what cut it short. Fed on the UI thread by the screen's flushes."""

    def __init__(self, *, show_thinking: bool, message: Message | None = None) -> None:
        super().__init__(classes="answer-view")
        self.show_thinking = show_thinking
        self.thinking = message.thinking if message else ""
        self.answer_started = bool(message and message.content)
        self.streaming = message is None
        self.thinking_from: float | None = None
        self.thinking_to: float | None = None
        self.done: Done | None = None
        self.error: ChatError | None = None
        self.cancelled = False
        self._message = message
        self._foot_lines: list[Text] = []

    def compose(self) -> ComposeResult:
        message = self._message
        seconds = message.stats.thinking_seconds if message and message.stats else None
        yield Collapsible(AnswerBody(classes="thinking-text"), title=thinking_title(seconds, streaming=self.streaming),
                          collapsed=not self.show_thinking, classes="thinking")
        yield Static("", classes="thinking-tail")
        yield AnswerBody(message.content if message else "", classes="answer", streaming=message is None)
        yield Static("", classes="answer-foot")

    def on_mount(self) -> None:
        message = self._message
        if message is not None:
            if message.stats is not None:
                self._foot(Text(message.stats.summary(detail=True), style="dim"))
            if message.partial:
                self._foot(Text("(this answer was cut short)", style="yellow"))
        self._show_thinking_parts()

    # -- parts
    @property
    def collapsible(self) -> Collapsible:
        return self.query_one(Collapsible)

    @property
    def body(self) -> AnswerBody:
        return self.query_one(".answer", AnswerBody)

    def _foot(self, text: Text) -> None:
        self._foot_lines.append(text)
        foot = self.query_one(".answer-foot", Static)
        foot.update(Text("\n").join(self._foot_lines))
        foot.display = True

    def _thinking_seconds(self) -> float | None:
        if self.done is not None and self.done.stats.thinking_seconds:
            return self.done.stats.thinking_seconds
        if self._message is not None and self._message.stats is not None:
            return self._message.stats.thinking_seconds
        if self.thinking_from is not None and self.thinking_to is not None:
            return self.thinking_to - self.thinking_from
        return None

    def _show_thinking_parts(self) -> None:
        """The block, its text (kept up to date only while it is open) and the streaming tail."""
        collapsible = self.collapsible
        collapsible.display = bool(self.thinking)
        collapsible.collapsed = not self.show_thinking
        thinking_streaming = self.streaming and not self.answer_started and self.done is None
        collapsible.title = thinking_title(self._thinking_seconds(), streaming=thinking_streaming)
        if self.show_thinking:  # drawn only while open: a folded block costs nothing while it streams
            body = self.query_one(".thinking-text", AnswerBody)
            if not self.thinking.startswith(body.source):
                body.reset()
            if len(body.source) < len(self.thinking):
                body.append(self.thinking[len(body.source):])
        tail = self.query_one(".thinking-tail", Static)
        tail.display = bool(self.thinking) and thinking_streaming and not self.show_thinking
        if tail.display:
            width = max(self.size.width - 2, 20)
            lines = self.thinking[-width * TAIL_LINES:].splitlines()[-TAIL_LINES:]
            tail.update(Text("\n".join(lines), style="dim italic"))

    def on_collapsible_expanded(self, event: Collapsible.Expanded) -> None:
        event.stop()
        self.show_thinking = True
        self._show_thinking_parts()

    def on_collapsible_collapsed(self, event: Collapsible.Collapsed) -> None:
        event.stop()
        self.show_thinking = False
        self._show_thinking_parts()

    def set_show_thinking(self, show: bool) -> None:
        self.show_thinking = show
        self._show_thinking_parts()

    # -- the stream (a batch at a time)
    async def apply(self, batch: Sequence[tuple[float, ChatEvent]]) -> None:
        """Draw a batch of events: runs of deltas are joined, the Markdown gets one append per run (a body
        whose append returns an awaitable, as Textual's Markdown does, is awaited)."""
        answer: list[str] = []
        thinking_changed = False
        for stamp, event in batch:
            if isinstance(event, ThinkingDelta):
                self.thinking += event.text
                self.thinking_from = self.thinking_from or stamp
                self.thinking_to = stamp
                thinking_changed = True
            elif isinstance(event, AnswerDelta):
                if not self.answer_started:
                    self.answer_started = True
                    if self.thinking_from is not None:
                        self.thinking_to = stamp
                    thinking_changed = True
                answer.append(event.text)
            elif isinstance(event, ThinkingWasAnswer):
                answer.clear()
                self.thinking, self.answer_started = event.text, False
                self.thinking_from = self.thinking_from or stamp
                self.thinking_to = stamp
                thinking_changed = True
                self.body.reset()
            elif isinstance(event, Done):
                self.done = event
            elif isinstance(event, ChatError):
                self.error = event
        if thinking_changed or (self.thinking and not self.answer_started):
            self._show_thinking_parts()
        if answer:
            pending = self.body.append("".join(answer))
            if pending is not None:
                await pending

    def finish(self, *, cancelled: bool) -> None:
        """The stream ended: the reasoning folds to its time, then the stats line or what cut it short."""
        self.streaming = False
        self.cancelled = cancelled and self.done is None
        self._show_thinking_parts()
        for body in self.query(AnswerBody):
            body.finish()
        done = self.done
        if done is not None:
            if done.thinking_unterminated:
                self._foot(Text("the reasoning never finished (token limit?): no answer", style="yellow"))
            line = done.stats.summary(detail=True, reason=done.reason)
            if line:
                self._foot(Text(line, style="dim"))
            if done.reason == "cancelled":
                self._foot(Text("stopped; the partial answer is kept", style="yellow"))
        if self.error is not None:
            self._foot(Text(f"error: {self.error.message}", style="bold red"))
            if self.error.hint:
                self._foot(Text(f"hint: {self.error.hint}", style="red"))
            if self.error.kind == "no_thinking":
                self._foot(Text("tip: /think off", style="yellow"))
        elif self.cancelled:
            self._foot(Text("stopped; the partial answer is kept", style="yellow"))

    def mark_stopping(self) -> None:
        self._foot(Text("stopping…", style="yellow"))
        self._foot_lines = []  # the final line replaces it
