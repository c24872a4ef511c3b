"""The source and disk screen: which mirror to download from (each one's latency, measured here), and whether
the disk holds the model through Ollama's import."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from dslocal.tui.screens.base import WizardScreen
from dslocal.units import format_bytes

COLUMNS = (("mark", ""), ("name", "Source"), ("endpoint", "Endpoint"), ("latency", "Latency"))


def normalize(source: dict[str, Any]) -> dict[str, Any]:
    """One source as the screen uses it, whatever the core named the fields (``endpoint``/``url``,
    ``error``/``note``)."""
    return {"name": str(source.get("name", "?")),
            "endpoint": str(source.get("endpoint") or source.get("url") or ""),
            "latency_ms": source.get("latency_ms"),
            "error": source.get("error") or source.get("note")}


def reachable(source: dict[str, Any]) -> bool:
    return source.get("latency_ms") is not None


def fastest(sources: list[dict[str, Any]]) -> str | None:
    """The name of the source that answered first, or None when none answered."""
    answered = [s for s in sources if reachable(s)]
    return min(answered, key=lambda s: s["latency_ms"])["name"] if answered else None


def describe_latency(source: dict[str, Any]) -> str:
    if not reachable(source):
        return f"unreachable ({source['error']})" if source.get("error") else "unreachable"
    return f"{source['latency_ms']:.0f} ms"


def needed_bytes(disk: dict[str, Any]) -> int:
    """What the pull needs free: the core's figure, else the sum of its parts (a DiskPlan as a dict)."""
    if disk.get("needed_bytes") is not None:
        return int(disk["needed_bytes"])
    return sum(int(disk.get(k) or 0) for k in ("download_bytes", "merged_copy_bytes", "server_rewrite_bytes"))


def disk_fits(disk: dict[str, Any]) -> bool:
    free = disk.get("free_bytes")
    return free is None or needed_bytes(disk) <= int(free)


def describe_disk(disk: dict[str, Any]) -> list[str]:
    """The disk plan's lines (Rich markup): needed against free, a warning when it does not fit, the 3x peak."""
    needed, free = needed_bytes(disk), disk.get("free_bytes")
    model = int(disk.get("model_bytes") or 0)
    free_text = format_bytes(free) if free is not None else "unknown"
    mark = "[green]fits[/green]" if disk_fits(disk) else "[b red]does not fit[/b red]"
    lines = [f"[b]Disk[/b]  needs {format_bytes(needed)} free, you have {free_text}: {mark}"]
    if not disk_fits(disk):
        lines.append(f"[b red]Not enough space: free {format_bytes(needed - int(free))} more[/b red] "
                     f"(or 'dslocal pull --direct', which needs the model's size once, {format_bytes(model)})")
    rewrites = disk.get("server_rewrite_bytes")
    if rewrites or (rewrites is None and model and needed >= 3 * model):
        lines.append("[dim]Ollama >= 0.30 rewrites every import through two temporary copies: 3x the model "
                     "at the peak, 1x once it is created.[/dim]")
    if disk.get("remote_server_bytes"):
        lines.append(f"The Ollama server keeps its models on another disk: it needs "
                     f"{format_bytes(disk['remote_server_bytes'])} free there.")
    return lines


