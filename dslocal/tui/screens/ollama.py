"""The Ollama panel: the daemon's state, start / stop / restart of dslocal's own server, its log, its models.

The core does the work (``services.ollama_*``); this screen calls it in workers that post messages, and shows
what came back. An error from the core is shown as its message and hint, never as a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Log, Static

from dslocal.tui.screens.base import WizardScreen
from dslocal.units import format_bytes

LOG_LINES = 200  # the tail the panel keeps
LOG_EVERY = 1.0  # seconds between log reads
STATE_EVERY = 5.0  # seconds between state reads (loaded models come and go)

DOING = {"start": "starting", "stop": "stopping", "restart": "restarting"}


# -- what the screen shows, from the core's values (pure) ----------------------------------------------------

def describe_state(state: Any) -> list[str]:
    """The state lines: installed / running / version / host / managed pid, and the next step."""
    version = state.version or "?"
    if state.running:
        head = f"[b]Ollama[/b] {version} [green]running[/green] at {state.host}"
    elif state.installed:
        head = f"[b]Ollama[/b] {version} installed, [yellow]not running[/yellow] at {state.host}: press s to start it"
    else:
        head = (f"[b]Ollama[/b] [yellow]not installed[/yellow] (host {state.host}): 'dslocal ollama install', "
                "or use the embedded engine")
    if state.managed_pid:
        managed = f"[b]Managed[/b] dslocal's server, pid {state.managed_pid}"
    elif state.running:
        managed = "[b]Managed[/b] no: this server was not started by dslocal (x and r stop only dslocal's own)"
    else:
        managed = "[b]Managed[/b] none"
    lines = [head, f"[b]Installed[/b] {'yes' if state.installed else 'no'}   {managed}"]
    if state.note:
        lines.append(f"[dim]{state.note}[/dim]")
    return lines


def gpu_share(model: dict[str, Any]) -> str:
    """How much of a loaded model is in GPU memory, as ``ollama ps`` says it: ``100% GPU``, ``40% GPU, 60% CPU``."""
    size = int(model.get("size") or 0)
    vram = int(model.get("size_vram") or 0)
    if size <= 0:
        return "?"
    gpu = max(0, min(100, round(100 * vram / size)))
    if gpu == 100:
        return "100% GPU"
    if gpu == 0:
        return "100% CPU"
    return f"{gpu}% GPU, {100 - gpu}% CPU"


def _name(model: dict[str, Any]) -> str:
    return str(model.get("name") or model.get("model") or "?")


def model_rows(installed: Sequence[dict[str, Any]], loaded: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    """One row per model: name, size on disk, quantization, and (when loaded) its memory and GPU share."""
    loaded_by_name = {_name(m): m for m in loaded}
    installed_names = {_name(m) for m in installed}
    rows: list[tuple[str, str, str, str]] = []
    seen: set[str] = set()
    for model in [*installed, *(m for m in loaded if _name(m) not in installed_names)]:
        name = _name(model)
        if name in seen:
            continue
        seen.add(name)
        on_disk = format_bytes(model["size"]) if name in installed_names and model.get("size") else ""
        quant = str((model.get("details") or {}).get("quantization_level") or "")
        running = loaded_by_name.get(name)
        where = f"{format_bytes(running.get('size') or 0)}, {gpu_share(running)}" if running else ""
        rows.append((name, on_disk, quant, where))
    return rows


def merge_tail(old: Sequence[str], new: Sequence[str]) -> tuple[bool, list[str]]:
    """How to go from the shown tail ``old`` to ``new``: (clear first?, lines to write).

    The log only grows, so ``new`` mostly starts with the end of ``old``: only what follows is written.
    When nothing overlaps (rotated, truncated, or more than a tail at once), the panel starts again."""
    if list(old) == list(new):
        return False, []
    if not old:
        return False, list(new)
    for k in range(min(len(old), len(new)), 0, -1):
        if list(old[-k:]) == list(new[:k]):
            return False, list(new[k:])
    return True, list(new)


def explain(exc: BaseException) -> tuple[str, str | None]:
    """An error's message and hint, for the screen (never a traceback)."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return str(message), getattr(exc, "hint", None)


# -- the screen -----------------------------------------------------------------------------------------------

