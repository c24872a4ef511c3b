"""Real inference for tests: the llama.cpp embedded in ``xllamacpp`` (tests/llama_server.py).

Every test that needs llama.cpp to load a model, generate from it or report its buffer and KV cache
sizes goes through here. An :class:`Engine` is one llama-server (``xllamacpp``, PyPI pin in
pyproject's test extra) in a child process that hosts them all (:class:`_Host`), and talks to it
over HTTP: ``/tokenize``, ``/completion`` (with ``return_tokens`` and ``n_probs`` for the token ids
and their text), ``/detokenize`` and ``/v1/chat/completions``. The sizes come from llama.cpp's load
log, of a llama-server child of its own (tests/llama_server.py, :func:`load_report`).

One exception, :data:`NOT_IN_XLLAMACPP`: the llama.cpp of xllamacpp 2026.10.11549 cannot create a
context for ``deepseek4`` at all: the child dies of SIGFPE (status -8) in ``llama_kv_cache``'s
constructor, called by ``llama_kv_cache_dsv4`` through ``llama_kv_cache_iswa`` right after it logs
the raw cache's non-SWA half with 0 layers (every V4 block is a window layer). At the trap
(disassembly) a loop doubles a divisor from 128 while it divides a head size of 0, which it always
does, until the divisor overflows to 0: the attention-rotation size for a cache without layers.
The cache type (q8_0 too), flash attention, ``swa_full``, ``kv_unified``, ``-fit`` and
``LLAMA_ATTN_ROT_DISABLE`` change nothing; tests/test_ggufgen_new_archs.py pins the crash. Until a
newer xllamacpp fixes it, :func:`open_engine` and :func:`load_report` run ``deepseek4`` on
llama-cpp-python's llama.cpp (0.3.36), the other llama.cpp binding in the test extra, behind the
same interface (:class:`LlamaCppEngine`) and with :func:`llama_load.no_repack`: on AMX CPUs
llama-cpp-python repacks Q8_0 weights into an AMX buffer and crashes decoding tiny models from it.
The xllamacpp CPU wheel has no AMX kernels, so its servers need no such guard (they still load
with ``no_extra_bufts`` by default, llama-server's ``--no-repack``).

Engines run one thread: with two, OpenMP's spinning barriers (the wheel is built with OpenMP) made
a 24-token answer take seconds instead of milliseconds on a busy two-core machine. One opens in
about 15 ms for the small generated models (a llama-server child of its own: 0.13 s, mostly
importing xllamacpp); :func:`engine` keeps the last four open, one per model file and options, for
the session, so tests that generate from the same file share one server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from llama_server import start_llama_server

NOT_IN_XLLAMACPP = frozenset({"deepseek4"})  # SIGFPE creating its KV cache: see the module docstring
TIMEOUT = 60


def architecture(path: str | os.PathLike[str]) -> str:
    from dslocal.gguf_tools.header import read_file_header

    return str(read_file_header(Path(path)).get("general.architecture"))


def backend_for(path: str | os.PathLike[str]) -> str:
    """``"xllamacpp"``, or ``"llama-cpp-python"`` for an architecture xllamacpp cannot run."""
    return "llama-cpp-python" if architecture(path) in NOT_IN_XLLAMACPP else "xllamacpp"


@dataclass(frozen=True)
class Generation:
    """Generated token ids (an EOS that ended the generation included) and each one's bytes, rendered
    as llama.cpp renders a token without ``special``: a CONTROL token such as EOS is empty."""

    tokens: list[int]
    pieces: list[bytes]

    @property
    def text(self) -> str:
        return b"".join(self.pieces).decode()


class Engine:
    """One loaded model. ``tokenize`` adds BOS (when the model asks for one) and parses special tokens,
    as Ollama and llama-server do; ``generate`` stops after EOS, or after ``limit`` tokens."""

    backend: str
    eos: int

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        raise NotImplementedError

    def generate(self, tokens: Sequence[int], limit: int, *, ignore_eos: bool = False,
                 **sampling: Any) -> Generation:
        """Greedy unless told otherwise (``temperature``, ``top_p``, ``top_k``, ``seed``).

        ``ignore_eos`` bans EOS (llama-server's ``ignore_eos``: an EOS logit of -inf), so that a
        random-weight model always gives ``limit`` tokens."""
        raise NotImplementedError

    def detokenize(self, tokens: Iterable[int]) -> str:
        """The text of ``tokens`` with special tokens rendered."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


GREEDY = {"temperature": 0.0, "top_k": 1}


class _Host:
    """One child process, ``python tests/llama_engine.py host FD``, that holds the engines' servers:
    ``xllamacpp.Server`` objects, each listening on a port of its own. Opening one there takes about
    15 ms, where a child of its own (tests/llama_server.py) spends 0.1 s importing xllamacpp.

    Requests go to the child's stdin, a JSON line each; answers come back on the pipe ``FD``, so that
    llama.cpp's log (the child's stdout and stderr, in ``host.log``) cannot get in their way. A server
    is destroyed only once its task loop answers (``/slots``): earlier, ``~Server`` deadlocks (see
    tests/llama_server.py). The child exits when its stdin closes; if it dies (a crash in llama.cpp),
    the request fails with the log's tail and the next one starts a new child."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.answers: Any = None
        self.workdir: Path | None = None
        self.next_id = 0

    def _start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="llama-engine-"))
        read, write = os.pipe()
        with open(self.workdir / "host.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "host", str(write)],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write,), close_fds=True,
            )
        os.close(write)
        self.answers = os.fdopen(read, "r")

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.workdir / "host.log").read_text(errors="replace")  # type: ignore[operator]
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def call(self, request: dict[str, Any], timeout: float = TIMEOUT) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self._start()
        assert self.process is not None and self.process.stdin is not None
        self.next_id += 1
        request = {"id": self.next_id, **request}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            ready, _, _ = select.select([self.answers], [], [], timeout)
            line = self.answers.readline() if ready else ""
        except BrokenPipeError:
            line = ""
        if not line:
            if ready or self.process.poll() is not None:
                why = f"exited with status {self.process.wait()}"
            else:
                why = f"did not answer in {timeout:g} s"
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"the llama-server host {why} on {request}; the end of its log:\n{tail}")
        answer = json.loads(line)
        assert answer["id"] == request["id"], (answer, request)
        if "error" in answer:
            raise RuntimeError(f"{answer['error']} ({request}); the end of the host's log:\n{self.log_tail()}")
        return answer

    def stop(self) -> None:
        if self.process is not None:
            if self.process.stdin:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self.answers is not None:
            self.answers.close()
            self.answers = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


_HOST = _Host()


class ServerEngine(Engine):
    """A llama-server (xllamacpp) of the shared host process, on ``127.0.0.1``."""

    backend = "xllamacpp"

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 256, threads: int = 1,
                 extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        config = {"model": str(self.path.resolve()), "n_ctx": n_ctx, "threads": threads, "extra": extra or {}}
        answer = _HOST.call({"op": "open", "config": config})
        self.server_id, self.base_url = answer["id"], answer["base_url"]
        self.host_pid = _HOST.process.pid  # type: ignore[union-attr]
        self.http = requests.Session()
        self.http.trust_env = False  # loopback: never through a proxy from the environment
        props = self.http.get(self.url("/props"), timeout=TIMEOUT).json()
        (self.eos,) = self.tokenize(props["eos_token"], add_bos=False)

    def url(self, path: str) -> str:
        return self.base_url + path

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(self.url(path), json=body, timeout=TIMEOUT)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return self.post("/tokenize", {"content": text, "add_special": add_bos, "parse_special": True})["tokens"]

    def generate(self, tokens: Sequence[int], limit: int, *, ignore_eos: bool = False,
                 **sampling: Any) -> Generation:
        body = {"prompt": list(tokens), "n_predict": limit, "ignore_eos": ignore_eos, "return_tokens": True,
                "n_probs": 1, "cache_prompt": False, **(sampling or GREEDY)}
        answer = self.post("/completion", body)
        probs = answer["completion_probabilities"]
        assert [p["id"] for p in probs] == answer["tokens"]
        return Generation(answer["tokens"], [bytes(p["bytes"]) for p in probs])

    def detokenize(self, tokens: Iterable[int]) -> str:
        return self.post("/detokenize", {"tokens": list(tokens)})["content"]

    def chat(self, messages: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
        """``/v1/chat/completions`` through the GGUF's own chat template."""
        return self.post("/v1/chat/completions", {"messages": messages, **body})

    def close(self) -> None:
        self.http.close()
        if _HOST.process is not None and _HOST.process.pid == self.host_pid:  # a host that died took its servers
            with contextlib.suppress(RuntimeError):
                _HOST.call({"op": "close", "server": self.server_id})


class LlamaCppEngine(Engine):
    """llama-cpp-python, for :data:`NOT_IN_XLLAMACPP` only (see the module docstring)."""

    backend = "llama-cpp-python"

    def __init__(self, path: str | os.PathLike[str], *, n_ctx: int = 256, threads: int = 1) -> None:
        import pytest

        llama_cpp = pytest.importorskip("llama_cpp")
        from llama_load import no_repack

        no_repack()  # AMX repacking crashes batched Q8_0 decoding of tiny models (tests/llama_load.py)
        self.path = Path(path)
        self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, verbose=False)
        self.eos = self.llm.token_eos()

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return self.llm.tokenize(text.encode(), add_bos=add_bos, special=True)

    def generate(self, tokens: Sequence[int], limit: int, *, ignore_eos: bool = False,
                 **sampling: Any) -> Generation:
        sampling = dict(sampling or GREEDY)
        if "temperature" in sampling:
            sampling["temp"] = sampling.pop("temperature")
        seed = sampling.pop("seed", None)
        if seed is not None:
            self.llm.set_seed(seed)
        eos = self.eos

        def ban_eos(_ids, scores):  # numpy arrays in, numpy arrays out
            scores[eos] = -float("inf")
            return scores

        out: list[int] = []
        for token in self.llm.generate(list(tokens), reset=True, logits_processor=[ban_eos] if ignore_eos else None,
                                       **sampling):
            out.append(token)
            if token == eos or len(out) == limit:
                break
        return Generation(out, [self.llm.detokenize([t]) for t in out])

    def detokenize(self, tokens: Iterable[int]) -> str:
        return self.llm.detokenize(list(tokens), special=True).decode()

    def close(self) -> None:
        self.llm.close()


