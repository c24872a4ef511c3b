"""Progress events: long work reports through a sink (a callable), never by printing.

The CLI binds the sink to progress bars on a TTY; the TUI to worker messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    task: str  # what is running, e.g. "merge" or "split"
    done: int  # units done (bytes unless said otherwise)
    total: int | None  # units in all, when known
    detail: str = ""  # the file being worked on, etc.


ProgressSink = Callable[[Progress], None]


def null_sink(_event: Progress) -> None:
    """A sink that ignores every event."""
