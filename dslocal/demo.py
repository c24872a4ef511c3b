"""``dslocal demo``: prove that an installation works, offline, in well under a minute on a laptop CPU.

It generates a tiny model of the real DeepSeek architecture (``deepseek2``: multi-head latent attention,
a dense block and a mixture-of-experts block, DeepSeek's tokenizer tokens) whose weights are made up so
that it always reasons ``Hm.`` and answers ``OK!`` (:func:`dslocal.testing.ggufgen.write_scripted_model`),
splits it into a set of shards, publishes the set on a loopback double of Hugging Face
(:mod:`dslocal.testing.hub`) and runs the real pipeline on it:

* with Ollama (one that runs at ``ollama_host`` on loopback, or a private ``ollama serve`` the demo starts on a free
  loopback port with its store in the demo's folder): ``pull`` downloads, verifies, merges and creates
  the model ``dslocal-demo`` in Ollama, Ollama loads it, one streamed chat answer, and the model is
  removed again (unless kept);
* without Ollama (or ``engine="embedded"``): the same downloader, shard-set check and merge, a Modelfile
  written next to the model, then llama.cpp's own server (``xllamacpp``) loads the merged file and answers.

Every step reports through a sink as it runs (:class:`StepStarted`, :class:`StepDone`, and the chat's
thinking and answer deltas) and is timed; the result has them all. Nothing goes beyond loopback: the hub
endpoint is given to this run only (never written to the user's config), proxies are bypassed for
loopback addresses, and everything is written in a temporary folder (or the one asked to keep), apart
from what Ollama keeps of a model while it has it. A failure raises :class:`DemoStepError`, which names
the step and keeps the hint (and the exit code) of the error that stopped it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from dslocal.chat.events import AnswerDelta, ChatError, ChatOptions, Done, ThinkingDelta, ThinkingWasAnswer
from dslocal.config import Settings
from dslocal.errors import DslocalError, ExitCode, InputError, OllamaError, from_os_error
from dslocal.progress import Progress

DEMO_REPO = "dslocal/DeepSeek-Demo-GGUF"
DEMO_QUANT = "Q8_0"
DEMO_NAME = "dslocal-demo"
DEMO_SHARDS = 3
QUESTION = "Does dslocal work on this machine?"
EXPECTED_THINKING = "Hm."
EXPECTED_ANSWER = "OK!"
HONEST = "a tiny model with made-up weights: it always reasons 'Hm.' and answers 'OK!'"
ENGINES = ("auto", "ollama", "embedded")
ENGINE_TIMEOUT = 120.0  # seconds for an engine to load a half-megabyte model: far more than it needs
CHAT_TIMEOUT = 120.0
LOOPBACK = ("127.0.0.1", "127.0.0.2", "localhost", "::1")

# DeepSeek-R1's chat format in a compact jinja that llama.cpp's reasoning parser and Ollama's thinking
# detection both recognise: reasoning opened with <think> by the generation prompt (off: an empty block),
# past reasoning given back as reasoning_content. The generated model's own template has no </think>.
DEMO_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}{% endif %}{% endfor %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '<｜User｜>' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '<｜Assistant｜>' }}"
    "{% if m['reasoning_content'] %}{{ '<think>\\n' + m['reasoning_content'] + '</think>' }}{% endif %}"
    "{{ m['content'] + '<｜end▁of▁sentence｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}"
    "{% if enable_thinking is defined and not enable_thinking %}{{ '</think>' }}{% else %}{{ '<think>\\n' }}{% endif %}"
    "{% endif %}"
)


# -- what the demo reports ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """One finished step: what it did, and how long it took."""

    key: str  # model, publish, ollama, download, verify, merge, modelfile, create, engine, chat, cleanup
    title: str
    seconds: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass(frozen=True)
class StepStarted:
    key: str
    title: str


@dataclass(frozen=True)
class StepDone:
    step: Step


@dataclass(frozen=True)
class ModelfileReady:
    """The model's Modelfile: the one written next to it, or the one Ollama reports for it."""

    text: str
    path: Path | None = None


