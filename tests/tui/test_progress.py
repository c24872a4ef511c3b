"""The progress screen: a fake ``services.pull`` plays a scripted event sequence (the runner's events, with
per-shard download progress, a resumed step, a failure with its hint), and the screen's steps, bars, notes,
failure modal, cancel and resume follow it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Any

import pytest

from dslocal.errors import OllamaError
from dslocal.pipeline.runner import failure
from dslocal.pipeline.steps import (
    STEPS,
    StepFailed,
    StepFinished,
    StepNote,
    StepProgress,
    StepStarted,
    StepState,
)
from dslocal.tui.app import make_app
from dslocal.tui.screens.progress import (
    STOPPED,
    BarLine,
    ConfirmCancel,
    FailureModal,
    PullCancelled,
    bar_text,
    describe_counts,
    format_eta,
    format_seconds,
    short_item,
)
from tui.conftest import SIZES, fake_services

VARIANT = "r1-671b-ud-iq1_s"
NAME = "r1-671b-iq1s:latest"
GIB = 1 << 30
MIB = 1 << 20
SHARDS = [f"DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
SHARD = 40 * GIB
HOLD = "hold"  # in a script: the pull keeps sending its latest counts here until released (a download running)


def start(step: str, *events: Any, state: StepState = StepState.DONE, seconds: float = 0.5,
          summary: str = "") -> list[Any]:
    return [StepStarted(step), *events, StepFinished(step, state, seconds, summary)]


def head() -> list[Any]:
    """resolve, plan, preflight, and a download halfway: one shard whole, one at 60 %, one at 10 %."""
    return [
        *start("resolve", StepNote("resolve", f"{VARIANT} as {NAME}"), seconds=0.3,
               summary=f"{VARIANT} as {NAME}; Ollama 0.32.15"),
        *start("plan", seconds=0.1, summary="partial, num_ctx 8192, ~4.1 tok/s; 3 files, 130.6 GiB"),
        *start("preflight", StepNote("preflight", "disk plan: needs 391.7 GiB, 500.0 GiB free"), seconds=0.1,
               summary="needs 391.7 GiB, 500.0 GiB free"),
        StepStarted("download"),
        StepNote("download", "resuming 2 files an earlier run left"),
        StepProgress("download", "download", SHARD, SHARD, item=SHARDS[0], rate=None, eta=None),
        StepProgress("download", "download", SHARD * 6 // 10, SHARD, item=SHARDS[1], rate=45 * MIB, eta=402.0),
        StepProgress("download", "download", SHARD // 10, SHARD, item=SHARDS[2], rate=44 * MIB, eta=921.0),
        StepProgress("download", "download", SHARD * 17 // 10, 3 * SHARD, detail=SHARDS[2], rate=89 * MIB,
                     eta=620.0),
        HOLD,
    ]


def tail() -> list[Any]:
    """The rest of a pull that works: the download resumed, then verify, merge, create and smoke."""
    return [
        StepProgress("download", "download", SHARD, SHARD, item=SHARDS[1], rate=45 * MIB, eta=0.0),
        StepProgress("download", "download", SHARD, SHARD, item=SHARDS[2], rate=44 * MIB, eta=0.0),
        StepProgress("download", "download", 3 * SHARD, 3 * SHARD, rate=89 * MIB, eta=0.0),
        StepFinished("download", StepState.RESUMED, 1064.2, "3 files, 130.6 GiB (40.0 GiB of it already here)"),
        *start("verify", seconds=0.4, summary="3 shards, one complete set"),
        *start("merge", StepProgress("merge", "merge", 60 * GIB, 3 * SHARD, detail=SHARDS[1], rate=1.1 * GIB,
                                     eta=64.0), seconds=118.0, summary="sha256:4f1c2a9e0b7d... (130.6 GiB, ollama layout)"),
        *start("create", StepProgress("create", "validate", 100 * GIB, 3 * SHARD), seconds=305.0,
               summary=f"{NAME} created by Ollama 0.32.15"),
        *start("smoke", StepNote("smoke", f"loading {NAME} for a short test (a large model can take minutes)"),
               seconds=41.0, summary="8 tokens in 41.0 s"),
    ]


def failing_tail() -> list[Any]:
    return [*tail()[:4], *start("verify", seconds=0.4), *start("merge", seconds=118.0), StepStarted("create"),
            OllamaError("Ollama 0.32.15 refused the model: unsupported architecture 'deepseek9'",
                        "update Ollama ('dslocal ollama install'), then r to resume")]


class ScriptedPull:
    """``services.pull`` playing ``scripts[n]`` on the n-th call, with the runner's semantics: an exception
    (one in a script, or one the sink raises) ends the running step as StepFailed and goes on up."""

    def __init__(self, *scripts: Iterable[Any]) -> None:
        self.scripts = [list(s) for s in scripts]
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self.raised: list[BaseException] = []

    def __call__(self, model: str, events: Callable[[Any], None] | None = None, **options: Any) -> Any:
        assert events is not None
        self.calls.append((model, options))
        script = self.scripts[min(len(self.calls), len(self.scripts)) - 1]
        step, latest = None, None
        try:
            for item in script:
                if isinstance(item, BaseException):
                    raise item
                if item == HOLD:
                    self.held.set()
                    while not self.release.wait(0.02):
                        events(latest)
                    continue
                if isinstance(item, StepStarted):
                    step = item.step
                if isinstance(item, StepProgress):
                    latest = item
                events(item)
        except BaseException as error:
            self.raised.append(error)
            if step is not None:
                message, hint = failure(error)
                events(StepFailed(step, message, hint, 0.5))
            raise
        return SimpleNamespace(name=NAME)


@pytest.fixture
def pulls():
    made: list[ScriptedPull] = []

    def make(*scripts: Iterable[Any]) -> ScriptedPull:
        made.append(ScriptedPull(*scripts))
        return made[-1]

    yield make
    for pull in made:  # no test leaves a thread behind
        pull.release.set()


def progress_app(services, source: str = "hf-mirror"):
    from dslocal.catalog import load_catalog

    app = make_app(services, first="progress")
    app.state.profile = services.hardware()
    app.state.variant = load_catalog().get(VARIANT)
    app.state.source = source
    return app


async def until(pilot, condition: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.02)
    raise AssertionError("the screen never got there")


def screen_of(app):
    from dslocal.tui.screens.progress import ProgressScreen

    return next(s for s in app.screen_stack if isinstance(s, ProgressScreen))


def text(app, selector: str) -> str:
    widget = screen_of(app).query_one(selector)
    return widget.render().plain if hasattr(widget.render(), "plain") else str(widget.render())


def row_text(widget, width: int = 100) -> str:
    """What a Static holding a Rich renderable shows, as plain text."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None)
    console.print(widget.content)
    return console.export_text()


