"""The embedded engine: llama.cpp's own server from ``xllamacpp`` (the ``embedded`` extra), no Ollama needed.

It loads a merged GGUF or a split set as it is, applies the plan (GPU layers, context, threads, KV
cache type, flash attention, MoE experts in RAM through tensor buffer overrides), returns reasoning
as ``reasoning_content``, and renders V3.2/V4 templates with jinja. It runs in a child process
(:mod:`dslocal.engines.embedded_child`) that listens on 127.0.0.1 by default; for a chat, dslocal
gives it a random API key so no other local user or web page can use it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from dslocal.engines.launch import Launch
from dslocal.engines.process import EngineError, ServerProcess
from dslocal.errors import DslocalError

INSTALL_HINT = "install it with: pip install 'dslocal[embedded]' (or pip install xllamacpp)"


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("xllamacpp") is not None


def require() -> None:
    if not available():
        raise DslocalError("the embedded engine needs the xllamacpp package, which is not installed", INSTALL_HINT)


class EmbeddedServer(ServerProcess):
    name = "embedded llama.cpp"

    def __init__(self, launch: Launch, log_path: Path) -> None:
        super().__init__(launch, log_path)
        self._work: Path | None = None
        self._ready = Path()

    def _spawn(self) -> subprocess.Popen:
        require()
        self._work = Path(tempfile.mkdtemp(prefix="dslocal-engine-"))
        self._ready = self._work / "ready.json"
        config = {**self.launch.as_dict(), "api_key": self.launch.api_key, "ready_file": str(self._ready)}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen([sys.executable, "-m", "dslocal.engines.embedded_child"],
                                       stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        assert process.stdin is not None
        process.stdin.write(json.dumps(config).encode() + b"\n")
        process.stdin.flush()
        return process

    def _address(self, deadline: float) -> str:
        while not self._ready.exists():
            if self.process is not None and self.process.poll() is not None:
                raise self._failure(f"exited (code {self.process.returncode}) while loading the model")
            if time.monotonic() > deadline:
                raise self._failure("did not start in time")
            time.sleep(0.05)
        return str(json.loads(self._ready.read_text())["base_url"])

    def _ask_to_stop(self, process: subprocess.Popen) -> None:
        try:
            if process.stdin is not None:
                process.stdin.close()  # the child deletes its server and exits
        except OSError:
            process.terminate()

    def stop(self) -> None:
        super().stop()
        if self._work is not None:
            import shutil

            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None


def for_chat(launch: Launch, log_path: Path) -> EmbeddedServer:
    """A server for one chat: loopback only, a random key."""
    return EmbeddedServer(replace(launch, host="127.0.0.1", port=0, api_key=secrets.token_urlsafe(24)), log_path)


__all__ = ["EmbeddedServer", "EngineError", "available", "for_chat", "require", "INSTALL_HINT"]