DemoEvent = Union[StepStarted, StepDone, ModelfileReady, ThinkingDelta, AnswerDelta, ThinkingWasAnswer]
DemoSink = Callable[[DemoEvent], None]


@dataclass
class DemoResult:
    engine: str  # "ollama" or "embedded"
    engine_reason: str
    model: str  # the Ollama name, or the merged GGUF's path
    folder: Path
    kept: bool
    hub_url: str = ""
    question: str = QUESTION
    thinking: str = ""
    answer: str = ""
    modelfile: str = ""
    modelfile_path: Path | None = None
    steps: list[Step] = field(default_factory=list)
    stats: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    total_seconds: float = 0.0
    ollama_store: Path | None = None  # the store of the private Ollama server the demo started, if it did

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": True, "engine": self.engine, "engine_reason": self.engine_reason, "model": self.model,
            "repo": f"hf:{DEMO_REPO}:{DEMO_QUANT}", "hub_url": self.hub_url, "about": HONEST,
            "folder": str(self.folder), "kept": self.kept, "question": self.question, "thinking": self.thinking,
            "answer": self.answer, "modelfile": self.modelfile,
            "modelfile_path": str(self.modelfile_path) if self.modelfile_path else None,
            "steps": [s.as_dict() for s in self.steps], "total_seconds": round(self.total_seconds, 3),
            "stats": self.stats, "notes": self.notes,
            "ollama_store": str(self.ollama_store) if self.ollama_store else None,
        }


class DemoStepError(DslocalError):
    """A step failed: the message names it; hint and exit code are those of the error that stopped it."""

    def __init__(self, step: str, message: str, hint: str | None = None,
                 exit_code: int = ExitCode.FAILURE) -> None:
        super().__init__(f"the demo failed at step '{step}': {message}", hint)
        self.step = step
        self.exit_code = exit_code  # type: ignore[assignment]


@dataclass(frozen=True)
class DemoOptions:
    engine: str = "auto"  # auto (Ollama when it runs or can be started, else embedded), ollama, embedded
    keep: Path | None = None  # keep everything (and the model in Ollama) in this folder; None: a temporary one


# -- the run's bookkeeping ------------------------------------------------------------------------------

