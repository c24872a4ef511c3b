"""The step runner: the steps in order, each started, timed and finished (or failed) as typed events.

The runner knows which step is running, so the lines the steps say (``notify``) and the
counts they report (a :data:`~dslocal.progress.ProgressSink`) reach the events as that
step's :class:`StepNote` and :class:`StepProgress`; the sinks a caller passed still get
exactly what they got before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from dslocal.errors import DslocalError
from dslocal.pipeline.steps import (
    Outcome,
    PullEvents,
    StepFailed,
    StepFinished,
    StepNote,
    StepStarted,
    step_progress,
)
from dslocal.progress import Progress, ProgressSink

S = TypeVar("S")
Notify = Callable[[str], None]


@dataclass(frozen=True)
class Step(Generic[S]):
    name: str
    run: Callable[[S], Outcome]


def failure(error: BaseException) -> tuple[str, str | None]:
    """(message, hint) of a failed step: the error's own for a DslocalError."""
    if isinstance(error, DslocalError):
        return error.message, error.hint
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", "run the same command again: it continues where it stopped"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, None


class StepRunner(Generic[S]):
    def __init__(self, steps: Sequence[Step[S]], events: PullEvents) -> None:
        self.steps = tuple(steps)
        self.events = events
        self.current = self.steps[0].name

    def notify(self, legacy: Notify) -> Notify:
        """``legacy`` first (as before), then the line as a note of the running step."""

        def tee(text: str) -> None:
            legacy(text)
            self.events(StepNote(self.current, text))

        return tee

    def progress(self, legacy: ProgressSink) -> ProgressSink:
        """``legacy`` first (as before, step announcements included), then the counts as the step's progress."""

        def tee(event: Progress) -> None:
            legacy(event)
            counts = step_progress(self.current, event)
            if counts is not None:
                self.events(counts)

        return tee

    def run(self, state: S) -> bool:
        """Every step in order; False when one ended the pull early (the later ones then finish unrun).

        An error ends the step as :class:`StepFailed` and goes on up: the later steps stay pending.
        """
        for index, step in enumerate(self.steps):
            self.current = step.name
            self.events(StepStarted(step.name))
            started = time.monotonic()
            try:
                outcome = step.run(state)
            except BaseException as error:
                message, hint = failure(error)
                self.events(StepFailed(step.name, message, hint, round(time.monotonic() - started, 3)))
                raise
            self.events(StepFinished(step.name, outcome.state, round(time.monotonic() - started, 3), outcome.summary))
            if outcome.rest is not None:
                for later in self.steps[index + 1:]:
                    self.events(StepFinished(later.name, outcome.rest, 0.0, outcome.rest_summary))
                return False
        return True
