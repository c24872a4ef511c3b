"""The hardware screen: what it shows from the core's profile, and where Enter goes."""

from __future__ import annotations

import pytest

from dslocal.tui.app import make_app
from tui.conftest import SIZES


async def test_it_shows_the_machine_and_goes_on_to_the_models(services):
    app = make_app(services)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = str(app.screen.query_one("#hardware").render())
        assert "RTX 4090" in text and "Ollama can use it" in text and "128" in text
        assert "0.32.15 running" in str(app.screen.query_one("#ollama").render())
        assert app.state.profile is not None
        await pilot.press("enter")
        await pilot.pause()
        assert type(app.screen).__name__ == "ModelsScreen"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot(snap_compare, services, size):
    async def ready(pilot):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(make_app(services), terminal_size=size, run_before=ready)
