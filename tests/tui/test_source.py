"""The source and disk screen: each mirror's latency (the fastest preselected, unreachable ones marked), the
disk plan with its warning, and Enter storing the source and asking for the progress screen."""

from __future__ import annotations

import dataclasses

import pytest

from dslocal.tui.app import make_app
from dslocal.tui.screens.source import (
    describe_disk,
    describe_latency,
    disk_fits,
    fastest,
    needed_bytes,
    normalize,
)
from tui.conftest import SIZES, fake_services

VARIANT = "r1-distill-qwen-7b-q4_k_m"
WHERE = {"layout": "single", "download_dir": "/m", "store": "/o", "server_version": None}


async def ready(pilot) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def source_app(services, variant_id: str | None = VARIANT):
    from dslocal.catalog import load_catalog

    app = make_app(services, first="source")
    app.state.profile = services.hardware()
    if variant_id is not None:
        app.state.variant = load_catalog().get(variant_id)
    return app


def opened(app) -> list[str]:
    """Record the screens asked for instead of opening them (the progress screen is another module)."""
    asked: list[str] = []
    app.open_screen = asked.append
    return asked


def text(app, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def cursor_key(app) -> str:
    t = app.screen.query_one("#sources")
    return t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value


async def test_it_measures_the_sources_and_preselects_the_fastest(tmp_path, recorder):
    base = fake_services(tmp_path, recorder)

    def sources(variant_id):
        recorder.add("sources", variant_id)
        return base.sources(variant_id)

    app = source_app(fake_services(tmp_path, recorder, sources=sources))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert recorder.calls == [("sources", (VARIANT,))]
        t = app.screen.query_one("#sources")
        assert t.row_count == 3 and cursor_key(app) == "hf-mirror"
        assert str(t.get_cell("hf", "latency")) == "180 ms"
        assert str(t.get_cell("hf-mirror", "latency")) == "35 ms fastest"
        assert str(t.get_cell("modelscope", "latency")) == "unreachable (ConnectTimeout)"
        assert "hf-mirror answered fastest" in text(app, "#source-status")
        assert "DeepSeek-R1-Distill-Qwen-7B" in text(app, "#source-variant")
        disk = text(app, "#disk")
        assert "needs 13.1 GiB free, you have 500.0 GiB: fits" in disk and "3x the model at the peak" in disk
        await pilot.press("r")
        await ready(pilot)
        assert recorder.names() == ["sources", "sources"]


async def test_enter_stores_the_source_and_asks_for_the_progress_screen(services):
    app = source_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        asked = opened(app)
        await pilot.press("enter")
        assert app.state.source == "hf-mirror" and asked == ["progress"]
        await pilot.press("up", "enter")
        assert app.state.source == "hf" and asked == ["progress", "progress"]


async def test_an_unreachable_source_is_not_chosen(services):
    app = source_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        asked = opened(app)
        await pilot.press("down", "enter")
        assert cursor_key(app) == "modelscope"
        assert asked == [] and app.state.source == "auto"


async def test_no_source_answering_leaves_the_choice_to_the_download(tmp_path, recorder):
    def offline(_variant_id):
        return [{"name": n, "endpoint": f"https://{n}", "latency_ms": None, "error": "ConnectionError"}
                for n in ("hf", "hf-mirror", "modelscope")]

    app = source_app(fake_services(tmp_path, recorder, sources=offline))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "no source answered" in text(app, "#source-status")
        asked = opened(app)
        await pilot.press("enter")
        assert app.state.source == "auto" and asked == ["progress"]


async def test_a_disk_too_small_is_a_clear_warning_and_stops_there(tmp_path, recorder):
    def small(variant):
        return {"model_bytes": variant.size_bytes, "needed_bytes": 3 * variant.size_bytes, "free_bytes": 10 << 30}

    app = source_app(fake_services(tmp_path, recorder, disk_plan=small))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        disk = text(app, "#disk")
        assert "does not fit" in disk and "Not enough space: free 3.1 GiB more" in disk and "--direct" in disk
        asked = opened(app)
        await pilot.press("enter")
        assert asked == [] and app.state.source == "auto"


async def test_a_disk_plan_that_fails_is_said_and_the_download_checks_it(tmp_path, recorder):
    def broken(_variant):
        raise TypeError("missing arguments")

    app = source_app(fake_services(tmp_path, recorder, disk_plan=broken))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        assert "disk space unknown (missing arguments)" in text(app, "#disk")
        asked = opened(app)
        await pilot.press("enter")
        assert asked == ["progress"] and app.state.source == "hf-mirror"


async def test_without_a_model_it_sends_back_to_the_models(services):
    app = source_app(services, variant_id=None)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        assert "No model chosen yet" in text(app, "#source-variant")
        asked = opened(app)
        await pilot.press("enter")
        assert asked == ["models"]


async def test_the_wizard_goes_from_the_models_to_the_source(services):
    app = make_app(services, first="models")
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("enter")
        await ready(pilot)
        assert type(app.screen).__name__ == "SourceScreen"
        assert app.state.variant.id in text(app, "#source-variant")
        asked = opened(app)
        await pilot.press("enter")
        assert asked == ["progress"] and app.state.source == "hf-mirror"


def test_the_core_s_disk_plan_as_a_dict():
    from dslocal.pipeline.disk import plan_disk

    plan = plan_disk(10 << 30, fetched=False, delete_shards=True, blob_done=False, create_done=False, rewrites=True,
                     shared_store=True, direct=False, free_bytes=20 << 30, **WHERE)
    data = dataclasses.asdict(plan)  # what the real wiring returns: no needed_bytes (a property)
    assert needed_bytes(data) == plan.needed_bytes == 30 << 30
    assert not disk_fits(data)
    lines = describe_disk(data)
    assert "needs 30.0 GiB free, you have 20.0 GiB" in lines[0] and "free 10.0 GiB more" in lines[1]
    assert any("3x the model at the peak" in line for line in lines)
    direct = dataclasses.asdict(plan_disk(10 << 30, fetched=False, delete_shards=True, blob_done=False,
                                          create_done=False, rewrites=True, shared_store=True, direct=True,
                                          free_bytes=20 << 30, **WHERE))
    assert disk_fits(direct) and not any("3x" in line for line in describe_disk(direct))
    remote = dataclasses.asdict(plan_disk(10 << 30, fetched=False, delete_shards=True, blob_done=False,
                                          create_done=False, rewrites=True, shared_store=False, direct=False,
                                          free_bytes=20 << 30, **WHERE))
    assert any("another disk" in line and "30.0 GiB" in line for line in describe_disk(remote))


def test_latencies():
    sources = [normalize({"name": "hf", "url": "https://huggingface.co", "latency_ms": 80.4, "note": None}),
               normalize({"name": "modelscope", "endpoint": "https://modelscope.cn", "latency_ms": None,
                          "error": "ConnectTimeout"})]
    assert sources[0]["endpoint"] == "https://huggingface.co"
    assert fastest(sources) == "hf" and fastest(sources[1:]) is None
    assert describe_latency(sources[0]) == "80 ms"
    assert describe_latency(sources[1]) == "unreachable (ConnectTimeout)"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, services, size):
    assert snap_compare(source_app(services), terminal_size=size, run_before=ready)
