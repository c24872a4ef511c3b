"""The whole wizard with the real services (``dslocal.tui.wiring.build()``): hardware, a catalog model, the
source and disk, the real pull against the loopback hub and the Ollama double, then the model answering.

The hub serves a scripted model (``write_scripted_model``: after ``<｜Assistant｜>`` it reasons "Hm." and
answers "OK!") under the catalog's own repository and file name for ``r1-distill-qwen-1.5b-q4_k_m``, so the
models screen lists it and the pull resolves it as a catalog variant. hf-mirror and ModelScope point at a
closed port: the source screen measures them unreachable and preselects hf, the hub double.

The walk ends with the question asked on the chat screen, which the progress screen's Enter opens with the
model the wizard set up (``state.model_name``); the same model also answers through ``services.chat(name)``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dslocal.catalog import load_catalog
from dslocal.chat.events import (
    AnswerDelta,
    ChatError,
    ChatOptions,
    Done,
    Message,
    ThinkingDelta,
)
from dslocal.testing.ggufgen import write_scripted_model
from dslocal.tui.app import make_app
from dslocal.tui.services import stream_chat

pytest.importorskip("llama_cpp")  # the Ollama double's import rewrite and its generation

VARIANT = "r1-distill-qwen-1.5b-q4_k_m"
NAME = "r1-distill-qwen-1.5b:latest"  # the variant's first alias, as the pull names it in Ollama
CLOSED = "http://127.0.0.1:9"


async def until(pilot, condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError(f"the wizard never got there: {what}")


def on(app, name: str) -> bool:
    return type(app.screen).__name__ == name


async def test_the_wizard_from_the_hardware_to_an_answer(tmp_path, monkeypatch, dslocal_home):
    from hubdouble import run_hub
    from ollama_double import run_ollama

    from dslocal.tui.wiring import build

    variant = load_catalog().get(VARIANT)
    hub_root = tmp_path / "hub"
    served = hub_root / variant.hf_repo / variant.paths[0]
    served.parent.mkdir(parents=True)
    write_scripted_model(served, arch="deepseek2", dtype="q8_0")
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    monkeypatch.setenv("DSLOCAL_HF_MIRROR_ENDPOINT", CLOSED)
    monkeypatch.setenv("DSLOCAL_MODELSCOPE_ENDPOINT", CLOSED)

    with run_hub(hub_root) as hub, run_ollama(store) as ollama:
        monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", hub.url)
        monkeypatch.setenv("OLLAMA_HOST", ollama.url.removeprefix("http://"))
        services = build()
        app = make_app(services)
        async with app.run_test(size=(100, 30)) as pilot:
            # 1. this machine, as detected
            await until(pilot, lambda: on(app, "HardwareScreen") and app.state.profile is not None, what="hardware")
            assert "0.32.15 running" in str(app.screen.query_one("#ollama").render())
            await pilot.press("enter")

            # 2. the catalog planned for it: the small distill is highlighted, then chosen
            await until(pilot, lambda: on(app, "ModelsScreen") and not app.screen.planning and app.screen.rows,
                        what="the catalog")
            models = app.screen
            table = models.query_one("#models")
            steps = table.get_row_index(VARIANT) - table.cursor_row
            await pilot.press(*(["down"] * steps if steps > 0 else ["up"] * -steps))
            assert models.highlighted().variant.id == VARIANT
            assert models.highlighted().plan.placement != "none", "the 1.5B fits on any machine that runs tests"
            await pilot.press("enter")
            assert app.state.variant.id == VARIANT

            # 3. the sources measured (the hub double answers, the closed port does not) and the disk plan
            await until(pilot, lambda: on(app, "SourceScreen") and app.screen.sources is not None
                        and (app.screen.disk is not None or app.screen.disk_error is not None), what="the sources")
            source = app.screen
            latency = {s["name"]: s["latency_ms"] for s in source.sources}
            assert latency["hf"] is not None and latency["hf-mirror"] is None and latency["modelscope"] is None
            assert source.highlighted()["name"] == "hf" and source.disk is not None, source.disk_error
            await pilot.press("enter")
            assert app.state.source == "hf"

            # 4. the real pull, step by step
            await until(pilot, lambda: on(app, "ProgressScreen") and app.screen.runs and not app.screen.running,
                        timeout=300, what="the pull")
            progress = app.screen
            states = {step: view.state.value for step, view in progress.board.views.items()}
            assert progress.finished, (progress.error, states)
            assert states == {"resolve": "done", "plan": "done", "preflight": "done", "download": "done",
                              "verify": "done", "merge": "done", "create": "done", "smoke": "done"}
            assert list(progress.items) == [variant.paths[0]], "one bar for the one file"
            item = progress.items[variant.paths[0]]
            assert item.done == item.total == served.stat().st_size
            assert hub.stats.file_requests > 0
            assert app.state.model_name == NAME
            assert NAME in [m["name"] for m in services.ollama_models()]
            assert f"{NAME} is ready in Ollama" in str(progress.query_one("#progress-status").render())
            notes = "\n".join(str(line.text) for line in progress.query_one("#progress-log").lines)
            assert "disk plan:" in notes and "ollama: success" in notes

            # 5. Enter opens the chat with the pulled model; the question is answered on the chat screen
            await pilot.press("enter")
            await until(pilot, lambda: on(app, "ChatScreen") and app.screen.session is not None
                        and getattr(app.screen.session.backend, "model", None) == NAME, timeout=60, what="the chat")
            app.screen.query_one("#chat-prompt").insert("Why is the sky blue?")
            await pilot.press("enter")
            await until(pilot, lambda: len(app.screen.session.messages) >= 2
                        and not app.screen.session.messages[-1].partial, timeout=120, what="the answer")
            answered = app.screen.session.messages[-1]
            body = app.screen.query("AnswerBody").last()
            shown = [strip.text for strip in body.settled_lines(body.size.width) + body.live_lines(body.size.width)]
            assert any("OK!" in line for line in shown), shown
        target = services.chat(app.state.model_name)
        events = list(stream_chat(target, [Message("user", "Why is the sky blue?")], ChatOptions()))
    assert (answered.role, answered.content, answered.thinking) == ("assistant", "OK!", "Hm.")
    assert not [e for e in events if isinstance(e, ChatError)], events
    thinking = "".join(e.text for e in events if isinstance(e, ThinkingDelta))
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    assert (thinking.strip(), answer.strip()) == ("Hm.", "OK!")
    assert isinstance(events[-1], Done) and events[-1].reason == "stop"