def open_engine(path: str | os.PathLike[str], **options: Any) -> Engine:
    """A new engine for ``path`` (xllamacpp unless its architecture is in :data:`NOT_IN_XLLAMACPP`);
    ``options`` go to :func:`llama_server.start_llama_server` (``n_ctx`` also to llama-cpp-python)."""
    if backend_for(path) == "xllamacpp":
        return ServerEngine(path, **options)
    return LlamaCppEngine(path, n_ctx=options.get("n_ctx", 256), threads=options.get("threads", 1))


class _Pool:
    """The last ``size`` engines opened through :func:`engine`, by file (and its identity) and options."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.engines: OrderedDict[tuple[Any, ...], Engine] = OrderedDict()

    def get(self, path: str | os.PathLike[str], **options: Any) -> Engine:
        resolved = Path(path).resolve()
        st = resolved.stat()
        key = (str(resolved), st.st_ino, st.st_mtime_ns, st.st_size, tuple(sorted(options.items())))
        if key in self.engines:
            self.engines.move_to_end(key)
            return self.engines[key]
        while len(self.engines) >= self.size:
            _, old = self.engines.popitem(last=False)
            old.close()
        self.engines[key] = opened = open_engine(resolved, **options)
        return opened

    def close(self) -> None:
        while self.engines:
            self.engines.popitem()[1].close()


_POOL = _Pool()


@atexit.register
def _close_all() -> None:
    _POOL.close()
    _HOST.stop()


def engine(path: str | os.PathLike[str], **options: Any) -> Engine:
    """A shared engine for ``path``: opened on first use, kept for the session (the last few)."""
    return _POOL.get(path, **options)


# --- what llama.cpp reports when it loads a model --------------------------------------------------

REPACKED = ("AMX", "CPU_REPACK")  # buffers holding a second, repacked copy of some weights


@dataclass(frozen=True)
class LoadReport:
    """Sizes in MiB, as llama.cpp prints them (two decimals) when it loads a model and makes a context."""

    backend: str
    model_mib: float  # the weights' buffers (CPU_Mapped: the mapped file)
    repacked_mib: float  # extra repacked copies of some weights (AMX, CPU_REPACK), if any
    kv_mib: float  # every ``llama_kv_cache: size`` line, plus DSV4's compressor states
    kv_lines: int
    log: str


def parse_load_log(log: str, backend: str) -> LoadReport:
    buffers = re.findall(r"(\S+) model buffer size\s*=\s*([\d.]+) MiB", log)
    model = sum(float(size) for kind, size in buffers if kind not in REPACKED)
    repacked = sum(float(size) for kind, size in buffers if kind in REPACKED)
    # one line per cache: deepseek32's DSA cache is two (MLA latent cache, then the indexer's), deepseek4's
    # five (raw base and window, CSA, HCA, indexer) plus three compressor-state lines
    kv = re.findall(r"llama_kv_cache(?:_unified)?: size\s*=\s*([\d.]+) MiB", log)
    kv += re.findall(r"llama_dsv4_comp_state: \w+ ratio = .* size =\s*([\d.]+) MiB", log)
    assert buffers and kv, log[-3000:]
    return LoadReport(backend, model, repacked, sum(float(s) for s in kv), len(kv), log)


LLAMA_CPP_LOADER = """
import sys
from llama_cpp import Llama
Llama(sys.argv[1], n_ctx=int(sys.argv[2]), n_threads=1, swa_full=sys.argv[3] == "1", verbose=True)
"""


def load_report(path: str | os.PathLike[str], n_ctx: int, *, swa_full: bool = False, n_parallel: int = 1,
                kv_unified: bool = False) -> LoadReport:
    """Load ``path`` with a context of ``n_ctx`` and read llama.cpp's own figures from its log.

    xllamacpp: a llama-server with llama-server's defaults but ``n_parallel`` slots (``-np``, one by
    default) sharing ``n_ctx`` (``-c``): ``swa_full`` off, flash attention auto, repacking allowed
    (``--no-repack`` is not llama-server's default); log verbosity 4, as the buffer lines are
    debug-level in its log. ``deepseek4``: llama-cpp-python in a child process, with its defaults
    (repacking allowed, flash attention off) and one sequence."""
    if backend_for(path) == "xllamacpp":
        server = start_llama_server(path, n_ctx=n_ctx, n_parallel=n_parallel, threads=1, no_repack=False,
                                    verbosity=4, extra={"swa_full": swa_full, "kv_unified": kv_unified})
        server.stop()  # the log is complete once the child has exited
        return parse_load_log(server.log, "xllamacpp")
    import pytest

    assert n_parallel == 1 and not kv_unified, "llama-cpp-python's loader here has one sequence"
    pytest.importorskip("llama_cpp")
    out = subprocess.run([sys.executable, "-c", LLAMA_CPP_LOADER, str(path), str(n_ctx), "1" if swa_full else "0"],
                         capture_output=True, text=True, timeout=120, check=False)
    return parse_load_log(out.stdout + out.stderr, "llama-cpp-python")


# --- the host process ------------------------------------------------------------------------------


def _open_server(xlc: Any, config: dict[str, Any]) -> Any:
    from llama_server import _set_param, _wait_answer

    params = xlc.CommonParams()
    params.model.path = config["model"]
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.n_ctx = config["n_ctx"]
    params.n_parallel = 1
    params.cpuparams.n_threads = config["threads"]
    params.cpuparams_batch.n_threads = config["threads"]
    params.use_jinja = True
    params.no_extra_bufts = True  # llama-server --no-repack (tests/llama_server.py)
    params.warmup = False  # (the warm-up run changes nothing here)
    params.verbosity = 3
    params.ui = False
    params.endpoint_slots = True  # the readiness probe below
    for dotted, value in config["extra"].items():
        _set_param(params, dotted, value)
    server = xlc.Server(params)  # returns once the model is loaded and the listener is up
    _wait_answer(server.listening_address + "/slots")  # the task loop runs: ~Server cannot hang now
    return server


def _host(answer_fd: int) -> None:
    import xllamacpp as xlc

    answers = os.fdopen(answer_fd, "w")
    servers: dict[int, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        answer: dict[str, Any] = {"id": request["id"]}
        try:
            if request["op"] == "open":
                servers[request["id"]] = _open_server(xlc, request["config"])
                answer["base_url"] = servers[request["id"]].listening_address
            elif request["op"] == "close":
                del servers[request["server"]]  # the last reference: ~Server stops and frees it
            else:
                answer["error"] = f"unknown op {request['op']!r}"
        except Exception as exc:  # noqa: BLE001 - e.g. "Failed to init server": the host carries on
            answer["error"] = f"{type(exc).__name__}: {exc}"
        answers.write(json.dumps(answer) + "\n")
        answers.flush()
    servers.clear()  # stdin closed: destroy the servers, then leave without Python's teardown
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__" and sys.argv[1:2] == ["host"]:
    _host(int(sys.argv[2]))
