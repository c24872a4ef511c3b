"""The hardware screen: devices, memory, disk, Ollama, and what can run on each accelerator."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Footer, Header, Static

from dslocal.tui.screens.base import WizardScreen
from dslocal.units import format_bytes


def describe_profile(profile: Any, verdicts: list[tuple[Any, Any]]) -> list[str]:
    """The lines the screen shows (plain text with Rich markup), from the core's values."""
    cpu, memory, disk = profile.cpu, profile.memory, profile.disk
    lines = [f"[b]CPU[/b]  {cpu.model or profile.arch}: {cpu.physical_cores} cores, {cpu.threads} threads"
             + (f", {cpu.numa_nodes} NUMA nodes" if cpu.numa_nodes > 1 else "")
             + (f"  ({', '.join(cpu.flags[:6])})" if cpu.flags else "")]
    lines.append(f"[b]RAM[/b]  {format_bytes(memory.total_bytes)} total, {format_bytes(memory.available_bytes)} free")
    if memory.bandwidth_bytes_per_s:
        lines.append(f"      {memory.bandwidth_bytes_per_s / 1e9:.0f} GB/s [dim]({escape(memory.bandwidth_source or 'set')})[/dim]")
    else:
        lines.append("      bandwidth not known: the planner assumes one [dim](dslocal hw --measure)[/dim]")
    if disk.path and disk.free_bytes is not None:
        lines.append(f"[b]Disk[/b] {disk.path}: {format_bytes(disk.free_bytes)} free")
    if not verdicts:
        lines.append("[b]GPU[/b]  none found: models run on the CPU")
    for gpu, verdict in verdicts:
        memory_text = format_bytes(gpu.memory_total_bytes) if gpu.memory_total_bytes else "shared memory"
        mark = "[green]Ollama can use it[/green]" if verdict.ollama else f"[yellow]{verdict.reason}[/yellow]"
        lines.append(f"[b]GPU[/b]  {gpu.name} ({memory_text}, {verdict.backend}): {mark}")
        if verdict.advisory:
            lines.append(f"      [i]{verdict.advisory}[/i]")
    for note in profile.notes:
        lines.append(f"[dim]{note}[/dim]")
    return lines


def describe_ollama(state: Any) -> str:
    if state.running:
        return f"[b]Ollama[/b] {state.version or '?'} running at {state.host}"
    if state.installed:
        return f"[b]Ollama[/b] installed ({state.version or '?'}), not running: press 6 to start it"
    return "[b]Ollama[/b] not installed: 'dslocal ollama install', or use the embedded engine"


class HardwareScreen(WizardScreen):
    """Step 1 of the wizard. Detection runs in a worker: the screen shows at once."""

    BINDINGS = [Binding("enter", "next", "Choose a model"), Binding("r", "refresh", "Detect again")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("This machine", classes="title")
        with VerticalScroll():
            yield Static("detecting the hardware…", id="hardware")
            yield Static("", id="ollama")
        yield Static("Enter: choose a model for this machine", classes="hint")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()

    def action_refresh(self) -> None:
        self.query_one("#hardware", Static).update("detecting the hardware…")
        self.detect()

    @work(thread=True, exclusive=True)
    def detect(self) -> None:
        profile = self.services.hardware()
        lines = describe_profile(profile, self.services.verdicts(profile))
        try:
            ollama = describe_ollama(self.services.ollama_state())
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the screen stays usable
            ollama = f"[b]Ollama[/b] state unknown: {exc}"
        self.app.call_from_thread(self.show, profile, lines, ollama)

    def show(self, profile: Any, lines: list[str], ollama: str) -> None:
        self.state.profile = profile
        self.query_one("#hardware", Static).update("\n".join(lines))
        self.query_one("#ollama", Static).update(ollama)

    def action_next(self) -> None:
        if self.state.profile is not None:
            self.app.open_screen("models")
