"""Options shared by the planning commands: ``--hw FILE|PRESET`` and the profile it names."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext

hw_option = click.option(
    "--hw", "hw", metavar="FILE|PRESET",
    help="Plan for a saved profile ('dslocal hw --save FILE') or a preset (rtx4090-64gb, 2xh100-512gb, "
         "mac-m2-ultra-192gb, cpu-only-32gb, ...) instead of this machine.",
)
ollama_version_option = click.option(
    "--ollama-version", metavar="X.Y.Z",
    help="Plan for this Ollama version (default: the running server's, else the newest known, 0.32.15).",
)


def detect_ollama_version(app: AppContext, given: str | None) -> str | None:
    """The version to plan for: as given, else the local server's when one answers (as every --help says)."""
    if given:
        return given
    from dslocal.ollama.client import OllamaClient

    client = OllamaClient(str(app.settings()["ollama_host"]), timeout=2)
    state = client.probe()
    if state == "silent":
        from dslocal.cli.output import note

        note(f"note: Ollama at {client.url} accepts connections but does not answer; "
             "planning for the newest known version")
    return client.version() if state == "answers" else None


def load_hw(app: AppContext, hw: str | None):
    from dslocal.hardware.detect import detect
    from dslocal.hardware.presets import load_profile

    return load_profile(hw) if hw else detect(models_dir=app.settings().models_dir)
