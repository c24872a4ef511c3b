"""Progress bars for the CLI: a rich bar on stderr when it is a terminal, nothing otherwise."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from dslocal.progress import Progress, ProgressSink, null_sink


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool = False) -> Iterator[ProgressSink]:
    """Yield a sink that drives one byte-progress bar; silent when quiet or not on a TTY."""
    if quiet or not sys.stderr.isatty():
        yield null_sink
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )
    with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)

        def sink(event: Progress) -> None:
            bar.update(task, completed=event.done, total=event.total, description=f"{label} {event.detail}".strip())

        yield sink


@contextlib.contextmanager
def transfer_bars(*, quiet: bool = False, max_file_bars: int = 4) -> Iterator[ProgressSink]:
    """Bars for a download: one for the total and one per file in flight (finished ones vanish)."""
    if quiet or not sys.stderr.isatty():
        yield null_sink
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (
        TextColumn("{task.description}", style="bold"), BarColumn(), DownloadColumn(binary_units=True),
        TransferSpeedColumn(), TimeRemainingColumn(),
    )
    with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
        total_task = bar.add_task("total", total=None)
        file_tasks: dict[str, object] = {}

        def sink(event: Progress) -> None:
            if event.task == "download":
                bar.update(total_task, completed=event.done, total=event.total)
                return
            if not event.task.startswith("file:"):
                return
            name = event.detail
            task = file_tasks.get(name)
            if task is None:
                if len(file_tasks) >= max_file_bars:
                    return
                task = file_tasks[name] = bar.add_task(name.rsplit("/", 1)[-1], total=event.total)
            bar.update(task, completed=event.done, total=event.total)
            if event.total is not None and event.done >= event.total:
                bar.remove_task(task)
                del file_tasks[name]

        yield sink
