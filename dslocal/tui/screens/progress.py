"""The progress screen: the pull's eight steps as they run, a bar per shard while it downloads, the notes.

``services.pull(variant, events=sink, source=..., ctx=...)`` runs in a thread worker. Its typed events
(:mod:`dslocal.pipeline.steps`) come from the pull's thread and the downloader's; the sink only queues
them and posts one wake-up message, and the screen folds the queue at most every :data:`DRAW_EVERY`
seconds (a download sends two events per MiB), so a fast pull never builds a backlog of redraws.

Cancel (c or Escape, confirmed) makes the sink raise :class:`PullCancelled` at the pull's next event: the
pull stops where it is (inside a download, between two steps) and its journal keeps what was finished,
so resume (r) runs the same pull again and it continues there. A failure opens a modal with the step's
message and hint. Once the model is in Ollama, Enter opens the chat with it (``state.model_name``).
"""

from __future__ import annotations

import threading
import time
from pathlib import PurePosixPath
from typing import Any, ClassVar

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, RichLog, Static

from dslocal.pipeline.steps import (
    STEPS,
    StepBoard,
    StepFailed,
    StepFinished,
    StepNote,
    StepProgress,
    StepStarted,
    StepState,
    StepView,
    step_number,
)
from dslocal.tui.screens.base import WizardScreen
from dslocal.units import format_bytes

DRAW_EVERY = 0.1  # seconds between two redraws while events stream in
STOPPED = "stopped"  # a step the user cancelled (the runner reports it as failed)
MARKS: dict[str, tuple[str, str]] = {  # state -> (mark, style)
    StepState.PENDING.value: ("·", "dim"),
    StepState.RUNNING.value: ("▶", "bold yellow"),
    StepState.DONE.value: ("✓", "bold green"),
    StepState.RESUMED.value: ("↻", "bold cyan"),
    StepState.SKIPPED.value: ("–", "dim"),
    StepState.FAILED.value: ("✗", "bold red"),
    STOPPED: ("■", "bold yellow"),
}
NAME_WIDTH = 14  # "▶ 3 preflight " and the like
STATE_WIDTH = 8
TIME_WIDTH = 7


class PullCancelled(Exception):
    """Raised from the events sink once a cancel was confirmed: the pull stops at its next event."""

    def __init__(self) -> None:
        super().__init__("stopped: r resumes where it stopped")


# -- pure helpers -----------------------------------------------------------------------------------------


def format_seconds(seconds: float | None) -> str:
    """A step's duration: ``0.2 s``, ``12 s``, ``3:05``, ``1:02:03``."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return format_eta(seconds)


def format_eta(seconds: float | None) -> str:
    """Time left as a clock: ``0:07``, ``12:30``, ``2:05:00``."""
    if seconds is None:
        return ""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent(done: int, total: int | None) -> int | None:
    if not total:
        return None
    return max(0, min(100, int(done * 100 / total)))


def describe_counts(progress: StepProgress, *, total: bool = True, done: bool = True, rate: bool = True) -> str:
    """``1.2 GiB / 2.6 GiB · 45.0 MiB/s · 0:31 left`` (what is known of it, less where room is short)."""
    parts = []
    if done:
        parts.append(format_bytes(progress.done) + (f" / {format_bytes(progress.total)}"
                                                    if total and progress.total else ""))
    if rate and progress.rate:
        parts.append(f"{format_bytes(progress.rate)}/s")
    if progress.eta is not None and progress.total and progress.done < progress.total:
        parts.append(f"{format_eta(progress.eta)} left")
    return " · ".join(parts)


COUNTS_FORMS = ({}, {"total": False}, {"total": False, "done": False}, {"total": False, "done": False, "rate": False})
MIN_BAR = 10


def short_item(item: str, width: int = 26) -> str:
    """A file's name without its folder, cut from the left when long (the shard number stays)."""
    name = PurePosixPath(item).name
    return name if len(name) <= width else "…" + name[-(width - 1):]