def step_text(app, step: str) -> str:
    return row_text(screen_of(app).query_one(f"#step-{step}"))


def shard_texts(app) -> list[str]:
    return [row_text(row) for row in screen_of(app).query_one("#progress-shards").children]


def states(app) -> dict[str, str]:
    screen = screen_of(app)
    return {step: STOPPED if step in screen.stopped else view.state.value for step, view in screen.board.views.items()}


def mid_download(app) -> bool:
    screen = screen_of(app)
    return screen.board.views["download"].state == StepState.RUNNING and len(screen.items) == 3


def opened(app) -> list[str]:
    asked: list[str] = []
    app.open_screen = asked.append
    return asked


# -- the steps and bars ------------------------------------------------------------------------------------


async def test_the_steps_and_the_shard_bars_follow_the_pull(tmp_path, recorder, pulls):
    pull = pulls([*head(), *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: mid_download(app))
        assert pull.calls == [(VARIANT, {"source": "hf-mirror", "ctx": None})]
        assert states(app) == {"resolve": "done", "plan": "done", "preflight": "done", "download": "running",
                               "verify": "pending", "merge": "pending", "create": "pending", "smoke": "pending"}
        assert "0.3 s" in step_text(app, "resolve") and f"{VARIANT} as {NAME}" in step_text(app, "resolve")
        download = step_text(app, "download")
        assert "56%" in download and "68.0 GiB / 120.0 GiB" in download and "89.0 MiB/s" in download
        assert "10:20 left" in download
        one, two, three = shard_texts(app)
        assert "IQ1_S-00001-of-00003.gguf" in one and "complete" in one
        assert "IQ1_S-00002-of-00003.gguf" in two and "60%" in two and "45.0 MiB/s" in two and "6:42 left" in two
        assert "10%" in three and "15:21 left" in three
        log = "\n".join(str(line.text) for line in screen_of(app).query_one("#progress-log").lines)
        assert "download: resuming 2 files an earlier run left" in log and "preflight: disk plan" in log
        asked = opened(app)
        await pilot.press("enter")
        assert asked == [], "Enter does nothing before the model is in Ollama"

        pull.release.set()
        await until(pilot, lambda: screen_of(app).finished)
        assert states(app) == {"resolve": "done", "plan": "done", "preflight": "done", "download": "resumed",
                               "verify": "done", "merge": "done", "create": "done", "smoke": "done"}
        assert "40.0 GiB of it already here" in step_text(app, "download") and "17:44" in step_text(app, "download")
        assert all("complete" in line for line in shard_texts(app))
        assert "8 tokens in 41.0 s" in step_text(app, "smoke")
        assert f"{NAME} is ready in Ollama" in text(app, "#progress-status")
        assert app.state.model_name == NAME
        assert screen_of(app).query_one("#progress-chat").display
        await pilot.press("enter")
        assert asked == ["chat"]
        await pilot.press("r")
        assert len(pull.calls) == 1, "nothing to resume once the model is in Ollama"


async def test_a_bar_shows_for_each_long_step_while_it_runs(tmp_path, recorder, pulls):
    hold_in_merge = [*head()[:-1], *tail()[:6], StepStarted("merge"),
                     StepProgress("merge", "merge", 60 * GIB, 3 * SHARD, detail="shard 2 of 3", rate=1.1 * GIB,
                                  eta=64.0), HOLD, StepFinished("merge", StepState.DONE, 1.0), *tail()[-6:]]
    pull = pulls(hold_in_merge)
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: pull.held.is_set() and screen_of(app).board.views["merge"].state == StepState.RUNNING)
        await pilot.pause(0.2)
        merge = step_text(app, "merge")
        assert "50%" in merge and "60.0 GiB / 120.0 GiB" in merge and "1.1 GiB/s" in merge and "1:04 left" in merge
        assert "shard 2 of 3" not in merge, "what is worked on only where the bar keeps its length"
        assert states(app)["verify"] == "done" and states(app)["download"] == "resumed"
        pull.release.set()
        await until(pilot, lambda: screen_of(app).finished)
        assert "validate" not in step_text(app, "create"), "a finished step shows its summary, not its bar"


