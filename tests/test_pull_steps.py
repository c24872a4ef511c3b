"""The pull as named steps (issue 16, item 1): typed events, one state per step, one runner."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hubdouble import run_hub
from ollama_double import run_ollama
from test_pull import MODEL, env, hub_root, model_bytes  # noqa: F401 - module-scoped fixtures

from dslocal.config import load_settings
from dslocal.errors import DiskError, OllamaError
from dslocal.hardware.presets import load_profile
from dslocal.pipeline import PullRequest, pull
from dslocal.pipeline.runner import Step, StepRunner
from dslocal.pipeline.steps import (
    STEPS,
    Outcome,
    StepBoard,
    StepFailed,
    StepFinished,
    StepNote,
    StepProgress,
    StepStarted,
    StepState,
    step_progress,
)
from dslocal.progress import Progress

pytest.importorskip("llama_cpp")

PROFILE = "cpu-only-64gb"
DONE, RESUMED, SKIPPED, PENDING, FAILED = (StepState.DONE, StepState.RESUMED, StepState.SKIPPED, StepState.PENDING,
                                          StepState.FAILED)


class Stop(Exception):
    """Stands for a crash in the middle of a step."""


def outline(events) -> list[tuple[str, str, str | None]]:
    """(event, step, state) of the start, finish and failure events, in order."""
    kinds = {StepStarted: "started", StepFinished: "finished", StepFailed: "failed"}
    return [(kinds[type(e)], e.step, getattr(e, "state", None)) for e in events if type(e) in kinds]


def run_through(states) -> list[tuple[str, str, str | None]]:
    """The outline of a pull whose first steps ran and ended in ``states``."""
    pairs = zip(STEPS[:len(states)], states, strict=True)
    return [row for step, state in pairs for row in (("started", step, None), ("finished", step, state))]


def board_of(events) -> dict[str, StepState]:
    board = StepBoard()
    for event in events:
        board(event)
    return board.states


def test_the_steps_of_a_pull_in_order_with_their_progress_and_notes(env, hub_root):  # noqa: F811
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        events, lines, legacy = [], [], []
        result = pull(PullRequest(model=MODEL), load_settings(), load_profile(PROFILE), notify=lines.append,
                      progress=legacy.append, events=events.append)
    assert outline(events) == run_through([DONE] * len(STEPS))
    assert board_of(events) == dict.fromkeys(STEPS, DONE)
    assert result.steps == ["download", "verify", "merge", "create", "smoke"] and result.resumed == []
    # the legacy sinks get what they always got; the notes are those very lines, each in its step
    assert [e.task for e in legacy if e.task.startswith("step:")] == [f"step:{s}" for s in result.steps]
    notes = [e for e in events if isinstance(e, StepNote)]
    assert [n.text for n in notes] == lines
    assert next(n.step for n in notes if n.text.startswith("disk plan: ")) == "preflight"
    assert next(n.step for n in notes if n.text.startswith("ollama: ")) == "create"
    assert next(n.step for n in notes if n.text.startswith("loading ")) == "smoke"
    progress = [e for e in events if isinstance(e, StepProgress)]
    files = {e.item for e in progress if e.step == "download" and e.item is not None}
    assert len(files) == 4 and all(f.endswith(".gguf") for f in files), "one stream per shard: one bar per file"
    for name in files:
        last = [e for e in progress if e.item == name][-1]
        assert last.done == last.total
    whole = [e for e in progress if e.step == "download" and e.item is None]
    assert whole[-1].done == whole[-1].total == model_bytes(hub_root)
    assert {(e.step, e.phase) for e in progress if e.item is None} == {
        ("download", "download"), ("merge", "merge"), ("create", "validate")}
    assert {e.step for e in progress} == {"download", "merge", "create"}
    # every event of a step lies between its start and its finish
    for step in STEPS:
        at = [i for i, e in enumerate(events) if e.step == step]
        assert isinstance(events[at[0]], StepStarted) and isinstance(events[at[-1]], StepFinished), step
    summaries = {e.step: e.summary for e in events if isinstance(e, StepFinished)}
    assert "Ollama 0.32.15" in summaries["resolve"] and "4 files" in summaries["plan"]
    assert summaries["merge"].startswith(result.digest[:19]) and "tokens in" in summaries["smoke"]
    assert all(e.seconds >= 0 for e in events if isinstance(e, StepFinished))


def test_a_rerun_after_a_crash_mid_download_shows_the_download_resumed(env, hub_root):  # noqa: F811
    stopped = []

    def crash(event):
        if event.task.startswith("file:") and not stopped and event.total and event.done * 2 >= event.total:
            stopped.append(event.task)
            raise Stop(event.task)

    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        first = []
        with pytest.raises(Stop):
            pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE), progress=crash,
                 events=first.append)
        failed = [e for e in first if isinstance(e, StepFailed)]
        assert [(e.step, e.message) for e in failed] == [("download", f"Stop: {stopped[0]}")]
        assert board_of(first) == {**dict.fromkeys(STEPS[:3], DONE), "download": FAILED,
                                   **dict.fromkeys(STEPS[4:], PENDING)}
        served = hub.stats.body_bytes
        again = []
        result = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE),
                      events=again.append)
        assert hub.stats.body_bytes - served < model_bytes(hub_root), "what the crash left was not fetched again"
    # resolve, plan and preflight are asked again (the server, the listing, the disk may have changed)
    assert outline(again) == run_through([DONE, DONE, DONE, RESUMED, DONE, DONE, DONE, SKIPPED])
    summary = next(e.summary for e in again if isinstance(e, StepFinished) and e.step == "download")
    assert "already here" in summary, summary
    assert result.digest


def test_a_rerun_after_a_crash_before_create_shows_what_the_journal_had(env, hub_root):  # noqa: F811
    def crash(event):
        if event.task == "step:create":
            raise Stop(event.task)

    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        with pytest.raises(Stop):
            pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE), progress=crash)
        events = []
        result = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE),
                      events=events.append)
    assert outline(events) == run_through([DONE, DONE, DONE, RESUMED, RESUMED, RESUMED, DONE, SKIPPED])
    assert result.resumed == ["blob"] and result.steps == ["create"]
    assert not [e for e in events if isinstance(e, StepProgress) and e.step in ("download", "merge")]


def test_a_failing_step_says_why_and_the_later_steps_stay_pending(env, hub_root, monkeypatch):  # noqa: F811
    with run_hub(hub_root) as hub:
        env(hub.url)  # no Ollama server
        events = []
        with pytest.raises(OllamaError) as info:
            pull(PullRequest(model=MODEL), load_settings(), load_profile(PROFILE), events=events.append)
        assert outline(events) == [("started", "resolve", None), ("failed", "resolve", None)]
        failed = events[-1]
        assert (failed.message, failed.hint) == (info.value.message, info.value.hint)
        assert "no Ollama server" in failed.message and "dslocal ollama start" in failed.hint
        assert board_of(events) == {"resolve": FAILED, **dict.fromkeys(STEPS[1:], PENDING)}
        with run_ollama(env.store, "0.32.15") as ollama:
            env(hub.url, ollama.url)
            import dslocal.pipeline as pipeline

            monkeypatch.setattr(pipeline.disk, "disk_free", lambda path: 1000)
            events = []
            with pytest.raises(DiskError) as info:
                pull(PullRequest(model=MODEL), load_settings(), load_profile(PROFILE), events=events.append)
        failed = events[-1]
        assert isinstance(failed, StepFailed) and failed.step == "preflight"
        assert (failed.message, failed.hint) == (info.value.message, info.value.hint) and "--direct" in failed.hint
        assert board_of(events) == {**dict.fromkeys(STEPS[:2], DONE), "preflight": FAILED,
                                    **dict.fromkeys(STEPS[3:], PENDING)}


def test_a_dry_run_stops_after_preflight_and_skips_the_rest(env, hub_root):  # noqa: F811
    with run_hub(hub_root) as hub:
        env(hub.url)
        events = []
        result = pull(PullRequest(model=MODEL, dry_run=True), load_settings(), load_profile(PROFILE),
                      events=events.append)
    assert result.dry_run
    assert outline(events) == run_through([DONE] * 3) + [("finished", step, SKIPPED) for step in STEPS[3:]]
    finished = {e.step: e for e in events if isinstance(e, StepFinished)}
    assert {e.summary for e in finished.values() if e.state is SKIPPED} == {"dry run"}
    assert "no Ollama server (dry run)" in finished["resolve"].summary
    assert finished["preflight"].summary.startswith("needs ")


def test_direct_skips_the_smoke_test_and_a_second_pull_is_all_resumed(env, hub_root):  # noqa: F811
    with run_hub(hub_root) as hub:
        env(hub.url)  # --direct needs no server
        events = []
        pull(PullRequest(model=MODEL, direct=True), load_settings(), load_profile(PROFILE), events=events.append)
        assert outline(events) == run_through([DONE] * 7 + [SKIPPED])
        assert "(--direct)" in [e.summary for e in events if isinstance(e, StepFinished)][6]
        events = []
        result = pull(PullRequest(model=MODEL, direct=True), load_settings(), load_profile(PROFILE),
                      events=events.append)
    assert result.resumed == ["all"]
    assert outline(events) == [("started", "resolve", None), ("finished", "resolve", DONE)] + [
        ("finished", step, RESUMED) for step in STEPS[1:]]


def test_the_cli_says_the_same_lines_as_the_pull(env, hub_root):  # noqa: F811
    """Off a terminal the CLI's stderr is the pull's notes, line for line: no step lines, no bars."""
    with run_hub(hub_root) as hub:
        env(hub.url)
        lines = []
        pull(PullRequest(model=MODEL, dry_run=True), load_settings(), load_profile(PROFILE), notify=lines.append)
        out = subprocess.run([sys.executable, "-m", "dslocal", "pull", MODEL, "--dry-run", "--hw", PROFILE],
                             capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr

    def sizes_masked(text: str) -> list[str]:  # the free space may change between the two runs
        return [re.sub(r"[\d.,]+ [KMGTPE]?i?B", "#", line) for line in text]

    assert sizes_masked(out.stderr.splitlines()) == sizes_masked(lines) and lines
    assert "disk:" in out.stdout


def test_the_runner_on_its_own():
    """Any error fails its step (and goes on up); a step may end the run early for the rest."""
    calls = []

    def ok(state):
        calls.append("ok")
        return Outcome(summary="fine")

    def interrupted(state):
        raise KeyboardInterrupt

    events = []
    runner = StepRunner([Step("resolve", ok), Step("plan", interrupted), Step("preflight", ok)], events.append)
    with pytest.raises(KeyboardInterrupt):
        runner.run(None)
    assert outline(events) == [("started", "resolve", None), ("finished", "resolve", DONE),
                               ("started", "plan", None), ("failed", "plan", None)]
    assert events[-1].message == "interrupted" and calls == ["ok"]
    events.clear()
    early = StepRunner([Step("resolve", lambda s: Outcome(rest=SKIPPED, rest_summary="why")), Step("plan", ok)],
                       events.append)
    assert early.run(None) is False and calls == ["ok"]
    assert events[-1] == StepFinished("plan", SKIPPED, 0.0, "why")


def test_progress_events_become_the_running_steps():
    assert step_progress("download", Progress("file:Q8_0/a.gguf", 5, 10, "Q8_0/a.gguf", 2.0, 2.5)) == StepProgress(
        "download", "download", 5, 10, item="Q8_0/a.gguf", rate=2.0, eta=2.5)
    assert step_progress("merge", Progress("merge", 5, 10, "a-00001-of-00002.gguf")) == StepProgress(
        "merge", "merge", 5, 10, detail="a-00001-of-00002.gguf")
    assert step_progress("create", Progress("upload", 3, 900, "sha256-ab")).phase == "upload"
    assert step_progress("merge", Progress("step:merge", 3, None, "merge")) is None
    assert step_progress("merge", Progress("merge:deleted", 5, 10, "a.gguf")) is None
