"""Doubles of the TUI's services: the real catalog and planner (pure), a preset machine, and recording fakes
for everything with side effects (Ollama, pulls, history), so screens are tested without a machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dslocal.tui.services import OllamaState, Services

SIZES = [(100, 30), (80, 24)]


@dataclass
class Recorder:
    """What the screens asked the core to do."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def fake_services(tmp_path: Path, recorder: Recorder, **overrides: Any) -> Services:
    from dslocal.catalog import load_catalog
    from dslocal.hardware.presets import load_profile
    from dslocal.hardware.support import verdict
    from dslocal.ollama.modelfile import load_family, render
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan as make_plan
    from dslocal.planner.rank import recommend as rank

    profile = load_profile("rtx4090-128gb")

    def plan(variant: Any, prof: Any, ctx: int | None = None, engine: str = "ollama") -> Any:
        recorder.add("plan", variant.id, ctx, engine)
        return make_plan(from_variant(variant), prof, ctx=ctx, engine=engine, variant=variant.id)

    def modelfile(variant: Any, p: Any) -> str:
        return render(load_family(variant.template), from_=f"./{variant.id}.gguf", num_ctx=p.num_ctx,
                      num_thread=p.num_thread, num_gpu=p.num_gpu)

    def control(action: str) -> str:
        recorder.add("ollama_control", action)
        return f"Ollama {action}ed"

    def pull(model: str, events: Any = None, **options: Any) -> Any:
        recorder.add("pull", model, options)
        return None

    services = Services(
        hardware=lambda: profile,
        verdicts=lambda prof: [(gpu, verdict(gpu)) for gpu in prof.gpus],
        catalog=lambda: list(load_catalog()),
        plan=plan,
        recommend=lambda prof: rank(load_catalog(), prof),
        modelfile=modelfile,
        ollama_state=lambda: OllamaState(installed=True, running=True, version="0.32.15", host="127.0.0.1:11434"),
        ollama_models=lambda: [{"name": "r1-distill-qwen-7b:latest", "size": 4_700_000_000}],
        ollama_loaded=lambda: [{"name": "r1-distill-qwen-7b:latest", "size": 6_000_000_000, "size_vram": 6_000_000_000}],
        ollama_control=control,
        ollama_log=lambda n: ["time=2026-12-02T00:00:00Z level=INFO msg=\"Listening on 127.0.0.1:11434\""][-n:],
        chat=lambda model: recorder.add("chat", model),
        history=lambda: None,
        pull=pull,
        sources=lambda vid: [{"name": "hf", "endpoint": "https://huggingface.co", "latency_ms": 180.0, "error": None},
                             {"name": "hf-mirror", "endpoint": "https://hf-mirror.com", "latency_ms": 35.0, "error": None},
                             {"name": "modelscope", "endpoint": "https://modelscope.cn", "latency_ms": None,
                              "error": "ConnectTimeout"}],
        disk_plan=lambda variant: {"model_bytes": variant.size_bytes, "needed_bytes": 3 * variant.size_bytes,
                                   "free_bytes": 500 << 30},
        models_dir=tmp_path / "models",
    )
    return services.__class__(**{**services.__dict__, **overrides})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def services(tmp_path: Path, recorder: Recorder) -> Services:
    return fake_services(tmp_path, recorder)
