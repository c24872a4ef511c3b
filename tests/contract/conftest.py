"""The Ollama contract suite: the same scenarios and the same assertions against any ``ollama``.

By default the server is the double (``tests/fake_ollama.py serve``, which serves
``tests/ollama_double.py``); with ``DSLOCAL_OLLAMA_BIN=/path/to/ollama`` it is that real
executable. Either way it runs as a subprocess, ``BIN serve``, on a free loopback port with its
own ``OLLAMA_MODELS`` and ``HOME``, and ``OLLAMA_NO_CLOUD=1``. Scenarios talk HTTP and look at
the store on disk only, never at the double's internals. The double's own version can be
chosen with ``FAKE_OLLAMA_VERSION``; scenarios that need a version the real server is not skip.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from contract.api import R1_JINJA, with_chat_template
from dslocal.testing.ggufgen import ModelSpec, write_model

pytest.importorskip("llama_cpp")

TESTS = Path(__file__).resolve().parent.parent
BIN = os.environ.get("DSLOCAL_OLLAMA_BIN", "")
REAL = bool(BIN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``ollama serve`` (real or the double), restartable on the same store."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.models_dir = root / "models"
        self.home = root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.extra = dict(env)
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.version = ""

    @property
    def command(self) -> list[str]:
        return [BIN, "serve"] if REAL else [sys.executable, str(TESTS / "fake_ollama.py"), "serve"]

    def start(self, **env: str) -> Server:
        self.extra.update(env)
        port = _free_port()
        full = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        full.update({"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(self.models_dir),
                     "HOME": str(self.home), "OLLAMA_NO_CLOUD": "1", "OLLAMA_KEEP_ALIVE": "5m",
                     # the double's Go template program is built once into the user's cache, not per HOME
                     "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")})
        full.update({k: v for k, v in self.extra.items() if v is not None})
        self.log = open(self.root / "serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(self.command, env=full, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.command} exited: {(self.root / 'serve.log').read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/", timeout=1).status_code == 200:
                    self.version = requests.get(self.url + "/api/version", timeout=5).json()["version"]
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        raise RuntimeError(f"{self.command} did not answer within 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "log", None):
            self.log.close()

    def restart(self, **env: str) -> Server:
        self.stop()
        return self.start(**env)

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.version.split("-")[0].split(".")[:3])

    @property
    def rewrites(self) -> bool:
        """From v0.30 every import is rewritten by llama-quantize COPY and split sets are accepted."""
        return self.version_tuple >= (0, 30, 0)


@pytest.fixture
def ollama(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """``ollama(version=None, **env)`` starts a server; a version other than the real one skips."""
    started: list[Server] = []

    def start(version: str | None = None, **env: str) -> Server:
        if version is not None:
            if REAL:
                pytest.skip(f"needs Ollama {version}; DSLOCAL_OLLAMA_BIN is another version")
            env["FAKE_OLLAMA_VERSION"] = version
        server = Server(tmp_path / f"server{len(started)}", env)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """Generated DeepSeek-shaped GGUFs: single, split, with an R1-shaped tool-capable jinja, and a Qwen2."""
    root = tmp_path_factory.mktemp("contract-models")
    spec = ModelSpec.deepseek2("mla")
    single = write_model(root / "r1.gguf", spec, dtype="q8_0")
    return {
        "single": single,
        "shards": write_model(root / "r1s.gguf", spec, dtype="q8_0", shards=3),
        "r1-jinja": [with_chat_template(single[0], root / "r1-jinja.gguf", R1_JINJA)],
        "other": write_model(root / "other.gguf", ModelSpec.qwen2(), dtype="f16"),
    }
