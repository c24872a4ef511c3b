"""The pull as named steps a front end can show: typed events and one state per step.

A pull is :data:`STEPS`, in that order. The runner (:mod:`dslocal.pipeline.runner`)
emits, for every step it reaches, :class:`StepStarted` then :class:`StepFinished` (done,
resumed or skipped) or :class:`StepFailed`; in between come :class:`StepNote` (the lines
the pull has to say) and :class:`StepProgress` (counts, one stream per file where there
are files). Steps after one that ends the pull early (a dry run, a model already in
Ollama) get a :class:`StepFinished` without a start; steps after a failure get nothing and
stay pending. :class:`StepBoard` folds the events into what a screen draws.

Events may come from worker threads (the downloader's), like progress events do.
Nothing here prints or imports a UI library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Union

from dslocal.progress import Progress

STEPS = ("resolve", "plan", "preflight", "download", "verify", "merge", "create", "smoke")


class StepState(str, Enum):
    PENDING = "pending"  # not reached (yet)
    RUNNING = "running"
    DONE = "done"  # its work was done in this run
    RESUMED = "resumed"  # an earlier run had done it, or part of it (the journal, the downloader's ledger):
    # what it left was checked and used, not done again
    SKIPPED = "skipped"  # not needed by this pull (a dry run, --direct, local files, --no-smoke-test)
    FAILED = "failed"


@dataclass(frozen=True)
class StepStarted:
    step: str


@dataclass(frozen=True)
class StepProgress:
    """Bytes done of one phase of a step (validate: the server's estimate of the model's bytes it copied)."""

    step: str
    phase: str  # what is counted: "download", "merge", "check", "upload", "validate"
    done: int
    total: int | None
    item: str | None = None  # the file these counts are of (one bar per file); None: the whole phase
    detail: str = ""  # what is worked on now: the shard being merged, a status such as a rate-limit wait
    rate: float | None = None  # bytes per second, when measured
    eta: float | None = None  # seconds left, when known


@dataclass(frozen=True)
class StepNote:
    step: str
    text: str  # one line for people, as the pull's notify says it


@dataclass(frozen=True)
class StepFinished:
    step: str
    state: StepState  # DONE, RESUMED or SKIPPED
    seconds: float
    summary: str = ""


@dataclass(frozen=True)
class StepFailed:
    step: str
    message: str
    hint: str | None
    seconds: float


PullEvent = Union[StepStarted, StepProgress, StepNote, StepFinished, StepFailed]
PullEvents = Callable[[PullEvent], None]


def no_events(_event: PullEvent) -> None:
    """A sink that ignores every event."""


def step_number(step: str) -> int:
    """1 for the first step, as a screen counts them ("step 4 of 8")."""
    return STEPS.index(step) + 1


@dataclass(frozen=True)
class Outcome:
    """What a step function tells the runner: its state, a one-line summary, and whether the pull ends here."""

    state: StepState = StepState.DONE
    summary: str = ""
    rest: StepState | None = None  # the pull ends after this step: the later steps finish in this state, unrun
    rest_summary: str = ""


def step_progress(step: str, event: Progress) -> StepProgress | None:
    """The byte counts of a :class:`~dslocal.progress.Progress` event, as the running step's progress.

    ``file:PATH`` (one file of a download) gets its own ``item``; step announcements
    (``step:NAME``) and markers such as ``merge:deleted`` are not progress.
    """
    if event.task.startswith("file:"):
        return StepProgress(step, "download", event.done, event.total, item=event.task[5:], rate=event.rate,
                            eta=event.eta)
    if ":" in event.task:
        return None
    return StepProgress(step, event.task, event.done, event.total, detail=event.detail, rate=event.rate,
                        eta=event.eta)


@dataclass(frozen=True)
class StepView:
    """One step as a screen shows it."""

    state: StepState = StepState.PENDING
    seconds: float | None = None
    summary: str = ""
    hint: str | None = None  # of a failed step; its message is the summary


class StepBoard:
    """Every step's state, folded from the events (a sink itself: pass it, or call it from yours)."""

    def __init__(self) -> None:
        self.views: dict[str, StepView] = {step: StepView() for step in STEPS}

    def __call__(self, event: PullEvent) -> None:
        if isinstance(event, StepStarted):
            self.views[event.step] = StepView(StepState.RUNNING)
        elif isinstance(event, StepFinished):
            self.views[event.step] = StepView(event.state, event.seconds, event.summary)
        elif isinstance(event, StepFailed):
            self.views[event.step] = StepView(StepState.FAILED, event.seconds, event.message, event.hint)

    @property
    def states(self) -> dict[str, StepState]:
        return {step: view.state for step, view in self.views.items()}
