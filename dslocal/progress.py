"""Progress events: long work reports through a sink (a callable), never by printing.

The CLI binds the sink to progress bars on a TTY; the TUI to worker messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    task: str  # what is running, e.g. "merge", "download" (all files) or "file:PATH" (one file)
    done: int  # units done (bytes unless said otherwise)
    total: int | None  # units in all, when known
    detail: str = ""  # the file being worked on, etc.
    rate: float | None = None  # units per second, when measured
    eta: float | None = None  # seconds left, when known


class RateMeter:
    """Speed over a sliding window of about ``window`` seconds, and the ETA it implies."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: list[tuple[float, int]] = []

    def update(self, done: int, total: int | None, now: float | None = None) -> tuple[float | None, float | None]:
        import time

        now = time.monotonic() if now is None else now
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.pop(0)
        (t0, d0) = self.samples[0]
        if now - t0 < 0.2:
            return None, None
        rate = max((done - d0) / (now - t0), 0.0)
        eta = (total - done) / rate if total is not None and rate > 0 else None
        return rate, eta


ProgressSink = Callable[[Progress], None]


def null_sink(_event: Progress) -> None:
    """A sink that ignores every event."""
