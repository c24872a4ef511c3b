"""A real llama-server (llama.cpp's own OpenAI-compatible HTTP server) on loopback, for tests.

The server is the one the PyPI package ``xllamacpp`` embeds (its ``Server`` runs llama.cpp's
``tools/server`` routes in C++ threads). It runs in a child process, ``python tests/llama_server.py
CONFIG``, not in the test process, because in-process:

* ``xllamacpp.Server``'s destructor deadlocks when it runs before the server's task loop has
  started (``~Server`` calls ``terminate()``, then the loop thread starts and waits forever), and
  nothing can stop a hung destructor short of killing the process;
* a crash in llama.cpp (such as the AMX repack crash llama-cpp-python had here) would take pytest
  with it, and a second copy of ggml would share the process with llama-cpp-python's.

The child loads the model, waits until the task loop answers ``GET /slots`` (which makes the
destructor safe), writes ``{"base_url": ...}`` to a ready file, and serves until its stdin closes
(:meth:`LlamaServer.stop`, or the test process dying). Its stdout and stderr (llama.cpp's log) go to
a log file, kept in :attr:`LlamaServer.log` once stopped. Start-up takes under half a second for
the small generated models.

Clients beware: after a streamed answer the server closes the connection although its headers say
``Keep-Alive``; read each stream on a connection that is not reused (tests/test_llama_server_real.py).

Weights are loaded with ``no_extra_bufts`` (llama-server's ``--no-repack``): no AMX or CPU_REPACK
copies. The prebuilt CPU wheel is built for AVX2 without AMX, and on this machine it loads even
Q8_0 models only into ``CPU_Mapped`` buffers either way, but a wheel built with ``-march=native``
would repack on AMX CPUs, where llama-cpp-python crashed on tiny Q8_0 models (tests/llama_load.py).

Examples::

    with run_llama_server(model, chat_template=THINKING_TEMPLATE) as server:
        requests.post(server.base_url + "/v1/chat/completions", json={...})

    server = start_llama_server(model, reasoning_format="none")  # a module/session fixture
    ...
    server.stop()
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslocal.demo import DEMO_TEMPLATE

REASONING_FORMATS = {  # request/CLI spelling -> xllamacpp.common_reasoning_format member
    "none": "COMMON_REASONING_FORMAT_NONE",
    "auto": "COMMON_REASONING_FORMAT_AUTO",
    "deepseek": "COMMON_REASONING_FORMAT_DEEPSEEK",
    "deepseek-legacy": "COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY",
}

# A DeepSeek-R1-shaped jinja template that llama.cpp's template analyser recognises as a thinking
# template: it renders an assistant message's ``reasoning_content`` between <think> and </think>, and
# its generation prompt opens <think> unless ``enable_thinking`` is false (then it closes it, as
# DeepSeek V3.1's does). With it, ``reasoning_format`` deepseek moves the reasoning into
# ``reasoning_content``. The generated models' own template (ggufgen.CHAT_TEMPLATE) renders neither,
# so llama-server leaves everything in ``content`` with it, whatever the reasoning format.
THINKING_TEMPLATE = DEMO_TEMPLATE  # the package's R1-shaped template (dslocal/demo.py), one copy

_READY_POLL = 0.02
STOPPED = "llama_server.py: server destroyed, exiting"  # the child's last log line on a clean stop
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def gbnf_literal(text: str) -> str:
    """A GBNF grammar whose only sentence is ``text``: send it as the request's ``grammar`` and even a
    random-weight model answers exactly ``text`` (special tokens such as ``</think>`` included)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'root ::= "{escaped}"'


@dataclass
class LlamaServer:
    """A running llama-server child. ``base_url`` is ``http://127.0.0.1:PORT`` (no ``/v1``)."""

    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    owns_workdir: bool
    log: str = ""  # llama.cpp's log, read at stop()
    returncode: int | None = None
    _stopped: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "llama-server.log"

    def url(self, path: str) -> str:
        return self.base_url + path

    def log_text(self) -> str:
        """The log so far (or the saved one once stopped)."""
        if self._stopped:
            return self.log
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """Close the child's stdin (it destroys the server and exits 0); kill it if it takes longer
        than ``timeout``. Idempotent; returns the exit status (negative: killed by that signal)."""
        if self._stopped:
            return self.returncode
        self._stopped = True
        try:
            if self.process.stdin:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.returncode = self.process.wait()
        self.log = _read(self.log_path)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.returncode


def require_xllamacpp():  # -> the xllamacpp module
    """Skip the calling test when ``xllamacpp`` cannot be imported."""
    import pytest

    return pytest.importorskip("xllamacpp")