class _Steps:
    """Opens, times and closes steps; an error inside one becomes a DemoStepError naming it."""

    def __init__(self, sink: DemoSink, result: DemoResult) -> None:
        self.sink = sink
        self.result = result
        self.current: tuple[str, str, float] | None = None
        self.detail = ""

    def begin(self, key: str, title: str) -> None:
        self.end()
        self.current, self.detail = (key, title, time.perf_counter()), ""
        self.sink(StepStarted(key, title))

    def end(self, detail: str | None = None) -> None:
        if self.current is None:
            return
        key, title, started = self.current
        self.current = None
        step = Step(key, title, time.perf_counter() - started, self.detail if detail is None else detail)
        self.result.steps.append(step)
        self.sink(StepDone(step))

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Errors raised inside name the step that is open when they happen."""
        try:
            yield
        except DemoStepError:
            raise
        except DslocalError as exc:
            raise DemoStepError(self._name(), exc.message, exc.hint, exc.exit_code) from exc
        except OSError as exc:
            mapped = from_os_error(exc)
            if mapped is None:
                raise
            raise DemoStepError(self._name(), mapped.message, mapped.hint, mapped.exit_code) from exc

    def _name(self) -> str:
        return self.current[0] if self.current else "start"

    @contextlib.contextmanager
    def step(self, key: str, title: str) -> Iterator[_Steps]:
        self.begin(key, title)
        with self.guard():
            yield self
        self.end()


@contextlib.contextmanager
def loopback_direct() -> Iterator[None]:
    """For this run: loopback addresses bypass any proxy (requests and huggingface_hub read NO_PROXY), and
    huggingface_hub's offline mode (``HF_HUB_OFFLINE=1``, which refuses every request) lets the listing
    reach the loopback hub, the only place the demo ever connects to."""
    import huggingface_hub.constants as hf_constants

    saved = {name: os.environ.get(name) for name in ("NO_PROXY", "no_proxy")}
    present = [h.strip() for value in saved.values() if value for h in value.split(",") if h.strip()]
    merged = ",".join(dict.fromkeys([*present, *LOOPBACK]))
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = merged
    offline, hf_constants.HF_HUB_OFFLINE = hf_constants.HF_HUB_OFFLINE, False
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = offline
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the model ------------------------------------------------------------------------------------------

def with_template(source: Path, target: Path, template: str) -> Path:
    """A copy of the GGUF ``source`` whose ``tokenizer.chat_template`` is ``template``: the header is
    re-encoded with that one entry replaced (or added), the tensors copied as they are."""
    from dslocal.gguf_tools.header import T_STRING, read_file_header
    from dslocal.gguf_tools.layout import copy_range, encode_header, encode_kv

    header = read_file_header(source)
    key = "tokenizer.chat_template"
    entries = [header.raw[e.start:e.end] if e.key != key else encode_kv(key, T_STRING, template)
               for e in header.kv.values()]
    if key not in header.kv:
        entries.append(encode_kv(key, T_STRING, template))
    raw, offsets = encode_header(header.version, len(entries), b"".join(entries), list(header.tensors),
                                 header.alignment)
    src = os.open(source, os.O_RDONLY)
    try:
        with open(target, "wb") as out:
            out.write(raw)
            out.truncate(len(raw) + (offsets[-1] + header.tensors[-1].n_bytes if header.tensors else 0))
            out.flush()
            for tensor, offset in zip(header.tensors, offsets):
                copy_range(src, header.data_offset + tensor.offset, out.fileno(), len(raw) + offset, tensor.n_bytes)
            os.fsync(out.fileno())
    finally:
        os.close(src)
    return target


@dataclass(frozen=True)
class Published:
    """The demo model's split set as the hub serves it."""

    shards: tuple[Path, ...]
    bytes: int
    tensors: int
    arch: str
    blocks: int
    experts: int

    def describe(self) -> str:
        from dslocal.units import format_bytes

        return (f"{self.arch} (MLA attention, {self.blocks} blocks, {self.experts} experts), "
                f"{DEMO_QUANT.lower()}, {format_bytes(self.bytes)}: {HONEST}")


