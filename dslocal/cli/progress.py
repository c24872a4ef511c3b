"""Progress bars for the CLI: rich bars on stderr when it is a terminal, nothing otherwise."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from dslocal.progress import Progress, ProgressSink, null_sink

if TYPE_CHECKING:  # the pipeline is imported when a pull runs, not with every command that shows a bar
    from dslocal.pipeline.steps import PullEvent, PullEvents, StepProgress


@contextlib.contextmanager
def _bars(quiet: bool) -> Iterator[Any]:
    """A rich Progress with byte columns on stderr, or None when quiet or not on a TTY."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )
    with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
        yield bar


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[ProgressSink]:
    """Yield a sink that drives one byte-progress bar."""
    with _bars(quiet) as bar:
        if bar is None:
            yield null_sink
            return
        task = bar.add_task(label, total=None)

        def sink(event: Progress) -> None:
            bar.update(task, completed=event.done, total=event.total, description=f"{label} {event.detail}".strip())

        yield sink


@contextlib.contextmanager
def transfer_bars(*, quiet: bool = False, max_file_bars: int = 4) -> Iterator[ProgressSink]:
    """Bars for a download: one for the total and one per file in flight (finished ones vanish).

    Other long steps (a merge) get a bar of their own; step announcements are ignored.
    """
    with _bars(quiet) as bar:
        if bar is None:
            yield null_sink
            return
        tasks: dict[str, Any] = {}

        def task_for(key: str, label: str, total: int | None) -> Any:
            if key not in tasks:
                tasks[key] = bar.add_task(label, total=total)
            return tasks[key]

        def sink(event: Progress) -> None:
            if event.task.startswith("file:"):
                if event.detail not in tasks and sum(k.startswith("file:") for k in tasks) >= max_file_bars:
                    return
                task = task_for(event.task, event.detail.rsplit("/", 1)[-1], event.total)
                bar.update(task, completed=event.done, total=event.total)
                if event.total is not None and event.done >= event.total:
                    bar.remove_task(tasks.pop(event.task))
            elif not event.task.startswith("step:") and ":" not in event.task:
                label = "total" if event.task == "download" else event.task
                bar.update(task_for(event.task, label, event.total), completed=event.done, total=event.total)

        yield sink


class _StepBars:
    """A pull's progress as bars: one per step phase ("[4/8] download"), one per file in flight."""

    def __init__(self, bar: Any, max_file_bars: int) -> None:
        self.bar, self.max_file_bars = bar, max_file_bars
        self.tasks: dict[tuple[str, str, str | None], Any] = {}
        self.lock = threading.Lock()

    def __call__(self, event: PullEvent) -> None:
        from dslocal.pipeline.steps import StepFailed, StepFinished, StepProgress

        with self.lock:
            if isinstance(event, StepProgress):
                self._progress(event)
            elif isinstance(event, (StepFinished, StepFailed)):
                for key in [k for k in self.tasks if k[0] == event.step]:
                    self.bar.remove_task(self.tasks.pop(key))

    def _progress(self, event: StepProgress) -> None:
        from dslocal.pipeline.steps import STEPS, step_number

        key = (event.step, event.phase, event.item)
        if key not in self.tasks:
            if event.item is not None:
                if sum(k[2] is not None for k in self.tasks) >= self.max_file_bars:
                    return
                label = event.item.rsplit("/", 1)[-1]
            else:
                label = f"[{step_number(event.step)}/{len(STEPS)}] {event.step}"
                label += "" if event.phase == event.step else f": {event.phase}"
            self.tasks[key] = self.bar.add_task(label, total=event.total)
        self.bar.update(self.tasks[key], completed=event.done, total=event.total)
        if event.item is not None and event.total is not None and event.done >= event.total:
            self.bar.remove_task(self.tasks.pop(key))


@contextlib.contextmanager
def step_bars(*, quiet: bool = False, max_file_bars: int = 4) -> Iterator[PullEvents]:
    """Bars for a pull's step events (its notes are the caller's to print); nothing when quiet or not on a TTY."""
    from dslocal.pipeline.steps import no_events

    with _bars(quiet) as bar:
        yield no_events if bar is None else _StepBars(bar, max_file_bars)
