"""The dslocal TUI: a keyboard-first wizard from this machine to a running chat, and a launcher afterwards.

A front end over the core: the screens call :class:`dslocal.tui.services.Services` (injected, so tests build
the app with doubles), long work runs in workers that post messages, nothing here decides anything.
Screens: hardware (1), models (2), source and disk (3), progress (4), chat (5), Ollama (6).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.app import App
from textual.binding import Binding

from dslocal.tui.services import Services

SCREEN_MODULES = {
    "hardware": "dslocal.tui.screens.hardware:HardwareScreen",
    "models": "dslocal.tui.screens.models:ModelsScreen",
    "source": "dslocal.tui.screens.source:SourceScreen",
    "progress": "dslocal.tui.screens.progress:ProgressScreen",
    "chat": "dslocal.tui.screens.chat:ChatScreen",
    "ollama": "dslocal.tui.screens.ollama:OllamaScreen",
}


@dataclass
class WizardState:
    """What the journey has chosen so far (shared by the screens)."""

    profile: Any = None  # HardwareProfile
    variant: Any = None  # catalog Variant
    plan: Any = None
    ctx: int | None = None
    engine: str = "ollama"
    source: str = "auto"
    model_name: str | None = None  # the Ollama model to chat with
    extra: dict[str, Any] = field(default_factory=dict)


def _load(path: str) -> type:
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class DslocalApp(App):
    CSS_PATH = "dslocal.tcss"
    TITLE = "dslocal"
    SUB_TITLE = "DeepSeek on this machine"
    BINDINGS = [
        Binding("1", "open('hardware')", "Hardware"),
        Binding("2", "open('models')", "Models"),
        Binding("5", "open('chat')", "Chat"),
        Binding("6", "open('ollama')", "Ollama"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, services: Services, *, first: str = "hardware") -> None:
        super().__init__()
        self.services = services
        self.state = WizardState()
        self.first = first

    def on_mount(self) -> None:
        self.open_screen(self.first)

    def make_screen(self, name: str):  # noqa: ANN201 - a Screen
        return _load(SCREEN_MODULES[name])(self.services, self.state)

    def open_screen(self, name: str) -> None:
        """Show ``name``: a fresh screen each time, so it shows the state as it is now."""
        self.push_screen(self.make_screen(name))

    def action_open(self, name: str) -> None:
        if self.screen.__class__.__name__.lower().startswith(name):
            return
        self.open_screen(name)


def make_app(services: Services, *, first: str = "hardware") -> DslocalApp:
    return DslocalApp(services, first=first)