def write_demo_repo(hub_root: Path) -> Published:
    """The demo model as a ``DEMO_SHARDS``-shard set in ``hub_root/ORG/NAME/QUANT/``."""
    from dslocal.gguf_tools.header import read_file_header
    from dslocal.gguf_tools.split import split_file
    from dslocal.testing.ggufgen import write_scripted_model

    work = hub_root.parent / "generated"
    work.mkdir(parents=True, exist_ok=True)
    scripted = write_scripted_model(work / "scripted.gguf", arch="deepseek2", dtype="q8_0")
    templated = with_template(scripted, work / f"DeepSeek-Demo-{DEMO_QUANT}.gguf", DEMO_TEMPLATE)
    header = read_file_header(templated)
    folder = hub_root / DEMO_REPO / DEMO_QUANT
    folder.mkdir(parents=True, exist_ok=True)
    split = split_file(templated, max_tensors=-(-len(header.tensors) // DEMO_SHARDS), out_prefix=folder / templated.stem)
    shutil.rmtree(work, ignore_errors=True)
    return Published(split.files, sum(split.sizes), len(header.tensors), header.arch or "?",
                     int(header.arch_get("block_count", 0)), int(header.arch_get("expert_count", 0)))


# -- choosing the engine --------------------------------------------------------------------------------

@dataclass
class _Engine:
    kind: str  # "ollama" or "embedded"
    reason: str
    host: str | None = None  # the Ollama server's address
    private: bool = False  # a server the demo starts (and stops) itself
    binary: Path | None = None


def _daemon_files(folder: Path, managed_binary: Path):  # -> DaemonFiles
    """The private server's PID and log files, in the demo's folder; ``managed_binary`` is where
    'dslocal ollama install' puts Ollama (or the binary already found)."""
    from dslocal.ollama.daemon import DaemonFiles

    return DaemonFiles(pid_file=folder / "ollama" / "ollama.pid", log_file=folder / "ollama" / "ollama.log",
                       managed_binary=managed_binary)


def choose_engine(settings: Settings, engine: str, folder: Path) -> _Engine:
    """Ollama when one answers at ``ollama_host`` or one is installed (started privately), else embedded."""
    from urllib.parse import urlsplit

    from dslocal.engines import embedded
    from dslocal.engines.launch import is_loopback_host
    from dslocal.ollama.client import OllamaClient
    from dslocal.ollama.daemon import find_binary

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", f"choose one of {', '.join(ENGINES)}")
    if engine in ("auto", "ollama"):
        host = str(settings["ollama_host"])
        client = OllamaClient(host, timeout=3)
        on_loopback = is_loopback_host(urlsplit(client.url).hostname or "")
        if on_loopback and client.is_running():  # one on another machine is never used: the demo stays on loopback
            return _Engine("ollama", f"Ollama {client.version()}, which answers at {client.url}", host=host)
        binary = find_binary(_daemon_files(folder, settings.paths.data_dir / "ollama" / "bin" / "ollama"))
        if binary is not None:
            return _Engine("ollama", f"a private Ollama server started from {binary} for the demo, as none was running",
                           private=True, binary=binary)
        if engine == "ollama":
            what = (f"no Ollama server answers at {client.url}" if on_loopback
                    else f"ollama_host ({client.url}) is not on this machine's loopback")
            raise OllamaError(f"{what}, and no Ollama is installed here",
                              "install it with 'dslocal ollama install', or run the demo with --engine embedded")
    if not embedded.available():
        why = "no Ollama was found and " if engine == "auto" else ""
        raise DemoStepError("engine", f"{why}the embedded engine needs the xllamacpp package, which is not installed",
                            "install it with: pip install 'dslocal[embedded]' (or install Ollama: "
                            "'dslocal ollama install')")
    reason = "as asked" if engine == "embedded" else "as no Ollama was found"
    return _Engine("embedded", f"llama.cpp's own server from xllamacpp, {reason}")


# -- the run --------------------------------------------------------------------------------------------

def _prepare_folder(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="dslocal-demo-"))
    folder = keep.expanduser().absolute()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder} is not an empty folder", "give --keep a new or empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def demo_settings(settings: Settings, folder: Path, hub_url: str, engine: _Engine) -> Settings:
    """The user's settings with the loopback hub as the source and every dslocal folder in ``folder``.

    Only this run sees them: nothing is written to the config file."""
    from dslocal.config import load_settings

    flags: dict[str, object] = {"source": hub_url, "models_dir": str(folder / "downloads"), "connections": 2}
    if engine.host is not None:
        flags["ollama_host"] = engine.host
    if engine.private:
        flags["ollama_models"] = str(folder / "ollama" / "models")
    paths = dataclasses.replace(settings.paths, state_dir=folder / "state", cache_dir=folder / "cache",
                                log_dir=folder / "logs", data_dir=folder / "data")
    loaded = load_settings(flags, paths=settings.paths)
    return dataclasses.replace(loaded, paths=paths)


def run_demo(settings: Settings, options: DemoOptions = DemoOptions(), *, sink: DemoSink = lambda event: None,
             notify: Callable[[str], None] = lambda message: None) -> DemoResult:
    """Run the demo; ``sink`` gets every step as it starts and ends, and the answer as it streams."""
    started = time.perf_counter()
    folder = _prepare_folder(options.keep)
    try:
        with loopback_direct():
            steps = _run(settings, options, folder, sink, notify)
    except BaseException:
        if options.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if options.keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    steps.result.total_seconds = time.perf_counter() - started
    return steps.result


