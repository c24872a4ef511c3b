"""What every screen is built with: the injected services and the wizard's shared state."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen


class WizardScreen(Screen):
    def __init__(self, services: Any, state: Any) -> None:
        super().__init__()
        self.services = services  # dslocal.tui.services.Services
        self.state = state  # dslocal.tui.app.WizardState