# -- failure, resume, cancel ---------------------------------------------------------------------------------


async def test_a_failure_opens_a_modal_with_its_message_and_hint_and_r_resumes(tmp_path, recorder, pulls):
    pull = pulls([*head()[:-1], *failing_tail()], [*head()[:-1], *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FailureModal))
        modal = app.screen
        assert "step 7 of 8, create" in str(modal.query_one("#failure-title").render())
        assert "unsupported architecture 'deepseek9'" in str(modal.query_one("#failure-message").render())
        assert "update Ollama ('dslocal ollama install'), then r to resume" in str(modal.query_one("#failure-hint").render())
        assert states(app)["create"] == "failed" and states(app)["smoke"] == "pending"
        assert "refused the model" in step_text(app, "create")
        await pilot.press("enter")  # on the focused Close
        assert not isinstance(app.screen, FailureModal)
        assert "failed at create" in text(app, "#progress-status")
        assert len(pull.calls) == 1
        await pilot.press("r")
        await until(pilot, lambda: screen_of(app).finished)
        assert len(pull.calls) == 2 and pull.calls[1] == pull.calls[0]
        assert states(app)["create"] == "done" and app.state.model_name == NAME
        log = "\n".join(str(line.text) for line in screen_of(app).query_one("#progress-log").lines)
        assert "create: failed: Ollama 0.32.15 refused" in log and "resuming" in log


async def test_the_modal_s_resume_runs_the_pull_again(tmp_path, recorder, pulls):
    pull = pulls([*head()[:-1], *failing_tail()], [*head()[:-1], *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FailureModal))
        await pilot.press("r")
        await until(pilot, lambda: screen_of(app).finished)
        assert len(pull.calls) == 2