def _run(settings: Settings, options: DemoOptions, folder: Path, sink: DemoSink,
         notify: Callable[[str], None]) -> _Steps:
    engine = choose_engine(settings, options.engine, folder)
    result = DemoResult(engine.kind, engine.reason, DEMO_NAME, folder, kept=options.keep is not None)
    steps = _Steps(sink, result)

    def note(message: str) -> None:
        result.notes.append(message)
        notify(message)

    with contextlib.ExitStack() as cleanup:
        from dslocal.testing.hub import run_hub

        with steps.step("model", "generate a tiny DeepSeek model") as s:
            hub_root = folder / "hub"
            published = write_demo_repo(hub_root)
            s.detail = published.describe()
        with steps.step("publish", "publish it as a split set on a loopback hub") as s:
            hub = cleanup.enter_context(run_hub(hub_root))
            result.hub_url = hub.url
            s.detail = (f"hf:{DEMO_REPO}:{DEMO_QUANT}, {len(published.shards)} shards, at {hub.url} "
                        "(a double of Hugging Face's API)")
        local = demo_settings(settings, folder, hub.url, engine)
        if engine.kind == "ollama":
            _with_ollama(local, engine, published, result, steps, cleanup, note)
        else:
            _with_embedded(local, published, result, steps, cleanup, note)
        steps.begin("cleanup", "clean up")
        with steps.guard():
            cleanup.close()  # the engine, the model in Ollama, the hub: last in, first out
        steps.detail = _cleanup_detail(result, engine)
        steps.end()
    return steps


def _cleanup_detail(result: DemoResult, engine: _Engine) -> str:
    parts = []
    if engine.kind == "ollama":
        parts.append(f"{DEMO_NAME} kept in Ollama" if result.kept else f"{DEMO_NAME} removed from Ollama")
        if engine.private:
            parts.append("the private Ollama server stopped")
    else:
        parts.append("the engine stopped")
    parts.append("hub stopped")
    parts.append(f"everything kept in {result.folder}" if result.kept else "the temporary folder removed")
    return ", ".join(parts)


def _profile(settings: Settings):  # -> HardwareProfile
    from dslocal.hardware.detect import detect

    return detect(settings.models_dir)


# -- with Ollama ----------------------------------------------------------------------------------------

def _with_ollama(settings: Settings, engine: _Engine, published: Published, result: DemoResult, steps: _Steps,
                 cleanup: contextlib.ExitStack, note: Callable[[str], None]) -> None:
    from dslocal.ollama.client import OllamaClient
    from dslocal.ollama.store import Store
    from dslocal.pipeline import PullRequest, pull
    from dslocal.units import format_bytes

    if engine.private:
        with steps.step("ollama", "start a private Ollama server") as s:
            from dslocal.ollama import daemon

            assert engine.binary is not None
            files = _daemon_files(result.folder, engine.binary)
            host = f"127.0.0.1:{free_port()}"
            pid = daemon.start(files, host, Path(str(settings["ollama_models"])), wait=60.0, keep_alive="5m",
                               large_models=False)
            cleanup.callback(daemon.stop, files)
            settings = dataclasses.replace(settings, values={**settings.values, "ollama_host": host})
            engine.host = host
            result.ollama_store = Path(str(settings["ollama_models"]))
            s.detail = f"{engine.binary} serve (pid {pid}) at http://{host}, its store in {settings['ollama_models']}"
    client = OllamaClient(str(settings["ollama_host"]))
    titles = {"plan": "ask Ollama, list the repository, plan the fit and the disk",
              "download": "download the shards (resumable, sha256-verified)", "verify": "verify the split set",
              "merge": "merge the shards into Ollama's store", "create": "create the model in Ollama (Modelfile)"}
    details = {  # what a step that ended without an error did (pull reports its steps as they start)
        "download": f"{len(published.shards)} shards, {format_bytes(published.bytes)} over HTTP from the loopback hub, "
                    "each checked against the sha256 the hub announced",
        "verify": f"a whole {len(published.shards)}-shard set: {published.tensors} tensors, {published.arch}",
        "merge": "one GGUF, in the canonical layout Ollama keeps, the shards deleted as they were copied",
    }

    def progress(event: Progress) -> None:
        key = event.task.removeprefix("step:")
        if event.task.startswith("step:") and steps.current is not None and steps.current[0] != key:
            steps.detail = steps.detail or details.get(steps.current[0], "")
            steps.begin(key, titles.get(key, key))

    def pull_note(message: str) -> None:
        note(message)
        if steps.current is not None and steps.current[0] == "plan" and message.startswith("disk plan: "):
            steps.detail = message.removeprefix("disk plan: ")

    name = f"{DEMO_NAME}:latest"
    work = Store(Path(str(settings["ollama_models"]))).work
    if not work.exists():  # pull's work folder in the store: gone again if the demo made it and left it empty
        cleanup.callback(_remove_empty, work)
    if not result.kept:
        cleanup.callback(_remove_model, client, name, note)
    steps.begin("plan", titles["plan"])
    with steps.guard():
        pulled = pull(PullRequest(model=f"hf:{DEMO_REPO}:{DEMO_QUANT}", name=DEMO_NAME, smoke_test=False),
                      settings, _profile(settings), notify=pull_note, progress=progress)
        result.model = pulled.name
        shown = client.show(pulled.name)
    digest = f" ({pulled.digest[:19]}...)" if pulled.digest else ""
    steps.end(f"{pulled.name}{digest}, {format_bytes(pulled.blob_bytes)}, num_ctx {pulled.plan.get('num_ctx', '?')}")
    result.modelfile = str(shown.get("modelfile") or "")
    if result.modelfile:
        steps.sink(ModelfileReady(result.modelfile))
    with steps.step("engine", "load it in Ollama") as s:
        list(client.chat(pulled.name, [], timeout=ENGINE_TIMEOUT))
        s.detail = f"Ollama {client.version()} at {client.url} loaded {pulled.name}"
    from dslocal.chat.connect import ollama_target

    with steps.guard():
        target = ollama_target(settings, pulled.name)
    _chat(target.backend, target.rules, result, steps, log_hint="see 'dslocal ollama logs' (or the server's own log)")


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _remove_model(client: Any, name: str, note: Callable[[str], None]) -> None:
    from dslocal.errors import NotFoundError

    with contextlib.suppress(DslocalError):
        list(client.chat_stream({"model": name, "messages": [], "keep_alive": 0}, timeout=30))  # unload it
    try:
        client.delete(name)
    except NotFoundError:
        pass
    except DslocalError as exc:
        note(f"could not remove {name} from Ollama: {exc.message} (remove it with 'dslocal rm {name}')")