def bar_text(done: int, total: int | None, width: int, style: str = "green") -> Text:
    """A bar of ``width`` cells: ``━━━━━━╺━━━━``, filled in ``style``; empty (dim) when the total is unknown."""
    if width <= 0:
        return Text("")
    if not total:
        return Text("━" * width, style="dim")
    filled = min(width, done * width // total) if done > 0 else 0
    text = Text("━" * filled, style=style)
    if filled < width:
        text.append("╺" if filled else "━", style="grey35")
        text.append("━" * (width - filled - 1), style="grey35")
    return text


class BarLine:
    """A bar, its percentage and counts, fitted to the width it gets (the counts first, then the bar)."""

    def __init__(self, progress: StepProgress, *, label: str = "", style: str = "green", max_bar: int = 30) -> None:
        self.progress, self.label, self.style, self.max_bar = progress, label, style, max_bar

    def text(self, width: int) -> Text:
        """The richest counts that leave the bar :data:`MIN_BAR` cells (the total, then the bytes, then the
        speed give way), then what is worked on if it fits too."""
        p = self.progress
        pct = percent(p.done, p.total)
        tail = f" {pct:>3}% " if pct is not None else " "
        label = f"{self.label} " if self.label else ""
        for form in COUNTS_FORMS:
            counts = describe_counts(p, **form)
            room = width - len(label) - len(tail) - len(counts)
            if room >= MIN_BAR:
                break
        detail = f" · {p.detail}" if p.detail and p.item is None and p.phase != "download" else ""
        if detail and room - len(detail) >= 12:  # what is worked on, when the bar keeps its length
            counts, room = counts + detail, room - len(detail)
        line = Text(label, style="italic")
        line.append_text(bar_text(p.done, p.total, max(MIN_BAR // 2, min(self.max_bar, room)), self.style))
        line.append(tail + counts)
        line.truncate(width, overflow="ellipsis")
        return line

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.text(options.max_width)


def step_state(view: StepView, stopped: bool) -> str:
    return STOPPED if stopped else view.state.value


def step_row(step: str, view: StepView, progress: StepProgress | None, *, stopped: bool = False) -> Table:
    """One step's line: mark, number and name, state, its bar (while it runs) or its summary, its time."""
    state = step_state(view, stopped)
    mark, style = MARKS[state]
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(width=NAME_WIDTH - 1, no_wrap=True)
    grid.add_column(width=STATE_WIDTH, no_wrap=True)
    grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    grid.add_column(width=TIME_WIDTH, justify="right", no_wrap=True)
    name = Text.assemble((mark, style), " ", (f"{step_number(step)} ", "dim"),
                         (step, "bold" if state == StepState.RUNNING.value else ""))
    live = progress is not None and state in (StepState.RUNNING.value, STOPPED)
    if live:
        label = "" if progress.phase in (step, "download") else progress.phase
        middle: Any = BarLine(progress, label=label, style="yellow" if state == STOPPED else "green")
    elif state == STOPPED:
        middle = Text("stopped here: r resumes", style="yellow")
    elif state == StepState.FAILED.value:
        middle = Text(view.summary, style="red")
    else:
        middle = Text(view.summary, style="dim" if state in (StepState.SKIPPED.value, StepState.PENDING.value) else "")
    grid.add_row(name, Text(state, style=style), middle, Text(format_seconds(view.seconds), style="dim"))
    return grid


def shard_row(progress: StepProgress, *, stopped: bool = False) -> Table:
    """One file of the download: its name, its bar, speed and ETA; a check once it is complete."""
    complete = progress.total is not None and progress.done >= progress.total
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(width=NAME_WIDTH + 17, no_wrap=True, overflow="ellipsis")
    grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    mark = Text("✓ ", style="green") if complete else Text("↓ ", style="yellow" if stopped else "cyan")
    name = Text("   ").append_text(mark).append(short_item(progress.item or "", NAME_WIDTH + 12))
    if complete:
        return _row(grid, name, Text(f"{format_bytes(progress.total or 0)}, complete", style="dim"))
    return _row(grid, name, BarLine(progress, style="yellow" if stopped else "cyan"))


def _row(grid: Table, *cells: Any) -> Table:
    grid.add_row(*cells)
    return grid


def result_name(result: Any) -> str | None:
    """The Ollama name a pull result carries (a PullResult, or a dict in a double)."""
    if result is None:
        return None
    name = result.get("name") if isinstance(result, dict) else getattr(result, "name", None)
    return str(name) if name else None


def failure_of(error: BaseException) -> tuple[str, str | None]:
    from dslocal.pipeline.runner import failure

    return failure(error)


# -- modals -----------------------------------------------------------------------------------------------


class ConfirmCancel(ModalScreen[bool]):
    """Stop the pull? y (or Enter on the focused "Stop") stops it, n or Escape goes on."""

    DEFAULT_CSS = """
    ConfirmCancel { align: center middle; }
    ConfirmCancel > Vertical { width: 64; max-width: 90%; height: auto; border: thick $warning; padding: 1 2;
                               background: $surface; }
    ConfirmCancel #confirm-buttons { height: auto; margin-top: 1; }
    ConfirmCancel Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop"),
        Binding("n", "answer(False)", "Go on"), Binding("escape", "answer(False)", "Go on", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("[b]Stop the download?[/b]", id="confirm-title")
            yield Static("What is finished stays: r on the progress screen (or 'dslocal pull' again) continues "
                         "where it stopped.", id="confirm-text")
            with Horizontal(id="confirm-buttons"):
                yield Button("Stop (y)", id="confirm-yes", variant="warning", compact=True)
                yield Button("Go on (n)", id="confirm-no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#confirm-yes", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class FailureModal(ModalScreen[str | None]):
    """A failed step: its message and hint. r resumes (the pull again); Escape, or Enter on the focused
    "Close", closes."""

    DEFAULT_CSS = """
    FailureModal { align: center middle; }
    FailureModal > Vertical { width: 76; max-width: 95%; height: auto; max-height: 90%; border: thick $error;
                              padding: 1 2; background: $surface; }
    FailureModal #failure-message { color: $error; margin-top: 1; }
    FailureModal #failure-hint { margin-top: 1; }
    FailureModal #failure-buttons { height: auto; margin-top: 1; }
    FailureModal Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "close('resume')", "Resume"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, step: str | None, message: str, hint: str | None) -> None:
        super().__init__()
        self.step, self.message, self.hint = step, message, hint

    def compose(self) -> ComposeResult:
        where = f"step {step_number(self.step)} of {len(STEPS)}, {self.step}" if self.step in STEPS else "the pull"
        with Vertical():
            yield Static(f"[b]The pull failed[/b] ({where})", id="failure-title")
            yield Static(Text(self.message), id="failure-message")
            yield Static(Text.assemble(("What to do: ", "bold"), self.hint) if self.hint else
                         Text("No hint: see the notes on the progress screen.", style="dim"), id="failure-hint")
            with Horizontal(id="failure-buttons"):
                yield Button("Resume (r)", id="failure-resume", variant="primary", compact=True)
                yield Button("Close (Esc)", id="failure-close", compact=True)

    def on_mount(self) -> None:
        self.query_one("#failure-close", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("resume" if event.button.id == "failure-resume" else None)

    def action_close(self, answer: str | None = None) -> None:
        self.dismiss(answer)


# -- the screen -------------------------------------------------------------------------------------------


class ProgressScreen(WizardScreen):
    """Step 4 of the wizard: the pull of ``state.variant`` from ``state.source``, step by step."""

    DEFAULT_CSS = """
    ProgressScreen #progress-top { height: auto; }
    ProgressScreen #progress-status { width: 1fr; padding: 0 1; }
    ProgressScreen #progress-chat { margin-right: 1; }
    ProgressScreen #progress-steps { height: auto; padding: 0 1; }
    ProgressScreen .step { height: 1; }
    ProgressScreen #progress-shards { height: auto; max-height: 6; padding: 0 1; }
    ProgressScreen .shard { height: 1; }
    ProgressScreen #progress-log { height: 1fr; min-height: 3; border: round $panel; padding: 0 1; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "chat", "Open the chat", priority=True),
        Binding("c", "cancel", "Cancel"),
        Binding("escape", "escape", "Cancel / back", show=False),
        Binding("r", "resume", "Resume"),
    ]

    class Wake(Message):
        """Events are queued: fold them (posted once per batch, from any thread)."""

    class PullEnded(Message):
        def __init__(self, run: int, result: Any, error: BaseException | None) -> None:
            super().__init__()
            self.run, self.result, self.error = run, result, error

    def __init__(self, services: Any, state: Any) -> None:
        super().__init__(services, state)
        self.variant = state.variant  # this screen's pull, whatever is chosen while it runs
        self.source, self.ctx = state.source, state.ctx
        self.run_id = 0  # pulls started; events of an older run are dropped
        self.runs = 0
        self.running = False
        self.finished = False  # the last run put the model in Ollama
        self.result: Any = None
        self.board = StepBoard()
        self.progress: dict[str, StepProgress] = {}  # step -> its latest whole-phase counts
        self.items: dict[str, StepProgress] = {}  # file -> its latest counts (download), in first-seen order
        self.stopped: set[str] = set()  # steps the user cancelled
        self.failed: StepFailed | None = None
        self.error: tuple[str, str | None] | None = None
        self.cancel_asked = False
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[tuple[int, Any]] = []
        self._wake_posted = False
        self._draw_at = 0.0
        self._draw_timer: Any = None

    # ---- layout ---------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._title(), id="progress-title", classes="title")
        with Horizontal(id="progress-top"):
            yield Static("", id="progress-status")
            yield Button("Open the chat", id="progress-chat", variant="success", compact=True)
        with Vertical(id="progress-steps"):
            for step in STEPS:
                yield Static("", id=f"step-{step}", classes="step")
        yield VerticalScroll(id="progress-shards")
        log = RichLog(id="progress-log", max_lines=500, wrap=True, markup=False)
        log.border_title = "Notes"
        yield log
        yield Static("", id="progress-hint", classes="hint")
        yield Footer()

    def _title(self) -> str:
        variant = self.variant
        if variant is None:
            return "Download"
        source = self.source if self.source and self.source != "auto" else "the fastest source"
        return f"Downloading [b]{variant.model} {variant.quant}[/b] ({variant.id}) from {source}"

    def on_mount(self) -> None:
        self.query_one("#progress-chat", Button).display = False
        self.query_one("#progress-shards").display = False
        self.query_one("#progress-log").can_focus = False
        if self.variant is None:
            self._status("[yellow]No model chosen yet: press 2 to choose one[/yellow]")
            self._draw()
            return
        earlier = self.running_elsewhere()
        if earlier is not None:  # one pull at a time: back to the screen that runs it
            self._status("[yellow]a pull is still running: back to it[/yellow]")
            self._draw()
            self.app.call_later(self._back_to, earlier)
            return
        self.start()

    def running_elsewhere(self) -> ProgressScreen | None:
        """An earlier progress screen whose pull still runs (under screens opened since, with 1, 2, 5 or 6)."""
        return next((s for s in reversed(self.app.screen_stack)
                     if isinstance(s, ProgressScreen) and s is not self and s.running), None)

    def _back_to(self, earlier: ProgressScreen) -> None:
        while self.app.screen is not earlier and len(self.app.screen_stack) > 1:
            self.app.pop_screen()
        earlier.notify(f"{earlier.variant.id} is still being pulled: c cancels it, then choose "
                       "again", severity="warning")

    def on_unmount(self) -> None:
        self._cancel.set()  # a pull still running stops at its next event (the journal keeps the rest)

    # ---- the pull -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the pull (again: the journal continues where an earlier run stopped)."""
        self.run_id += 1
        self.runs += 1
        self.running, self.finished, self.result = True, False, None
        self.board, self.progress, self.items, self.stopped = StepBoard(), {}, {}, set()
        self.failed, self.error, self.cancel_asked = None, None, False
        self._cancel = threading.Event()
        with self._lock:
            self._pending.clear()
        self.query_one("#progress-chat", Button).display = False
        for row in list(self.query_one("#progress-shards").children):
            row.remove()
        self.query_one("#progress-shards").display = False
        if self.runs > 1:
            self._log(None, "resuming: the pull runs again and continues where it stopped")
        self._status("[b]pulling…[/b] c or Esc cancels (what is finished stays)")
        self._draw()
        self.refresh_bindings()
        self.run_pull(self.run_id, self._sink(self.run_id, self._cancel), self.variant.id, self.source, self.ctx)

    def _sink(self, run: int, cancel: threading.Event) -> Any:  # a PullEvents
        def sink(event: Any) -> None:
            with self._lock:
                self._pending.append((run, event))
                wake = not self._wake_posted
                self._wake_posted = True
            if wake:
                self.post_message(self.Wake())
            if cancel.is_set() and not isinstance(event, (StepFinished, StepFailed)):
                raise PullCancelled()

        return sink

    @work(thread=True, group="pull")
    def run_pull(self, run: int, sink: Any, model: str, source: str | None, ctx: int | None) -> None:
        try:
            result, error = self.services.pull(model, events=sink, source=source, ctx=ctx), None
        except Exception as exc:  # noqa: BLE001 - shown in the failure modal, not raised
            result, error = None, exc
        self.post_message(self.PullEnded(run, result, error))

    # ---- events, on the UI thread -------------------------------------------------------------------------

    def on_progress_screen_wake(self, _message: Wake) -> None:
        wait = self._draw_at + DRAW_EVERY - time.monotonic()
        if wait > 0:
            if self._draw_timer is None:
                self._draw_timer = self.set_timer(wait, self.drain)
            return
        self.drain()

    def drain(self) -> None:
        """Fold the queued events into the steps, the bars and the notes, and draw once."""
        self._draw_timer = None
        with self._lock:
            batch, self._pending = self._pending, []
            self._wake_posted = False
        for run, event in batch:
            if run == self.run_id:
                self.apply(event)
        self._draw()

    def apply(self, event: Any) -> None:
        self.board(event)
        if isinstance(event, StepProgress):
            if event.item is not None:
                self.items[event.item] = event
            else:
                self.progress[event.step] = event
        elif isinstance(event, StepNote):
            self._log(event.step, event.text)
        elif isinstance(event, StepFailed):
            if self.cancel_asked:
                self.stopped.add(event.step)
            else:
                self.failed = event
        elif isinstance(event, StepStarted):
            self.progress.pop(event.step, None)

    def on_progress_screen_pull_ended(self, message: PullEnded) -> None:
        if message.run != self.run_id:
            return
        self.drain()
        self.running = False
        if message.error is None:
            self._finished(message.result)
        elif self.cancel_asked or isinstance(message.error, PullCancelled):
            for step, view in self.board.views.items():
                if view.state in (StepState.RUNNING, StepState.FAILED):
                    self.stopped.add(step)
            self._status("[yellow]■ stopped[/yellow]: r resumes where it stopped, Esc goes back")
            self._log(None, "stopped; what was finished is kept (r resumes)")
        else:
            self._failed(message.error)
        self._draw()
        self.refresh_bindings()

    def _finished(self, result: Any) -> None:
        self.finished, self.result = True, result
        name = result_name(result) or self._default_name()
        self.state.model_name = name
        total = sum(v.seconds or 0.0 for v in self.board.views.values())
        self._status(f"[b green]✓ {name} is ready in Ollama[/b green] (in {format_seconds(total)}): "
                     "Enter opens the chat")
        chat = self.query_one("#progress-chat", Button)
        chat.display = True
        chat.focus()

    def _default_name(self) -> str:
        variant = self.variant
        return variant.aliases[0] if variant.aliases else variant.id

    def _failed(self, error: BaseException) -> None:
        if self.failed is not None:
            step, message, hint = self.failed.step, self.failed.message, self.failed.hint
        else:
            step = None
            message, hint = failure_of(error)
        self.error = (message, hint)
        where = f" at {step}" if step else ""
        self._status(f"[b red]✗ the pull failed{where}[/b red]: r resumes, Esc goes back")
        self._log(step, f"failed: {message}" + (f" ({hint})" if hint else ""))
        self.app.push_screen(FailureModal(step, message, hint), self._after_failure)

    def _after_failure(self, answer: str | None) -> None:
        if answer == "resume":
            self.action_resume()

    # ---- drawing --------------------------------------------------------------------------------------------

    def _draw(self) -> None:
        self._draw_at = time.monotonic()
        for step in STEPS:
            self.query_one(f"#step-{step}", Static).update(
                step_row(step, self.board.views[step], self.progress.get(step), stopped=step in self.stopped))
        shards = self.query_one("#progress-shards", VerticalScroll)
        rows = list(shards.children)
        stopped = "download" in self.stopped
        for index, item in enumerate(self.items.values()):
            if index < len(rows):
                rows[index].update(shard_row(item, stopped=stopped))  # type: ignore[attr-defined]
            else:
                shards.mount(Static(shard_row(item, stopped=stopped), classes="shard"))
        shards.display = bool(self.items)
        self.query_one("#progress-hint", Static).update(self._hint())

    def _hint(self) -> str:
        if self.running:
            return "c/Esc: cancel (what is finished stays, and r resumes it later)"
        if self.finished:
            return "Enter: open the chat · 1 hardware · 2 models · 6 Ollama"
        if self.variant is None:
            return "2: choose a model"
        return "r: resume where it stopped · Esc: back"

    def _status(self, text: str) -> None:
        self.query_one("#progress-status", Static).update(text)

    def _log(self, step: str | None, text: str) -> None:
        line = Text.assemble((f"{step}: ", "bold") if step else ("", ""), text)
        self.query_one("#progress-log", RichLog).write(line)

    # ---- actions --------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only what can be done now is in the footer (and bound)."""
        if action == "chat":
            return self.finished
        if action == "cancel":
            return self.running
        if action == "resume":
            return not self.running and not self.finished and self.variant is not None
        return True

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "progress-chat":
            self.action_chat()

    def action_chat(self) -> None:
        if not self.finished:
            self.notify("the pull is not finished yet", severity="warning")
            return
        self.app.open_screen("chat")

    def action_cancel(self) -> None:
        if not self.running:
            return
        if self.cancel_asked:
            self.notify("stopping at the pull's next step or block…")
            return
        self.app.push_screen(ConfirmCancel(), self._after_confirm)

    def _after_confirm(self, stop: bool | None) -> None:
        if not stop or not self.running:
            return
        self.cancel_asked = True
        self._cancel.set()
        self._status("[yellow]stopping…[/yellow] (at the pull's next step or block)")
        self.refresh_bindings()

    def action_escape(self) -> None:
        if self.running:
            self.action_cancel()
        elif len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_resume(self) -> None:
        if self.running:
            self.notify("the pull is running")
            return
        if self.finished:
            self.notify("the model is in Ollama: Enter opens the chat")
            return
        if self.variant is None:
            return
        self.start()