async def test_cancel_asks_then_stops_the_pull_and_r_resumes_it(tmp_path, recorder, pulls):
    resumed = [*head()[:-1], *tail()]
    pull = pulls(head(), resumed)
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: mid_download(app))
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmCancel)
        await pilot.pause(0.1)
        assert screen_of(app).running and not pull.raised, "going on keeps the pull running"

        await pilot.press("c")
        assert isinstance(app.screen, ConfirmCancel)
        await pilot.press("enter")  # on the focused Stop
        await until(pilot, lambda: not screen_of(app).running)
        assert len(pull.raised) == 1 and isinstance(pull.raised[0], PullCancelled), "the sink raised in the pull"
        assert not pull.release.is_set(), "the pull stopped by itself, at its next event"
        assert states(app)["download"] == STOPPED and states(app)["verify"] == "pending"
        assert "stopped" in text(app, "#progress-status")
        assert not any(isinstance(s, FailureModal) for s in app.screen_stack), "a cancel is not a failure"
        assert "stopped here" not in step_text(app, "download") and "56%" in step_text(app, "download"), \
            "the stopped download keeps its bar"

        await pilot.press("r")
        await until(pilot, lambda: screen_of(app).finished)
        assert len(pull.calls) == 2 and states(app)["download"] == "resumed"
        assert app.state.model_name == NAME


async def test_one_pull_at_a_time_a_second_progress_screen_goes_back_to_the_running_one(tmp_path, recorder, pulls):
    pull = pulls([*head(), *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: mid_download(app))
        first = app.screen
        await pilot.press("2")  # the models, over the running pull
        await until(pilot, lambda: type(app.screen).__name__ == "ModelsScreen" and not app.screen.planning)
        await pilot.press("down", "enter")  # another model
        await until(pilot, lambda: type(app.screen).__name__ == "SourceScreen" and app.screen.sources is not None
                    and app.screen.disk is not None)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is first)
        assert len(pull.calls) == 1 and first.running
        assert [type(s).__name__ for s in app.screen_stack[1:]] == ["ProgressScreen"]
        assert first.variant.id == VARIANT != app.state.variant.id, "the running pull is still its own model's"
        pull.release.set()
        await until(pilot, lambda: first.finished)
        assert pull.calls[0][0] == VARIANT


async def test_escape_goes_back_once_the_pull_is_over(tmp_path, recorder, pulls):
    pull = pulls([*head()[:-1], *failing_tail()])
    app = make_app(fake_services(tmp_path, recorder, pull=pull), first="hardware")
    async with app.run_test(size=(80, 24)) as pilot:
        from dslocal.catalog import load_catalog

        app.state.variant = load_catalog().get(VARIANT)
        app.open_screen("progress")
        await until(pilot, lambda: isinstance(app.screen, FailureModal))
        await pilot.press("escape")
        await pilot.press("escape")
        assert type(app.screen).__name__ == "HardwareScreen"
        assert pull.calls[0][1]["source"] == "auto"


async def test_without_a_model_it_says_so(services, recorder):
    app = make_app(services, first="progress")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert "No model chosen yet" in text(app, "#progress-status")
        await pilot.press("r")
        await pilot.pause()
        assert "pull" not in recorder.names()


async def test_a_fake_pull_that_returns_nothing_names_the_model_after_the_variant(services):
    app = progress_app(services)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: screen_of(app).finished)
        assert app.state.model_name == NAME.removesuffix(":latest")