# -- with the embedded engine ---------------------------------------------------------------------------

def _with_embedded(settings: Settings, published: Published, result: DemoResult, steps: _Steps,
                   cleanup: contextlib.ExitStack, note: Callable[[str], None]) -> None:
    from dslocal.gguf_tools.merge import merge_shards
    from dslocal.gguf_tools.shards import open_local_set
    from dslocal.units import format_bytes

    with steps.step("download", "download the shards (resumable, sha256-verified)") as s:
        from dslocal.pipeline.repo_models import pick_model
        from dslocal.sources.download import DownloadOptions, download
        from dslocal.sources.http import make_session
        from dslocal.sources.listing import select
        from dslocal.sources.select import choose

        session = make_session()
        chosen = choose(str(settings["source"]), DEMO_REPO, None, settings, session, notify=note)
        files = pick_model(select(chosen.files, (f"*{DEMO_QUANT}*.gguf",)), DEMO_REPO, DEMO_QUANT)
        report = download(files, settings.models_dir / DEMO_REPO, source=chosen.source.name, session=session,
                          headers=chosen.source.headers(), options=DownloadOptions(connections=2), notify=note)
        shards = tuple(sorted(f.target for f in report.files if f.target.suffix == ".gguf"))
        s.detail = (f"{len(shards)} shards, {format_bytes(report.fetched_bytes)} over HTTP from the loopback hub, "
                    "each checked against the sha256 the hub announced")
    with steps.step("verify", "verify the split set") as s:
        shard_set = open_local_set(shards[0])
        s.detail = (f"a whole {len(shard_set.files)}-shard set: {shard_set.tensor_count} tensors, "
                    f"{shard_set.first.arch}")
    with steps.step("merge", "merge the shards") as s:
        out = result.folder / "model"
        out.mkdir(parents=True, exist_ok=True)
        merged = merge_shards(shards[0], out / f"{DEMO_NAME}.gguf", force=True, delete_shards=True,
                              compute_sha256=True)
        result.model = str(merged.path)
        s.detail = f"one {format_bytes(merged.size)} GGUF, sha256 {merged.sha256[:16]}..., shards deleted"
    with steps.step("modelfile", "write its Modelfile") as s:
        result.modelfile, result.modelfile_path = _write_modelfile(settings, merged.path, out / "Modelfile")
        s.detail = f"{result.modelfile_path} (what 'ollama create {DEMO_NAME} -f' would take)"
    steps.sink(ModelfileReady(result.modelfile, result.modelfile_path))
    with steps.step("engine", "load it in the embedded engine (llama.cpp)") as s:
        from dslocal.engines import embedded
        from dslocal.engines.models import ModelFiles
        from dslocal.engines.prepare import launch_for

        embedded.require()
        launch, _ = launch_for(settings, ModelFiles((merged.path,), DEMO_NAME, None, "file"), _profile(settings))
        launch = dataclasses.replace(launch, no_repack=True)
        log = settings.paths.log_dir / "embedded.log"
        server = embedded.for_chat(launch, log)
        cleanup.callback(server.stop)
        server.start(timeout=ENGINE_TIMEOUT)
        s.detail = f"llama.cpp's server (xllamacpp) at {server.base_url}, {launch.n_ctx} tokens of context"
    from dslocal.chat.rules import rules_for

    _chat(server.chat_backend(), rules_for(DEMO_NAME), result, steps, log_hint=f"its log: {log}")


