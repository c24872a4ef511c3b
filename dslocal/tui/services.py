"""What the TUI asks the core for, injected (``make_app(services)``): tests build the app with doubles.

Every field is a plain callable over the core; the screens hold no logic of their own. ``real_services``
wires them to this machine, its settings, Ollama and the history store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslocal.chat.events import ChatEvent, ChatOptions, Message


@dataclass(frozen=True)
class OllamaState:
    installed: bool
    running: bool
    version: str | None
    host: str
    managed_pid: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class Services:
    hardware: Callable[[], Any]  # -> HardwareProfile
    verdicts: Callable[[Any], list[tuple[Any, Any]]]  # profile -> [(Gpu, Verdict)]
    catalog: Callable[[], Sequence[Any]]  # -> [Variant]
    plan: Callable[..., Any]  # (variant, profile, ctx=None, engine="ollama") -> Plan
    recommend: Callable[[Any], list[Any]]  # profile -> [Ranked]
    modelfile: Callable[[Any, Any], str]  # (variant, plan) -> Modelfile text
    ollama_state: Callable[[], OllamaState]
    ollama_models: Callable[[], list[dict[str, Any]]]  # /api/tags
    ollama_loaded: Callable[[], list[dict[str, Any]]]  # /api/ps
    ollama_control: Callable[[str], str]  # "start" | "stop" | "restart" -> what happened
    ollama_log: Callable[[int], list[str]]  # last N lines of the managed server's log
    chat: Callable[[str], Any]  # model name -> dslocal.chat.connect.Target
    history: Callable[[], Any]  # -> HistoryStore
    pull: Callable[..., Any]  # (model, events=sink, **options) -> result
    sources: Callable[[str], list[dict[str, Any]]]  # variant id -> [{name, url, latency_ms, note}]
    disk_plan: Callable[[Any], dict[str, Any]]  # variant -> {needed_bytes, free_bytes, ...}
    models_dir: Path


def stream_chat(target: Any, messages: Sequence[Message], options: ChatOptions) -> Iterator[ChatEvent]:
    return target.backend.stream(messages, options)


def real_services(config_file: Path | None = None) -> Services:  # pragma: no cover - wired by the CLI
    from dslocal.tui.wiring import build

    return build(config_file)