class SourceScreen(WizardScreen):
    """Step 3 of the wizard: the mirror and the disk. Latency and disk are measured in workers."""

    DEFAULT_CSS = """
    #source-variant, #disk { padding: 0 1; }
    #sources { margin: 1 0; }
    """

    BINDINGS = [
        Binding("enter", "next", "Download", priority=True),
        Binding("r", "refresh", "Measure again"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, services: Any, state: Any) -> None:
        super().__init__(services, state)
        self.sources: list[dict[str, Any]] | None = None
        self.disk: dict[str, Any] | None = None
        self.disk_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Where from, and the disk", classes="title")
        yield Static(self._variant_line(), id="source-variant")
        yield Static("measuring each source's latency…", id="source-status", classes="hint")
        table: DataTable = DataTable(id="sources", cursor_type="row")
        table.styles.height, table.styles.max_height = "auto", 8  # inline: the app's DataTable rule fills
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static("", id="disk")
        yield Static("Enter: download from the highlighted source · r: measure again · Esc: back", classes="hint")
        yield Footer()

    def _variant_line(self) -> str:
        variant = self.state.variant
        if variant is None:
            return "[yellow]No model chosen yet: press 2 to choose one[/yellow]"
        return f"[b]{variant.model} {variant.quant}[/b]  ({variant.id}, {format_bytes(variant.size_bytes)})"

    def on_mount(self) -> None:
        self.query_one("#sources", DataTable).focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        if self.state.variant is None:
            self.query_one("#source-status", Static).update("")
            return
        self.sources, self.disk, self.disk_error = None, None, None
        self.query_one("#source-status", Static).update("measuring each source's latency…")
        self.query_one("#sources", DataTable).clear()
        self.measure(self.state.variant)
        self.check_disk(self.state.variant)

    @work(thread=True, exclusive=True, group="source-latency")
    def measure(self, variant: Any) -> None:
        try:
            sources = [normalize(s) for s in self.services.sources(variant.id)]
            error = None
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            sources, error = [], str(exc)
        self.app.call_from_thread(self.show_sources, sources, error)

    @work(thread=True, exclusive=True, group="source-disk")
    def check_disk(self, variant: Any) -> None:
        try:
            disk, error = dict(self.services.disk_plan(variant)), None
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            disk, error = None, str(exc)
        self.app.call_from_thread(self.show_disk, disk, error)

    def show_sources(self, sources: list[dict[str, Any]], error: str | None) -> None:
        self.sources = sources
        best = fastest(sources)
        table = self.query_one("#sources", DataTable)
        table.clear()
        for source in sources:
            ok = reachable(source)
            is_best = source["name"] == best
            table.add_row(Text("★" if is_best else "", style="bold yellow"),
                          Text(source["name"], style="bold green" if is_best else "" if ok else "dim"),
                          Text(source["endpoint"], style="" if ok else "dim"),
                          Text(describe_latency(source) + (" fastest" if is_best else ""),
                               style="green" if is_best else "" if ok else "red"),
                          key=source["name"])
        names = [s["name"] for s in sources]
        preferred = self.state.source if self.state.source in names and self.state.source != "auto" else best
        if preferred in names:
            table.move_cursor(row=names.index(preferred), animate=False)
        if error:
            status = f"[red]could not measure the sources: {error}[/red] (r: again)"
        elif best is None:
            status = "[yellow]no source answered: check the network, then r to measure again[/yellow]"
        else:
            status = f"★ {best} answered fastest and is preselected"
        self.query_one("#source-status", Static).update(status)

    def show_disk(self, disk: dict[str, Any] | None, error: str | None) -> None:
        self.disk, self.disk_error = disk, error
        text = ("\n".join(describe_disk(disk)) if disk is not None
                else f"[yellow]disk space unknown ({error}): the download checks it before it starts[/yellow]")
        self.query_one("#disk", Static).update(text)

    def highlighted(self) -> dict[str, Any] | None:
        table = self.query_one("#sources", DataTable)
        if not self.sources or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.sources if s["name"] == key), None)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_next(self) -> None:
        if self.state.variant is None:
            self.app.open_screen("models")
            return
        if self.sources is None or (self.disk is None and self.disk_error is None):
            self.notify("still measuring: a moment")
            return
        if self.disk is not None and not disk_fits(self.disk):
            self.notify("not enough free disk space for this model (see above)", severity="error")
            return
        source = self.highlighted()
        if fastest(self.sources) is None:
            self.notify("no source answered: the download chooses one when it starts", severity="warning")
            self.state.source = "auto"
        elif source is None or not reachable(source):
            name = source["name"] if source else "that source"
            self.notify(f"{name} did not answer: choose another, or r to measure again", severity="warning")
            return
        else:
            self.state.source = source["name"]
        self.app.open_screen("progress")
