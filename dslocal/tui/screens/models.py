"""The model screen: the catalog planned for this machine, the recommendation, and why.

Every variant gets a fit badge (where its layers go), the predicted speed, its size and whether it is already
in Ollama or downloaded. The context length and the engine re-plan the whole catalog in a worker; the detail
pane shows the plan's reasons and the Modelfile (or the llama.cpp arguments) it would use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import get_current_worker

from dslocal.tui.screens.base import WizardScreen
from dslocal.units import format_bytes, format_rate

CONTEXTS: tuple[int | None, ...] = (None, 4096, 8192, 16384, 32768, 65536, 131072)  # None: the planner's default
ENGINES = ("ollama", "llama.cpp")
COLUMNS = (("variant", "  Variant"), ("fit", "Fit"), ("speed", "tok/s"), ("size", "Size"),
           ("have", "Have"))
DEFAULT = (None, "ollama")  # what recommend() planned for: no need to plan again
GIB = 1 << 30


def ctx_label(ctx: int | None) -> str:
    if ctx is None:
        return "auto"
    return f"{ctx // 1024}K" if ctx % 1024 == 0 else str(ctx)


def next_ctx(ctx: int | None, step: int = 1) -> int | None:
    """The next (or, with ``step=-1``, the previous) context in :data:`CONTEXTS`, wrapping around."""
    index = CONTEXTS.index(ctx) if ctx in CONTEXTS else 0
    return CONTEXTS[(index + step) % len(CONTEXTS)]


def fit_badge(plan: Any, planned: bool = True) -> str:
    """Where the variant runs, in a few words, from the plan's placement."""
    if not planned:
        return "not planned"
    if plan.placement == "gpu":
        return "all on GPU"
    if plan.placement == "partial":
        return "experts on CPU" if plan.override_tensors else f"{plan.gpu_layers} layers on GPU"
    return {"cpu": "CPU", "mmap": "from disk"}.get(plan.placement, "won't fit")


BADGE_STYLES = {"all on GPU": "green", "experts on CPU": "green", "CPU": "yellow", "from disk": "yellow",
                "won't fit": "red", "not planned": "dim"}


def ollama_names(variant: Any) -> set[str]:
    """The names dslocal gives the variant in Ollama (its first alias, else its id; any alias or the id)."""
    return {variant.id, *variant.aliases}


def have_label(variant: Any, in_ollama: set[str], models_dir: Any) -> str:
    """``in Ollama`` when a model of one of its names is there, ``on disk`` when its files are downloaded."""
    if ollama_names(variant) & in_ollama:
        return "in Ollama"
    if models_dir is not None and variant.paths:
        folder = models_dir / variant.hf_repo
        if all((folder / p).is_file() for p in variant.paths):
            return "on disk"
    return ""


def tag_names(tags: list[dict[str, Any]]) -> set[str]:
    """Ollama's /api/tags names without the ``:latest`` it adds."""
    names = set()
    for tag in tags:
        name = str(tag.get("name") or tag.get("model") or "")
        names.add(name.removesuffix(":latest"))
    return names


def describe_plan(variant: Any, plan: Any, reason: str, engine: str) -> list[str]:
    """The detail pane's lines (Rich markup) for a variant and its plan."""
    lines = [f"[b]{variant.model} {variant.quant}[/b]  ({variant.id}, {format_bytes(variant.size_bytes)})",
             reason]
    if plan.placement != "none" or plan.gpu_layers:
        where = (f"{plan.gpu_layers} of {plan.total_layers} layers on the GPU" if plan.gpu_layers
                 else "nothing on the GPU")
        lines.append(f"{where}; GPU {plan.gpu_bytes / GIB:.1f} GiB, RAM {plan.ram_bytes / GIB:.1f} GiB, "
                     f"KV cache {plan.kv_cache_bytes / GIB:.1f} GiB ({plan.kv_cache_type}), "
                     f"context {plan.num_ctx}, {plan.num_thread} threads, {engine}")
    if plan.override_tensors:
        lines.append(f"routed experts in RAM: -ot {plan.override_tensors}")
    lines.extend(f"[dim]• {note}[/dim]" for note in plan.notes)
    if variant.notes:
        lines.append(f"[dim]{variant.notes}[/dim]")
    return lines


@dataclass(frozen=True)
class Row:
    variant: Any
    plan: Any
    reason: str
    planned: bool