async def test_a_real_pull_stops_at_cancel_and_resume_finishes_it(tmp_path, monkeypatch, dslocal_home):
    """The real services (``wiring.build()``) against the loopback hub (throttled) and the Ollama double: the
    sink's exception stops the real downloader mid-file, and r runs the pull again to the end."""
    pytest.importorskip("llama_cpp")  # the Ollama double's import rewrite
    from hubdouble import run_hub
    from ollama_double import run_ollama

    from dslocal.catalog import load_catalog
    from dslocal.testing.ggufgen import ModelSpec, write_model
    from dslocal.tui.wiring import build

    variant = load_catalog().get("r1-distill-qwen-1.5b-q4_k_m")
    served = tmp_path / "hub" / variant.hf_repo / variant.paths[0]
    served.parent.mkdir(parents=True)
    spec = ModelSpec.deepseek2("mla", n_embd=256, n_layer=24, n_head=8, n_expert=8, n_ff_exp=128, q_lora_rank=64,
                               kv_lora_rank=64, n_ff=512)  # 23 MiB: a download of 23 progress events
    write_model(served, spec, dtype="q8_0", shards=1, fast_fill=True)
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    with run_hub(tmp_path / "hub") as hub, run_ollama(store) as ollama:
        monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", hub.url)
        monkeypatch.setenv("OLLAMA_HOST", ollama.url.removeprefix("http://"))
        hub.faults.throttle_bps = 4 << 20
        app = make_app(build(), first="progress")
        app.state.variant, app.state.source = variant, "hf"
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: any(p.done for p in screen_of(app).items.values()))
            await pilot.press("c", "y")
            await until(pilot, lambda: not screen_of(app).running)
            screen = screen_of(app)
            assert not screen.finished and not screen.error, screen.error
            assert states(app)["download"] == STOPPED and states(app)["verify"] == "pending"
            (item,) = screen.items.values()
            assert item.done < item.total == served.stat().st_size, "stopped mid-file (its unfinished chunk uncounted)"
            assert not isinstance(app.screen, FailureModal)

            hub.faults.throttle_bps = 0
            await pilot.press("r")
            await until(pilot, lambda: not screen_of(app).running, timeout=120)
            assert screen.finished, (screen.error, states(app))
            assert set(states(app).values()) == {"done"}
            assert app.state.model_name == "r1-distill-qwen-1.5b:latest"
            assert "r1-distill-qwen-1.5b:latest" in [m["name"] for m in app.services.ollama_models()]


# -- pure helpers -------------------------------------------------------------------------------------------


def test_helpers():
    assert format_eta(7) == "0:07" and format_eta(750) == "12:30" and format_eta(7500) == "2:05:00"
    assert format_seconds(0.25) == "0.2 s" and format_seconds(12.4) == "12 s" and format_seconds(185) == "3:05"
    assert format_seconds(None) == "" and format_eta(None) == ""
    p = StepProgress("download", "download", 3 * GIB // 2, 5 * GIB // 2, item="a/b.gguf", rate=45 * MIB, eta=31)
    assert describe_counts(p) == "1.5 GiB / 2.5 GiB · 45.0 MiB/s · 0:31 left"
    assert describe_counts(StepProgress("create", "upload", 10, None)) == "10 B"
    assert short_item("DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf") == "…IQ1_S-00001-of-00003.gguf"
    assert short_item("x/model.gguf") == "model.gguf"
    assert bar_text(5, 10, 10).plain == "━━━━━╺━━━━" and bar_text(0, None, 4).plain == "━━━━"
    assert bar_text(10, 10, 6).plain == "━━━━━━"
    line = BarLine(p).text(60).plain
    assert line.startswith("━") and "60%" in line and line.endswith("0:31 left") and len(line) <= 60
    assert len(BarLine(p).text(30).plain) <= 30
    merging = StepProgress("merge", "merge", GIB, 2 * GIB, detail="shard 2 of 3")
    assert BarLine(merging).text(80).plain.endswith("1.0 GiB / 2.0 GiB · shard 2 of 3")
    assert "shard" not in BarLine(merging).text(40).plain


def test_the_steps_are_the_pipeline_s():
    assert STEPS == ("resolve", "plan", "preflight", "download", "verify", "merge", "create", "smoke")


# -- snapshots ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_mid_download(snap_compare, tmp_path, recorder, pulls, size):
    pull = pulls([*head(), *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))

    async def ready(pilot):
        await until(pilot, lambda: mid_download(app))
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_finished(snap_compare, tmp_path, recorder, pulls, size):
    pull = pulls([*head()[:-1], *tail()])
    app = progress_app(fake_services(tmp_path, recorder, pull=pull))

    async def ready(pilot):
        await until(pilot, lambda: screen_of(app).finished)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=ready)