def _write_modelfile(settings: Settings, model: Path, path: Path) -> tuple[str, Path]:
    from dslocal.fsutil import atomic_write_bytes
    from dslocal.gguf_tools.shards import open_local_set
    from dslocal.ollama.modelfile import load_family, render
    from dslocal.planner.facts import from_shard_set
    from dslocal.planner.fit import plan

    the_plan = plan(from_shard_set(open_local_set(model), name=DEMO_NAME), _profile(settings))
    family = dataclasses.replace(load_family("deepseek-r1"), description="the dslocal demo, in DeepSeek-R1's format")
    text = render(family, from_=str(model), num_ctx=the_plan.num_ctx,
                  num_thread=the_plan.num_thread, num_gpu=the_plan.num_gpu,
                  comment=f"dslocal demo: {HONEST}")
    atomic_write_bytes(path, text.encode("utf-8"))
    return text, path


# -- the question ---------------------------------------------------------------------------------------

def _chat(backend: Any, rules: Any, result: DemoResult, steps: _Steps, *, log_hint: str) -> None:
    from dslocal.chat.session import ChatSession

    backend.read_timeout = CHAT_TIMEOUT
    with steps.step("chat", "ask it one question (streamed)") as s:
        session = ChatSession(backend, rules, options=ChatOptions(max_tokens=64))
        thinking: list[str] = []
        answer: list[str] = []
        done: Done | None = None
        for event in session.send(QUESTION):
            if isinstance(event, ThinkingDelta):
                thinking.append(event.text)
            elif isinstance(event, AnswerDelta):
                answer.append(event.text)
            elif isinstance(event, ThinkingWasAnswer):
                thinking, answer = [event.text], []
            elif isinstance(event, ChatError):
                raise DemoStepError("chat", event.message, event.hint or log_hint)
            elif isinstance(event, Done):
                done = event
            if isinstance(event, (ThinkingDelta, AnswerDelta, ThinkingWasAnswer)):
                steps.sink(event)
        result.thinking, result.answer = "".join(thinking).strip(), "".join(answer).strip()
        if result.thinking != EXPECTED_THINKING or result.answer != EXPECTED_ANSWER:
            raise DemoStepError(
                "chat", f"the model reasoned {result.thinking!r} and answered {result.answer!r}, not "
                        f"{EXPECTED_THINKING!r} and {EXPECTED_ANSWER!r}: the engine did not run it as llama.cpp does",
                log_hint)
        stats = done.stats if done is not None else None
        result.stats = stats.as_dict() if stats is not None else None
        tokens = stats.answer_tokens if stats is not None else None
        speed = f", {stats.decode_tps:.0f} tok/s" if stats is not None and stats.decode_tps else ""
        s.detail = (f"reasoned {result.thinking!r}, answered {result.answer!r}"
                    + (f" ({tokens} tokens{speed})" if tokens else ""))
