"""Shared fixtures: real GGUF models generated on demand, an isolated dslocal home, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dslocal.testing.ggufgen import ModelSpec, write_model

REPO = Path(__file__).resolve().parent.parent

MODEL_SPECS: dict[str, ModelSpec] = {
    "deepseek2-legacy": ModelSpec.deepseek2("legacy"),
    "deepseek2-mla": ModelSpec.deepseek2("mla"),
    "qwen2": ModelSpec.qwen2(),
    "llama": ModelSpec.llama(),
}


@pytest.fixture(scope="session")
def make_gguf(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[Path]]:
    """``make_gguf(kind, dtype="f32", shards=1)`` writes (once per session) and returns the files."""
    root = tmp_path_factory.mktemp("gguf")
    cache: dict[tuple[str, str, int], list[Path]] = {}

    def make(kind: str, dtype: str = "f32", shards: int = 1) -> list[Path]:
        key = (kind, dtype, shards)
        if key not in cache:
            folder = root / f"{kind}-{dtype}-{shards}"
            folder.mkdir()
            cache[key] = write_model(folder / f"{kind}-{dtype}.gguf", MODEL_SPECS[kind], dtype=dtype, shards=shards)
        return cache[key]

    return make


@pytest.fixture
def dslocal_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated DSLOCAL_HOME; clears the environment variables that settings read."""
    home = tmp_path / "home"
    monkeypatch.setenv("DSLOCAL_HOME", str(home))
    for name in (
        "DSLOCAL_CONFIG", "DSLOCAL_MODELS_DIR", "DSLOCAL_SOURCE", "DSLOCAL_HF_ENDPOINT", "HF_ENDPOINT",
        "OLLAMA_HOST", "OLLAMA_MODELS", "DSLOCAL_CONNECTIONS", "DSLOCAL_DEBUG",
        "DSLOCAL_HF_MIRROR_ENDPOINT", "DSLOCAL_MODELSCOPE_ENDPOINT", "HF_TOKEN", "DSLOCAL_OLLAMA_RELEASE_BASE",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dslocal ARGS`` in a real subprocess with the current environment (+ ``env``)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dslocal", *args],
        capture_output=True, text=True, env=full_env, timeout=timeout, stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH, for stand-in executables (toolbox.fake_tool)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return bin_dir
