"""The model screen: the catalog planned for the preset machine, the recommendation, re-planning on a new
context or engine (in a worker), and Enter choosing a variant."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from dslocal.tui.app import make_app
from dslocal.tui.screens.models import (
    CONTEXTS,
    ctx_label,
    fit_badge,
    have_label,
    next_ctx,
    tag_names,
)
from tui.conftest import SIZES, fake_services


async def ready(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def table(app):
    return app.screen.query_one("#models")


def cursor_key(app) -> str:
    t = table(app)
    return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


async def move_to(pilot, variant_id: str) -> None:
    t = table(pilot.app)
    t.move_cursor(row=t.get_row_index(variant_id), animate=False)
    await pilot.pause()


async def test_the_catalog_is_planned_and_the_recommendation_has_the_cursor(services, recorder):
    best = services.recommend(services.hardware())[0]
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert type(app.screen).__name__ == "ModelsScreen"
        assert app.state.profile is not None  # opened directly: the screen detected the machine itself
        assert table(app).row_count == len(services.recommend(services.hardware()))
        assert cursor_key(app) == best.variant.id
        assert f"★ {best.variant.id}" in text(app, "#models-status")
        detail = text(app, "#models-reasons")
        assert "recommended" in detail and best.reason in detail
        assert all(note in detail for note in best.plan.notes[:1])
        assert f"FROM ./{best.variant.id}.gguf" in text(app, "#models-modelfile")
        assert "plan" not in recorder.names()  # recommend() already planned the default context


async def test_each_row_has_a_fit_badge_speed_size_and_what_is_there(services):
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        t = table(app)
        row = [str(c) for c in t.get_row("r1-distill-qwen-7b-q4_k_m")]
        assert row[1] == "all on GPU" and row[2] == "160" and row[3] == "4.4 GiB" and row[4] == "in Ollama"
        assert str(t.get_cell("r1-distill-qwen-32b-q8_0", "fit")) == "45 layers on GPU"
        assert str(t.get_cell("v4-flash-ud-q2_k_xl", "fit")) == "experts on CPU"
        assert str(t.get_cell("r1-671b-q4_k_m", "fit")) == "from disk"
        assert str(t.get_cell("r1-distill-qwen-1.5b-q4_k_m", "have")) == ""


async def test_downloaded_files_show_on_disk(tmp_path, recorder):
    services = fake_services(tmp_path, recorder)
    variant = next(v for v in services.catalog() if v.id == "r1-distill-qwen-1.5b-q8_0")
    for path in variant.paths:
        target = services.models_dir / variant.hf_repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"GGUF")
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert str(table(app).get_cell(variant.id, "have")) == "on disk"


async def test_a_new_context_plans_the_catalog_again_with_it(services, recorder):
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        first = cursor_key(app)
        planned = [r.variant.id for r in services.recommend(services.hardware()) if r.planned]
        await pilot.press("c")
        await ready(pilot)
        assert app.state.ctx == 4096
        calls = [args for name, args in recorder.calls if name == "plan"]
        assert sorted(c[0] for c in calls) == sorted(planned)
        assert {(c[1], c[2]) for c in calls} == {(4096, "ollama")}
        assert "context 4K" in text(app, "#models-status") and "planning" not in text(app, "#models-status")
        assert "context 4096" in text(app, "#models-reasons")
        assert "num_ctx 4096" in text(app, "#models-modelfile")
        assert cursor_key(app) == first  # the cursor stays where it was
        recorder.calls.clear()
        await pilot.press("c")
        await ready(pilot)
        assert {args[1] for name, args in recorder.calls if name == "plan"} == {8192}
        recorder.calls.clear()
        await pilot.press("C", "C")  # back past 4K to the planner's own default: recommend()'s plans, no call
        await ready(pilot)
        assert app.state.ctx is None and "context auto" in text(app, "#models-status")
        assert [args[1] for name, args in recorder.calls if name == "plan"] == [4096] * len(planned)


async def test_the_engine_plans_again_for_llama_cpp(services, recorder):
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("e")
        await ready(pilot)
        assert app.state.engine == "llama.cpp"
        calls = [args for name, args in recorder.calls if name == "plan"]
        assert calls and {(c[1], c[2]) for c in calls} == {(None, "llama.cpp")}
        assert "engine llama.cpp" in text(app, "#models-status")
        assert text(app, "#models-modelfile").startswith("llama-server -c ")
        await pilot.press("e")
        await ready(pilot)
        assert app.state.engine == "ollama" and "Modelfile" in text(app, "#models-modelfile")


async def test_planning_runs_in_a_worker_and_only_the_latest_context_is_shown(tmp_path, recorder):
    release = threading.Event()
    base = fake_services(tmp_path, recorder)

    def slow_plan(variant, profile, ctx=None, engine="ollama"):
        if ctx == 4096:
            release.wait(10)
        return base.plan(variant, profile, ctx=ctx, engine=engine)

    services = fake_services(tmp_path, recorder, plan=slow_plan)
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("c")  # 4K: blocked in the worker
        await pilot.pause()
        assert "planning" in text(app, "#models-status")
        await pilot.press("d")  # the UI still answers
        assert not app.screen.query_one("#models-detail").display
        await pilot.press("d", "c")  # 8K while 4K is still planning
        await pilot.pause()
        release.set()
        await ready(pilot)
        assert app.state.ctx == 8192
        shown = app.screen.rows
        assert {row.plan.num_ctx for row in shown.values() if row.planned} == {8192}
        assert "context 8K" in text(app, "#models-status") and "planning" not in text(app, "#models-status")


async def test_enter_chooses_the_variant_and_its_plan_and_opens_the_source_screen(services):
    app = make_app(services, first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("c", "c")  # 8K
        await ready(pilot)
        await move_to(pilot, "r1-distill-qwen-7b-q4_k_m")
        assert "DeepSeek-R1-Distill-Qwen-7B" in text(app, "#models-reasons")
        await pilot.press("enter")
        await ready(pilot)
        assert type(app.screen).__name__ == "SourceScreen"
        assert app.state.variant.id == "r1-distill-qwen-7b-q4_k_m"
        assert app.state.plan.variant == "r1-distill-qwen-7b-q4_k_m" and app.state.plan.num_ctx == 8192
        assert app.state.ctx == 8192 and app.state.engine == "ollama"
        await pilot.press("escape")  # back to the models, as they were
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelsScreen" and cursor_key(app) == "r1-distill-qwen-7b-q4_k_m"


async def test_a_variant_that_does_not_fit_is_not_chosen(tmp_path, recorder):
    base = fake_services(tmp_path, recorder)

    def recommend(profile):
        ranked = base.recommend(profile)
        first = ranked[0]
        return [dataclasses.replace(first, plan=dataclasses.replace(first.plan, placement="none", fits=False,
                                                                    gpu_layers=0)), *ranked[1:]]

    app = make_app(fake_services(tmp_path, recorder, recommend=recommend), first="models")
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert str(table(app).get_cell(cursor_key(app), "fit")) == "won't fit"
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelsScreen" and app.state.variant is None


async def test_ollama_not_answering_leaves_the_screen_usable(tmp_path, recorder):
    def down():
        raise ConnectionError("connection refused")

    app = make_app(fake_services(tmp_path, recorder, ollama_models=down), first="models")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "Ollama's models unknown" in text(app, "#models-status")
        assert table(app).row_count > 0


async def test_a_failing_planner_is_said_and_the_app_stays_up(tmp_path, recorder):
    def broken(_profile):
        raise RuntimeError("no catalog")

    app = make_app(fake_services(tmp_path, recorder, recommend=broken), first="models")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "could not plan the catalog: no catalog" in text(app, "#models-status")
        await pilot.press("enter", "c")
        await ready(pilot)
        assert type(app.screen).__name__ == "ModelsScreen" and app.state.variant is None


def test_the_badges_and_contexts():
    from dslocal.catalog import load_catalog
    from dslocal.hardware.presets import load_profile
    from dslocal.planner.rank import recommend

    plan = recommend(load_catalog(), load_profile("rtx4090-128gb"))[0].plan
    r = dataclasses.replace
    assert fit_badge(r(plan, placement="gpu")) == "all on GPU"
    assert fit_badge(r(plan, placement="partial", override_tensors="x=CPU")) == "experts on CPU"
    assert fit_badge(r(plan, placement="partial", override_tensors=None, gpu_layers=30)) == "30 layers on GPU"
    assert fit_badge(r(plan, placement="cpu")) == "CPU"
    assert fit_badge(r(plan, placement="mmap")) == "from disk"
    assert fit_badge(r(plan, placement="none")) == "won't fit"
    assert fit_badge(plan, planned=False) == "not planned"
    assert [ctx_label(c) for c in CONTEXTS] == ["auto", "4K", "8K", "16K", "32K", "64K", "128K"]
    assert next_ctx(None) == 4096 and next_ctx(131072) is None and next_ctx(None, -1) == 131072
    assert tag_names([{"name": "r1-distill-qwen-7b:latest"}, {"name": "x:q4"}]) == {"r1-distill-qwen-7b", "x:q4"}


def test_have_label_prefers_ollama(tmp_path):
    from dslocal.catalog import load_catalog

    variant = load_catalog().get("r1-distill-qwen-7b-q4_k_m")
    assert have_label(variant, {"r1-distill-qwen-7b"}, tmp_path) == "in Ollama"
    assert have_label(variant, set(), tmp_path) == ""


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, services, size):
    assert snap_compare(make_app(services, first="models"), terminal_size=size, run_before=ready)