def start_llama_server(
    model_path: str | os.PathLike[str],
    *,
    port: int = 0,
    n_ctx: int = 512,
    n_parallel: int = 1,
    threads: int = 2,
    reasoning_format: str = "deepseek",
    jinja: bool = True,
    chat_template: str | None = None,
    alias: str | None = None,
    no_repack: bool = True,
    verbosity: int = 3,
    extra: Mapping[str, Any] | None = None,
    startup_timeout: float = 60.0,
    workdir: str | os.PathLike[str] | None = None,
) -> LlamaServer:
    """Start llama-server on ``127.0.0.1:port`` (0: a free port the OS picks) and wait until it
    answers ``/health`` with 200.

    ``reasoning_format`` is the server default (``none``, ``auto``, ``deepseek``, ``deepseek-legacy``;
    a request's own ``reasoning_format`` field overrides it). ``chat_template`` replaces the GGUF's
    jinja template (:data:`THINKING_TEMPLATE` makes the reasoning split work); ``alias`` is the
    model id ``/v1/models`` lists (default: the model path). ``extra`` sets any other
    ``xllamacpp.CommonParams`` field by name, dotted for nested ones (``{"sampling.temp": 0.0,
    "cache_prompt": False, "sse_ping_interval": 1}``); an enum field takes its member's name.
    Raises RuntimeError, with the log's tail, if the server exits or does not answer in time.
    """
    require_xllamacpp()
    if reasoning_format not in REASONING_FORMATS:
        raise ValueError(f"reasoning_format must be one of {sorted(REASONING_FORMATS)}, not {reasoning_format!r}")
    owns = workdir is None
    work = Path(tempfile.mkdtemp(prefix="llama-server-")) if owns else Path(workdir)  # type: ignore[arg-type]
    work.mkdir(parents=True, exist_ok=True)
    config = {
        "model": str(Path(model_path).resolve()),
        "port": int(port),
        "n_ctx": int(n_ctx),
        "n_parallel": int(n_parallel),
        "threads": int(threads),
        "reasoning_format": REASONING_FORMATS[reasoning_format],
        "jinja": bool(jinja),
        "chat_template": chat_template,
        "alias": alias,
        "no_repack": bool(no_repack),
        "verbosity": int(verbosity),
        "extra": dict(extra or {}),
        "ready_file": str(work / "ready.json"),
    }
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    with open(work / "llama-server.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(config_path)],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, close_fds=True,
        )
    server = LlamaServer(base_url="", process=process, workdir=work, owns_workdir=owns)
    try:
        server.base_url = _wait_ready(server, Path(config["ready_file"]), startup_timeout)
        _wait_health(server, startup_timeout)
    except BaseException:
        server.stop(timeout=5)
        raise
    return server


@contextlib.contextmanager
def run_llama_server(model_path: str | os.PathLike[str], **kwargs: Any) -> Iterator[LlamaServer]:
    """:func:`start_llama_server` as a context manager: the server stops on leaving the block."""
    server = start_llama_server(model_path, **kwargs)
    try:
        yield server
    finally:
        server.stop()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _failure(server: LlamaServer, why: str) -> RuntimeError:
    tail = "\n".join(_read(server.log_path).splitlines()[-40:])
    return RuntimeError(f"llama-server {why}; the end of its log:\n{tail}")


def _wait_ready(server: LlamaServer, ready_file: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready_file.exists():
            return json.loads(ready_file.read_text())["base_url"]
        if server.process.poll() is not None:
            raise _failure(server, f"exited with status {server.process.returncode} while starting")
        time.sleep(_READY_POLL)
    raise _failure(server, f"was not ready after {timeout:g} s")


def _wait_health(server: LlamaServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise _failure(server, f"exited with status {server.process.returncode}")
        try:
            with _DIRECT.open(server.url("/health"), timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:  # 503 while loading, or not listening yet
            last = str(exc)
        time.sleep(_READY_POLL)
    raise _failure(server, f"did not answer /health with 200 in {timeout:g} s ({last})")


# --- the child process ---------------------------------------------------------------------------


def _set_param(params: Any, dotted: str, value: Any) -> None:
    *parents, name = dotted.split(".")
    target = params
    for parent in parents:
        target = getattr(target, parent)
    current = getattr(target, name)
    enum = type(current)
    if isinstance(value, str) and hasattr(enum, "__members__"):
        value = enum.__members__[value]
    elif isinstance(current, set) and isinstance(value, (list, tuple)):
        value = set(value)
    setattr(target, name, value)


def _wait_answer(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _DIRECT.open(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # answered
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(_READY_POLL)


def _serve(config: dict[str, Any]) -> None:
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = config["model"]
    params.hostnames = ["127.0.0.1"]
    params.port = config["port"]
    params.n_ctx = config["n_ctx"]
    params.n_parallel = config["n_parallel"]
    params.cpuparams.n_threads = config["threads"]
    params.cpuparams_batch.n_threads = config["threads"]
    params.use_jinja = config["jinja"]
    params.reasoning_format = getattr(xlc.common_reasoning_format, config["reasoning_format"])
    if config["chat_template"] is not None:
        params.chat_template = config["chat_template"]
    if config["alias"]:
        params.model_alias = {config["alias"]}
    params.no_extra_bufts = config["no_repack"]  # llama-server --no-repack
    params.verbosity = config["verbosity"]
    params.endpoint_metrics = True
    params.ui = False
    for dotted, value in config["extra"].items():
        _set_param(params, dotted, value)
    params.endpoint_slots = True  # the readiness probe below

    server = xlc.Server(params)  # returns once the model is loaded and the listener is up
    base_url = server.listening_address
    # /slots is answered by the task loop: once it answers, destroying the server cannot hang.
    _wait_answer(base_url + "/slots")
    ready = Path(config["ready_file"])
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"base_url": base_url, "pid": os.getpid(), "version": xlc.__version__}))
    tmp.replace(ready)
    sys.stdin.buffer.read()  # until the parent closes the pipe, or dies
    del server  # terminate the loop, join its threads, free the model
    print(STOPPED, flush=True)  # (llama.cpp logs from a thread of its own: its last lines may be lost)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _serve(json.loads(Path(sys.argv[1]).read_text()))