class ModelsScreen(WizardScreen):
    """Step 2 of the wizard: choose a variant. Planning runs in workers: the screen stays responsive."""

    DEFAULT_CSS = """
    #models-detail { height: 40%; border-top: solid $primary; padding: 0 1; }
    #models-modelfile { margin-top: 1; color: $text-muted; }
    """

    BINDINGS = [
        Binding("enter", "pick", "Choose", priority=True),
        Binding("c", "ctx(1)", "Context +"),
        Binding("C", "ctx(-1)", "Context -", show=False),
        Binding("e", "engine", "Engine"),
        Binding("d", "toggle_detail", "Details"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, services: Any, state: Any) -> None:
        super().__init__(services, state)
        self.rows: dict[str, Row] = {}
        self.ranked: list[Row] = []  # recommend()'s rows, planned at the default context for Ollama
        self.recommended: str | None = None
        self.in_ollama: set[str] = set()
        self.planning = True
        self.generation = 0
        self.message = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Choose a model", classes="title")
        yield Static("planning the catalog for this machine…", id="models-status", classes="hint")
        table: DataTable = DataTable(id="models", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        yield table
        with VerticalScroll(id="models-detail"):
            yield Static("", id="models-reasons")
            yield Static("", id="models-modelfile", classes="modelfile")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#models", DataTable).focus()
        self.load()

    # ---- workers -------------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="models-load")
    def load(self) -> None:
        try:
            profile = self.state.profile
            if profile is None:
                profile = self.services.hardware()
            ranked = self.services.recommend(profile)
        except Exception as exc:  # noqa: BLE001 - shown, not raised: the app stays up
            self.app.call_from_thread(self.show_error, f"could not plan the catalog: {exc}")
            return
        try:
            names = tag_names(self.services.ollama_models())
            message = ""
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            names, message = set(), f"Ollama's models unknown ({exc})"
        have = {r.variant.id: have_label(r.variant, names, self.services.models_dir) for r in ranked}
        default_rows = [Row(r.variant, r.plan, r.reason, r.planned) for r in ranked]
        rows, ctx, engine = default_rows, self.state.ctx, self.state.engine
        if (ctx, engine) != DEFAULT:
            rows = self._replanned(rows, profile, ctx, engine)
        self.app.call_from_thread(self.show_catalog, profile, default_rows, rows, have, names, message,
                                  (ctx, engine))

    @work(thread=True, exclusive=True, group="models-plan")
    def replan(self, generation: int, rows: list[Row], ctx: int | None, engine: str) -> None:
        rows = self._replanned(rows, self.state.profile, ctx, engine)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show_plans, generation, rows)

    def _replanned(self, rows: list[Row], profile: Any, ctx: int | None, engine: str) -> list[Row]:
        from dslocal.planner.rank import describe

        worker = get_current_worker()
        out = []
        for row in rows:
            if worker.is_cancelled:
                break
            if not row.planned:
                out.append(row)
                continue
            try:
                plan = self.services.plan(row.variant, profile, ctx=ctx, engine=engine)
            except Exception as exc:  # noqa: BLE001 - one variant's failure is shown on its row
                out.append(Row(row.variant, row.plan, f"{row.variant.id}: not planned ({exc})", False))
                continue
            out.append(Row(row.variant, plan, describe(row.variant, plan), True))
        return out

    # ---- on the UI thread ------------------------------------------------------------------------------------

    def show_catalog(self, profile: Any, default_rows: list[Row], rows: list[Row], have: dict[str, str], names: set[str],
                     message: str, planned_for: tuple[int | None, str]) -> None:
        self.state.profile = profile
        self.ranked = default_rows
        self.in_ollama = names
        self.message = message
        self.rows = {row.variant.id: row for row in rows}
        self.recommended = rows[0].variant.id if rows else None
        table = self.query_one("#models", DataTable)
        table.clear()
        for row in rows:
            cells = self._cells(row, have.get(row.variant.id, ""))
            table.add_row(*cells, key=row.variant.id)
        chosen = self.state.variant.id if self.state.variant is not None else None
        target = chosen if chosen in self.rows else self.recommended
        if target is not None:
            table.move_cursor(row=table.get_row_index(target), animate=False)
        self.planning = False
        if planned_for != (self.state.ctx, self.state.engine):
            self._plan_again()  # changed while the catalog was loading
        self._status()
        self._detail()

    def show_error(self, text: str) -> None:
        self.planning = False
        self.query_one("#models-status", Static).update(f"[red]{text}[/red]")

    def show_plans(self, generation: int, rows: list[Row]) -> None:
        if generation != self.generation:
            return  # a newer context or engine was asked for meanwhile
        table = self.query_one("#models", DataTable)
        for row in rows:
            self.rows[row.variant.id] = row
            fit, speed = self._cells(row, "")[1:3]
            table.update_cell(row.variant.id, "fit", fit)
            table.update_cell(row.variant.id, "speed", speed)
        self.planning = False
        self._status()
        self._detail()

    def _cells(self, row: Row, have: str) -> list[Any]:
        recommended = row.variant.id == self.recommended
        style = "bold" if recommended else ""
        badge = fit_badge(row.plan, row.planned)
        speed = format_rate(row.plan.decode_tokens_per_s) if row.planned and row.plan.placement != "none" else "-"
        return [
            Text.assemble(("★ " if recommended else "  ", "bold yellow"),
                          (row.variant.id, "bold green" if recommended else "")),
            Text(badge, style=BADGE_STYLES.get(badge, "")),
            Text(speed, style=style, justify="right"),
            Text(format_bytes(row.variant.size_bytes), style=style, justify="right"),
            Text(have, style="cyan"),
        ]

    def _status(self) -> None:
        parts = [f"context [b]{ctx_label(self.state.ctx)}[/b] (c)", f"engine [b]{self.state.engine}[/b] (e)"]
        if self.recommended:
            parts.append(f"★ {self.recommended}")
        if self.planning:
            parts.append("[i]planning…[/i]")
        if self.message:
            parts.append(f"[yellow]{self.message}[/yellow]")
        self.query_one("#models-status", Static).update(" · ".join(parts))

    def highlighted(self) -> Row | None:
        table = self.query_one("#models", DataTable)
        if not self.rows or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(key)

    def _detail(self) -> None:
        row = self.highlighted()
        if row is None:
            return
        lines = describe_plan(row.variant, row.plan, row.reason, self.state.engine)
        if row.variant.id == self.recommended:
            lines[0] += "  [b yellow]★ recommended[/b yellow]"
        self.query_one("#models-reasons", Static).update("\n".join(lines))
        self.query_one("#models-modelfile", Static).update(self._preview(row))

    def _preview(self, row: Row) -> Text:
        if not row.planned or row.plan.placement == "none":
            return Text("")
        if self.state.engine == "llama.cpp":
            return Text(f"llama-server {row.plan.llama_cpp_args}")
        try:
            text = self.services.modelfile(row.variant, row.plan)
        except Exception as exc:  # noqa: BLE001 - the preview only
            return Text(f"no Modelfile preview: {exc}", style="yellow")
        return Text(f"Modelfile\n{text.rstrip()}")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    # ---- actions -------------------------------------------------------------------------------------------

    def action_ctx(self, step: int) -> None:
        self.state.ctx = next_ctx(self.state.ctx, step)
        self._plan_again()

    def action_engine(self) -> None:
        self.state.engine = ENGINES[(ENGINES.index(self.state.engine) + 1) % len(ENGINES)] \
            if self.state.engine in ENGINES else ENGINES[0]
        self._plan_again()

    def _plan_again(self) -> None:
        self.generation += 1
        self.planning = True
        self._status()
        if not self.rows or self.state.profile is None:
            return  # the catalog is still loading: load() plans at the state's context and engine
        if (self.state.ctx, self.state.engine) == DEFAULT and self.ranked:
            self.show_plans(self.generation, self.ranked)
        else:
            self.replan(self.generation, self.ranked, self.state.ctx, self.state.engine)

    def action_toggle_detail(self) -> None:
        detail = self.query_one("#models-detail")
        detail.display = not detail.display

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def action_pick(self) -> None:
        row = self.highlighted()
        if self.planning:
            self.notify("still planning: a moment", severity="information")
            return
        if row is None:
            return
        if not row.planned or row.plan.placement == "none":
            self.notify(f"{row.variant.id} does not fit on this machine: choose another", severity="warning")
            return
        self.state.variant = row.variant
        self.state.plan = row.plan
        self.app.open_screen("source")
