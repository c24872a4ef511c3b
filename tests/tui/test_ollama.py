"""The Ollama panel: what each key asks the core, how a failure shows, the live log tail, and how it looks."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import DataTable, Log

from dslocal.errors import OllamaError
from dslocal.tui.app import make_app
from dslocal.tui.screens import ollama as panel
from dslocal.tui.services import OllamaState
from tui.conftest import SIZES, fake_services


async def settle(pilot) -> None:
    """Let the workers finish and their messages land."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


def text_of(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def test_key_6_opens_the_panel_with_the_state_and_the_models(tmp_path, recorder, monkeypatch):
    monkeypatch.setattr(panel, "LOG_EVERY", 0.1)
    reads = []

    def log(n: int) -> list[str]:
        reads.append(n)
        return ["time=2026-12-02T00:00:00Z level=INFO msg=\"Listening on 127.0.0.1:11434\""]

    app = make_app(fake_services(tmp_path, recorder, ollama_log=log))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("6")
        await settle(pilot)
        assert type(app.screen).__name__ == "OllamaScreen"
        state = text_of(app, "#ollama-state")
        assert "0.32.15" in state and "running" in state and "127.0.0.1:11434" in state
        table = app.screen.query_one("#ollama-models", DataTable)
        assert table.row_count == 1
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[0] == "r1-distill-qwen-7b:latest" and "100% GPU" in row[3]
        assert "Listening on 127.0.0.1:11434" in "\n".join(app.screen.query_one("#ollama-log", Log).lines)
        await pilot.press("1")
        await settle(pilot)
        assert type(app.screen).__name__ == "HardwareScreen"
        behind = len(reads)
        await asyncio.sleep(0.6)
        await pilot.pause()
        assert len(reads) == behind  # the panel behind stops reading its log


@pytest.mark.parametrize(("key", "action"), [("s", "start"), ("x", "stop"), ("r", "restart")])
async def test_each_key_runs_its_action_and_refreshes(tmp_path, recorder, key, action):
    reads = []

    def state() -> OllamaState:
        reads.append(1)
        return OllamaState(installed=True, running=True, version="0.32.15", host="127.0.0.1:11434", managed_pid=4242)

    app = make_app(fake_services(tmp_path, recorder, ollama_state=state), first="ollama")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        before = len(reads)
        await pilot.press(key)
        await settle(pilot)
        assert [call for call in recorder.calls if call[0] == "ollama_control"] == [("ollama_control", (action,))]
        assert f"Ollama {action}ed" in text_of(app, "#ollama-message")
        assert len(reads) > before  # the state was read again afterwards
        assert "pid 4242" in text_of(app, "#ollama-state")


async def test_a_failing_action_shows_its_message_and_hint(tmp_path, recorder):
    def control(action: str) -> str:
        recorder.add("ollama_control", action)
        raise OllamaError("Ollama is not installed", "install it with 'dslocal ollama install' (or from ollama.com)")

    app = make_app(fake_services(tmp_path, recorder, ollama_control=control), first="ollama")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert type(app.screen).__name__ == "OllamaScreen"  # still there, no traceback
        message = text_of(app, "#ollama-message")
        assert "start failed: Ollama is not installed" in message and "dslocal ollama install" in message
        assert app.screen.query_one("#ollama-message").has_class("error")
        notes = list(app._notifications)
        assert notes and notes[-1].severity == "error" and "dslocal ollama install" in notes[-1].message
        await pilot.press("s")  # not stuck as busy: the next press runs again
        await settle(pilot)
        assert recorder.names().count("ollama_control") == 2


async def test_an_unexpected_error_is_a_message_too(tmp_path, recorder):
    def control(action: str) -> str:
        raise PermissionError(1, "Operation not permitted")

    app = make_app(fake_services(tmp_path, recorder, ollama_control=control), first="ollama")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert "stop failed" in text_of(app, "#ollama-message")
        assert "Operation not permitted" in text_of(app, "#ollama-message")


async def test_the_log_tail_follows_the_log(tmp_path, recorder, monkeypatch):
    monkeypatch.setattr(panel, "LOG_EVERY", 0.2)
    log = ["level=INFO msg=\"Listening on 127.0.0.1:11434\""]
    app = make_app(fake_services(tmp_path, recorder, ollama_log=lambda n: log[-n:]), first="ollama")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        widget = app.screen.query_one("#ollama-log", Log)
        assert widget.lines == log
        log.append("level=INFO msg=\"loaded r1-distill-qwen-7b\"")
        for _ in range(50):  # the interval reads it again: no key pressed
            await asyncio.sleep(0.1)
            await pilot.pause()
            if len(widget.lines) == 2:
                break
        assert widget.lines == log


async def test_not_running_says_so_and_lists_nothing(tmp_path, recorder):
    def fail(*_args):
        raise AssertionError("no model call while Ollama is down")

    state = OllamaState(installed=False, running=False, version=None, host="127.0.0.1:9")
    app = make_app(fake_services(tmp_path, recorder, ollama_state=lambda: state, ollama_models=fail,
                                 ollama_loaded=fail, ollama_log=lambda n: []), first="ollama")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "not installed" in text_of(app, "#ollama-state")
        assert "shown when Ollama runs" in text_of(app, "#ollama-models-title")
        assert not app.screen.query_one("#ollama-models", DataTable).display


def test_the_pure_parts():
    assert panel.gpu_share({"size": 100, "size_vram": 100}) == "100% GPU"
    assert panel.gpu_share({"size": 100, "size_vram": 0}) == "100% CPU"
    assert panel.gpu_share({"size": 100, "size_vram": 40}) == "40% GPU, 60% CPU"
    assert panel.gpu_share({"size": 0}) == "?"
    rows = panel.model_rows([{"name": "a", "size": 1 << 30, "details": {"quantization_level": "Q4_K_M"}}],
                            [{"name": "b", "size": 2 << 30, "size_vram": 1 << 30}])
    assert rows == [("a", "1.0 GiB", "Q4_K_M", ""), ("b", "", "", "2.0 GiB, 50% GPU, 50% CPU")]
    assert panel.merge_tail(["a", "b"], ["a", "b"]) == (False, [])
    assert panel.merge_tail([], ["a"]) == (False, ["a"])
    assert panel.merge_tail(["a", "b"], ["b", "c", "d"]) == (False, ["c", "d"])
    assert panel.merge_tail(["a", "b"], ["x"]) == (True, ["x"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, tmp_path, recorder, monkeypatch, size):
    monkeypatch.setattr(panel, "LOG_EVERY", 3600.0)  # frozen: nothing changes while the picture is taken
    monkeypatch.setattr(panel, "STATE_EVERY", 3600.0)
    log = [f"time=2026-12-02T00:00:0{i}Z level=INFO msg=\"line {i}\"" for i in range(4)]
    services = fake_services(
        tmp_path, recorder, ollama_log=lambda n: log[-n:],
        ollama_state=lambda: OllamaState(installed=True, running=True, version="0.32.15", host="127.0.0.1:11434",
                                         managed_pid=4242),
        ollama_models=lambda: [
            {"name": "r1-distill-qwen-7b:latest", "size": 4_700_000_000, "details": {"quantization_level": "Q4_K_M"}},
            {"name": "deepseek-r1-0528:IQ1_S", "size": 185_000_000_000, "details": {"quantization_level": "IQ1_S"}},
        ],
        ollama_loaded=lambda: [{"name": "deepseek-r1-0528:IQ1_S", "size": 190_000_000_000,
                                "size_vram": 76_000_000_000}],
    )
    assert snap_compare(make_app(services, first="ollama"), terminal_size=size, run_before=settle)


def test_snapshot_not_installed(snap_compare, tmp_path, recorder, monkeypatch):
    monkeypatch.setattr(panel, "LOG_EVERY", 3600.0)
    monkeypatch.setattr(panel, "STATE_EVERY", 3600.0)
    state = OllamaState(installed=False, running=False, version=None, host="127.0.0.1:11434")
    services = fake_services(tmp_path, recorder, ollama_state=lambda: state, ollama_log=lambda n: [])
    assert snap_compare(make_app(services, first="ollama"), terminal_size=(80, 24), run_before=settle)
