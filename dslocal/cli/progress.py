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
