"""Progress bars for the CLI: rich bars on stderr when it is a terminal, nothing otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from dslocal.progress import Progress, ProgressSink, null_sink


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
