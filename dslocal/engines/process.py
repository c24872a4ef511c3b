"""A llama.cpp server in a child process: started, waited for, used over HTTP on its address, stopped.

Both engines run llama.cpp's server out of dslocal's own process: a crash or an abort in llama.cpp
(an out-of-memory, a bad file) then ends the child and becomes a clear error here, and Ctrl+C can
always stop it. The child's output goes to a log file that errors quote the end of.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import requests

from dslocal.engines.launch import Launch
from dslocal.errors import DslocalError

STOP_TIMEOUT = 15.0


class EngineError(DslocalError):
    pass


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class ServerProcess:
    """A started server: ``base_url`` (``http://127.0.0.1:PORT``), ``chat_backend()``, ``stop()``."""

    name = "llama.cpp"

    def __init__(self, launch: Launch, log_path: Path) -> None:
        self.launch = launch
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.base_url = ""

    # -- for subclasses
    def _spawn(self) -> subprocess.Popen:
        raise NotImplementedError

    def _address(self, deadline: float) -> str:
        raise NotImplementedError

    # -- life cycle
    def start(self, timeout: float = 600.0, progress: Callable[[str], None] | None = None) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process = self._spawn()
        deadline = time.monotonic() + timeout
        try:
            self.base_url = self._address(deadline)
            self._wait_health(deadline, progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _failure(self, why: str) -> EngineError:
        tail = log_tail(self.log_path)
        detail = f": {tail.splitlines()[-1]}" if tail else ""
        code = self.process.returncode if self.process is not None else None
        if code is not None and code < 0:  # killed by a signal: llama.cpp itself crashed on this model
            import signal

            name = signal.Signals(-code).name if -code in signal.Signals.__members__.values() else str(-code)
            return EngineError(f"llama.cpp crashed ({name}) loading {self.launch.model.name} in the {self.name} server",
                               f"this build cannot run it (its log: {self.log_path}); another may: --engine "
                               "llama-server with a newer llama.cpp, or Ollama. (xllamacpp 2026.10 cannot run "
                               "DeepSeek-V4 models yet)")
        return EngineError(f"the {self.name} server {why}{detail}", f"its log: {self.log_path}")

    def _wait_health(self, deadline: float, progress: Callable[[str], None] | None) -> None:
        """``/health`` answers 503 while the model loads and 200 once it can serve."""
        session = requests.Session()
        session.trust_env = False
        said = False
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise self._failure(f"exited (code {self.process.returncode}) while loading the model")
            try:
                response = session.get(self.base_url + "/health", timeout=2)
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise self._failure("did not become ready in time")
            if progress and not said:
                progress(f"loading {self.launch.model.name} in {self.name}")
                said = True
            time.sleep(0.1)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        self._ask_to_stop(process)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _ask_to_stop(self, process: subprocess.Popen) -> None:
        process.terminate()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use
    @property
    def api_base(self) -> str:
        return self.base_url + "/v1"

    def chat_backend(self):  # -> dslocal.chat.backends.openai.OpenAIChat
        from dslocal.chat.backends.openai import OpenAIChat

        backend = OpenAIChat(self.api_base, self.launch.alias, api_key=self.launch.api_key, dialect="llama-server")
        backend.name = "embedded" if self.name == "embedded llama.cpp" else "llama-server"
        return backend