class OllamaScreen(WizardScreen):
    """Screen 6: the Ollama daemon. s / x / r start, stop and restart dslocal's own server."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "control('start')", "Start"),
        Binding("x", "control('stop')", "Stop"),
        Binding("r", "control('restart')", "Restart"),
        Binding("u", "refresh", "Update", show=False),
    ]

    class StateRead(Message):
        def __init__(self, state: Any, error: tuple[str, str | None] | None, installed: list[dict[str, Any]],
                     loaded: list[dict[str, Any]], problem: str | None, seq: int) -> None:
            super().__init__()
            self.state, self.error, self.installed, self.loaded, self.problem = state, error, installed, loaded, problem
            self.seq = seq

    class LogRead(Message):
        def __init__(self, lines: list[str] | None) -> None:
            super().__init__()
            self.lines = lines

    class ControlDone(Message):
        def __init__(self, action: str, result: str | None, error: tuple[str, str | None] | None) -> None:
            super().__init__()
            self.action, self.result, self.error = action, result, error

    def __init__(self, services: Any, state: Any) -> None:
        super().__init__(services, state)
        self.busy: str | None = None  # the action in flight
        self.shown_log: list[str] = []
        self._log_pending = False
        self._state_seq = 0  # reads started; a slower, older read never overwrites a newer one
        self._state_shown = 0
        self._panel_timers: list[Timer] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Ollama", classes="title")
        with Vertical(id="ollama-top"):
            yield Static("reading Ollama's state…", id="ollama-state")
            yield Static("", id="ollama-message")
            yield Static("", id="ollama-models-title")
            table: DataTable = DataTable(id="ollama-models", cursor_type="row", show_cursor=False)
            table.add_columns("Model", "Size", "Quant", "Loaded (memory, GPU share)")
            yield table
        log = Log(id="ollama-log", max_lines=LOG_LINES)
        log.border_title = "Log of dslocal's Ollama server"
        yield log
        yield Static("s start · x stop · r restart dslocal's own Ollama server · u update", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ollama-message", Static).display = False
        self.action_refresh()
        self.tick_log()
        self._panel_timers = [self.set_interval(LOG_EVERY, self.tick_log), self.set_interval(STATE_EVERY, self.action_refresh)]

    def on_screen_suspend(self) -> None:
        for timer in self._panel_timers:
            timer.pause()

    def on_screen_resume(self) -> None:
        for timer in self._panel_timers:
            timer.resume()

    # -- state and models

    def action_refresh(self) -> None:
        self._state_seq += 1
        self.read_state(self._state_seq)

    @work(thread=True, group="ollama-state")
    def read_state(self, seq: int) -> None:
        state, error, installed, loaded, problems = None, None, [], [], []
        try:
            state = self.services.ollama_state()
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the screen stays usable
            error = explain(exc)
        if state is not None and state.running:
            try:
                installed = list(self.services.ollama_models())
            except Exception as exc:  # noqa: BLE001
                problems.append(f"the installed models: {explain(exc)[0]}")
            try:
                loaded = list(self.services.ollama_loaded())
            except Exception as exc:  # noqa: BLE001
                problems.append(f"the loaded models: {explain(exc)[0]}")
        self.post_message(self.StateRead(state, error, installed, loaded, "; ".join(problems) or None, seq))

    def on_ollama_screen_state_read(self, event: StateRead) -> None:
        if event.seq < self._state_shown:
            return
        self._state_shown = event.seq
        if event.error is not None:
            message, hint = event.error
            text = f"[b]Ollama[/b] state unknown: {message}" + (f"\n[dim]hint: {hint}[/dim]" if hint else "")
            self.query_one("#ollama-state", Static).update(text)
        else:
            self.query_one("#ollama-state", Static).update("\n".join(describe_state(event.state)))
        table = self.query_one("#ollama-models", DataTable)
        table.clear()
        rows = model_rows(event.installed, event.loaded)
        for row in rows:
            table.add_row(*row)
        title = self.query_one("#ollama-models-title", Static)
        if event.problem:
            title.update(f"[b]Models[/b] [yellow]could not read {event.problem}[/yellow]")
        elif event.state is None or not event.state.running:
            title.update("[b]Models[/b] [dim]shown when Ollama runs[/dim]")
        else:
            title.update(f"[b]Models[/b] {len(event.installed)} installed, {len(event.loaded)} loaded"
                         + ("" if rows else ": none yet, 'dslocal pull' or press 2 to choose one"))
        table.display = bool(rows)

    # -- start / stop / restart

    def action_control(self, action: str) -> None:
        if self.busy:
            self.notify(f"{DOING[self.busy]} Ollama: wait for it to finish", severity="warning")
            return
        self.busy = action
        self.show_message(f"{DOING[action]} Ollama…", None)
        self.control(action)

    @work(thread=True, group="ollama-control")
    def control(self, action: str) -> None:
        try:
            result = self.services.ollama_control(action)
        except Exception as exc:  # noqa: BLE001 - the core's error is shown with its hint
            self.post_message(self.ControlDone(action, None, explain(exc)))
        else:
            self.post_message(self.ControlDone(action, str(result) if result else f"Ollama: {action} done", None))

    def on_ollama_screen_control_done(self, event: ControlDone) -> None:
        self.busy = None
        if event.error is not None:
            message, hint = event.error
            self.show_message(f"{event.action} failed: {message}", hint, error=True)
            self.notify(message + (f"\nhint: {hint}" if hint else ""), title=f"Ollama {event.action} failed",
                        severity="error", timeout=10)
        else:
            self.show_message(event.result or "", None)
        self.action_refresh()
        self.tick_log()

    def show_message(self, text: str, hint: str | None, *, error: bool = False) -> None:
        widget = self.query_one("#ollama-message", Static)
        widget.update(text + (f"\n[dim]hint: {hint}[/dim]" if hint else ""))
        widget.set_class(error, "error")
        widget.set_class(not error, "ok")
        widget.display = bool(text)

    # -- the log tail

    def tick_log(self) -> None:
        if not self._log_pending:
            self._log_pending = True
            self.read_log()

    @work(thread=True, group="ollama-log")
    def read_log(self) -> None:
        try:
            lines = list(self.services.ollama_log(LOG_LINES))
        except Exception:  # noqa: BLE001 - no log to show this time
            lines = None
        self.post_message(self.LogRead(lines))

    def on_ollama_screen_log_read(self, event: LogRead) -> None:
        self._log_pending = False
        if event.lines is None:
            return
        log = self.query_one("#ollama-log", Log)
        clear, write = merge_tail(self.shown_log, event.lines)
        if clear:
            log.clear()
        if write:
            log.write_lines(write)
        self.shown_log = list(event.lines)
        log.border_subtitle = "" if self.shown_log else "empty: dslocal has not started Ollama here"
