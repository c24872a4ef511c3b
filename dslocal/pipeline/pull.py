"""The pull: its steps (resolve, plan, preflight, download, verify, merge, create, smoke), run by one runner.

Each step is a function of the pull's state that returns an :class:`Outcome`; the
:class:`~dslocal.pipeline.runner.StepRunner` runs them in order and turns them into typed
events (:mod:`dslocal.pipeline.steps`). What finished is recorded in the journal, so a
rerun after a crash continues; the journal is finished once the last step is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslocal.config import Settings
from dslocal.errors import InputError, OllamaError
from dslocal.gguf_tools.merge import merge_shards
from dslocal.gguf_tools.shards import open_local_set
from dslocal.hardware.profile import HardwareProfile
from dslocal.ollama.client import OllamaClient
from dslocal.ollama.store import Store
from dslocal.pipeline import disk
from dslocal.pipeline.create import create_direct, create_via_api, model_parameters
from dslocal.pipeline.gate import check_plan
from dslocal.pipeline.journal import Journal
from dslocal.pipeline.provenance import read_provenance, record_provenance
from dslocal.pipeline.request import PullRequest, PullResult, Resolved, default_name, resolve
from dslocal.pipeline.reuse import blob_problem, source_journal, source_key, work_name
from dslocal.pipeline.runner import Step, StepRunner
from dslocal.pipeline.steps import Outcome, PullEvents, StepState, no_events
from dslocal.planner.facts import ModelFacts, from_shard_set, from_variant
from dslocal.planner.fit import OLLAMA_AUTO_FIT, Plan, parse_version, plan
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes, format_rate

MIN_OLLAMA = (0, 5, 5)  # the 'modelfile' field of /api/create was removed; 'files' arrived
DEFAULT_LOAD_TIMEOUT = 5 * 60.0  # envconfig.LoadTimeout's default
SMOKE_MIN_WAIT = 2 * 3600.0
Notify = Callable[[str], None]


@dataclass
class _Pull:
    """The state one pull carries from step to step."""

    request: PullRequest
    settings: Settings
    profile: HardwareProfile
    notify: Notify
    progress: ProgressSink
    resolved: Resolved = field(init=False)  # these five are the resolve step's
    store: Store = field(init=False)
    client: OllamaClient = field(init=False)
    journal: Journal = field(init=False)
    result: PullResult = field(init=False)
    version: str | None = None
    shared_store: bool = True
    facts: ModelFacts | None = None
    the_plan: Plan | None = None
    chosen: Any = None
    files: list[Any] = field(default_factory=list)
    session: Any = None
    blob: dict[str, Any] | None = None  # the model blob to use: recorded by this pull, or found by its source
    source: Journal | None = None  # what was merged from these files, whatever the pull was named
    gated: bool = False  # the plan was checked against what is worth a download
    shards: tuple[Path, ...] = ()  # the files to verify and merge
    digest: str = ""  # the model blob's

    @property
    def name(self) -> str:
        return self.resolved.name

    @property
    def rewrites(self) -> bool:
        return self.version is None or parse_version(self.version) >= OLLAMA_AUTO_FIT

    @property
    def layout(self) -> str:
        return "ollama" if (self.rewrites or self.request.direct) else "llama.cpp"

    def step(self, label: str) -> None:
        self.result.steps.append(label)
        self.progress(Progress(f"step:{label}", len(self.result.steps), None, label))

    def replan(self, facts: ModelFacts) -> None:
        self.facts = facts
        self.the_plan = plan(facts, self.profile, ctx=self.request.ctx, ollama_version=self.version,
                             variant=self.resolved.label)
        self.result.plan = self.the_plan.as_dict()


def pull(
    request: PullRequest,
    settings: Settings,
    profile: HardwareProfile,
    *,
    notify: Notify = lambda message: None,
    progress: ProgressSink = null_sink,
    events: PullEvents = no_events,
) -> PullResult:
    """Pull ``request``: the steps of :data:`~dslocal.pipeline.steps.STEPS` in order.

    ``notify`` and ``progress`` get the lines and counts they always got; ``events`` gets
    them as the steps' typed events, with each step's start, end, state and timing.
    """
    runner = StepRunner(PULL_STEPS, events)
    p = _Pull(request, settings, profile, runner.notify(notify), runner.progress(progress))
    if runner.run(p):
        _record(p, p.digest)
        p.journal.finish()
    return p.result


def _resolve(p: _Pull) -> Outcome:
    """What to pull and under which name (checked before any other work), and the server that takes it."""
    request, settings = p.request, p.settings
    p.resolved = resolve(request)
    p.store = Store(Path(settings["ollama_models"]))  # type: ignore[arg-type]
    p.client = OllamaClient(str(settings["ollama_host"]))
    p.journal = Journal(settings.paths.state_dir / "pulls" / f"{default_name(p.name)}.json",
                        {"model": request.model, "name": p.name, "direct": request.direct})
    p.result = PullResult(p.name, None, 0, {}, {})
    if _already_there(p):
        return Outcome(summary=f"{p.name} is already in Ollama", rest=StepState.RESUMED,
                       rest_summary="already in Ollama")
    _connect(p)
    if request.direct:
        server = "--direct: no server needed"
    elif p.version is None:
        server = "no Ollama server (dry run)"
    else:
        server = f"Ollama {p.version}" + ("" if p.shared_store else ", which keeps its models elsewhere")
    return Outcome(summary=f"{request.model} as {p.name}; {server}")


def _plan(p: _Pull) -> Outcome:
    """The plan (refused when not worth the download), what earlier runs left, and the files to fetch."""
    _first_plan(p)
    _gate(p)
    _check_recorded_blob(p)
    _list_files(p)
    _gate(p)
    _reuse(p)
    if p.the_plan is not None:
        what = (f"{p.the_plan.placement}, num_ctx {p.the_plan.num_ctx}, "
                f"~{format_rate(p.the_plan.decode_tokens_per_s)} tok/s")
    else:
        what = str(p.result.plan_note or "planned from the header after the download")
    if p.blob is not None:
        what += f"; the blob {p.blob['digest'][:19]}... is already merged"
    elif p.files:
        what += f"; {len(p.files)} file{'s' if len(p.files) > 1 else ''}, {format_bytes(sum(f.size for f in p.files))}"
    return Outcome(summary=what)


def _preflight_step(p: _Pull) -> Outcome:
    dry_run = _preflight(p)
    plan = p.result.disk_plan
    summary = f"needs {format_bytes(plan['needed_bytes'])}, {format_bytes(plan['free_bytes'])} free"
    if dry_run:
        return Outcome(summary=summary, rest=StepState.SKIPPED, rest_summary="dry run")
    return Outcome(summary=summary)


def _already_there(p: _Pull) -> bool:
    existing = read_provenance(p.settings, p.name)
    if (
        p.request.dry_run or p.journal.steps or not existing or existing.get("model") != p.request.model
        or p.store.find_manifest(p.name) is None or p.store.model_layer(p.name) != existing.get("blob")
    ):
        return False
    p.notify(f"{p.name} is already in Ollama from {p.request.model}; "
             f"'dslocal rm {p.name.split(':')[0]}' first to pull again")
    p.result.digest, p.result.resumed = existing.get("blob"), ["all"]
    return True


def _connect(p: _Pull) -> None:
    """The server's version decides the path; whether it reads our store is asked, not guessed."""
    if p.request.direct:
        return
    if p.client.is_running():
        p.version = p.client.version()
        if parse_version(p.version) < MIN_OLLAMA:
            raise OllamaError(
                f"Ollama {p.version} is older than 0.5.5, whose create API (blobs + files) dslocal uses",
                "update Ollama ('dslocal ollama install'), or use --direct",
            )
        p.shared_store = p.store.serves_blobs(p.client.blob_exists)
        if not p.shared_store:
            p.notify(f"the Ollama server at {p.client.url} keeps its models elsewhere: the model will be uploaded")
    elif not p.request.dry_run:
        raise OllamaError(
            f"no Ollama server answers at {p.client.url}",
            "start one with 'dslocal ollama start' (no Ollama yet: 'dslocal ollama install'), use --direct to "
            "write the model into OLLAMA_MODELS, or go without Ollama: 'dslocal download ID', then "
            "'dslocal chat ID --backend embedded'",
        )


def _downloaded(p: _Pull) -> bool:
    """The journal's download is still on disk (the merge consumes the shards unless they are kept)."""
    paths = p.journal.done("download")
    return bool(paths) and all(Path(path).exists() for path in paths)


def _check_recorded_blob(p: _Pull) -> None:
    """A blob this pull recorded is used only while it is whole; else the steps that made it are done again."""
    blob = p.journal.done("blob")
    if not blob:
        return
    if p.journal.done("create") and p.store.find_manifest(p.name) is not None:
        p.blob = blob  # the model is in Ollama: its layers are the server's now
        return
    problem = blob_problem(p.store.blob_path(blob["digest"]), blob["digest"], int(blob["bytes"]),
                           full=not p.request.dry_run, progress=p.progress)
    if problem is None:
        p.blob = blob
        return
    p.notify(f"the model blob {blob['digest'][:19]}... that an earlier run of this pull merged {problem}: "
             "downloading and merging it again")
    if not p.request.dry_run:
        p.journal.forget("blob", "create", *([] if _downloaded(p) else ["download"]))


def _first_plan(p: _Pull) -> None:
    """Plan from the catalog estimate or the local header (the real header replans after download)."""
    if p.resolved.variant is not None:
        p.replan(from_variant(p.resolved.variant))
    elif p.resolved.kind == "local":
        p.replan(from_shard_set(open_local_set(p.resolved.local_files[0]), name=p.resolved.label))


def _plan_target(p: _Pull) -> str:
    if p.resolved.variant is not None:
        return p.resolved.variant.id
    if p.resolved.kind == "local":
        return str(p.resolved.local_files[0])
    return f"hf:{p.resolved.repo}/{p.files[0].path}" if p.files else p.request.model


def _gate(p: _Pull) -> None:
    """Once there is a plan: refuse one that cannot load or would only crawl (unless --force), before any download."""
    if p.the_plan is None or p.gated:
        return
    p.gated = True
    check_plan(p.resolved.label, p.the_plan, p.profile, p.version, plan_target=_plan_target(p),
               variant=p.resolved.variant.id if p.resolved.variant else None, force=p.request.force,
               dry_run=p.request.dry_run, notify=p.notify)


def _list_files(p: _Pull) -> None:
    from dslocal.pipeline.repo_models import pick_model
    from dslocal.sources.http import make_session
    from dslocal.sources.listing import select
    from dslocal.sources.select import choose

    p.session = make_session()
    if p.resolved.kind == "local" or p.blob is not None:
        return
    source = str(p.settings["source"] if p.request.source is None else p.request.source)
    p.chosen = choose(source, p.resolved.repo or "", None, p.settings, p.session, notify=p.notify)
    p.files = select(p.chosen.files, p.resolved.include)
    if not p.files:
        raise InputError(f"no GGUF file of {p.resolved.repo} matches {' '.join(p.resolved.include)}",
                         "check the quant name")
    if p.resolved.kind == "hf":
        p.files = pick_model(p.files, p.resolved.repo or "", p.resolved.quant)
    if p.the_plan is None:
        _plan_from_listing(p)


def _plan_from_listing(p: _Pull) -> None:
    from dslocal.pipeline.listing_plan import facts_before_download

    facts, why = facts_before_download(p.resolved.repo or "", p.files, p.chosen, p.session,
                                       p.settings.paths.cache_dir / "gguf-headers", p.resolved.label)
    if facts is None:
        p.result.plan_note = why
        p.notify(str(why))
        return
    p.replan(facts)


def _reuse(p: _Pull) -> None:
    """The blob an earlier pull merged from these very files (under any name), when it is still whole."""
    if p.blob is not None:
        return
    p.source = source_journal(p.settings.paths.state_dir, source_key(p.layout, p.files, p.resolved.local_files))
    blob = p.source.done("blob")
    if not blob:
        return
    problem = blob_problem(p.store.blob_path(blob["digest"]), blob["digest"], int(blob["bytes"]),
                           full=not p.request.dry_run, progress=p.progress)
    if problem is not None:
        if not p.request.dry_run:
            p.source.forget("blob")
        return
    p.notify(f"reusing {blob['digest'][:19]}... ({format_bytes(int(blob['bytes']))}), merged from the same files "
             f"by an earlier pull{' as ' + blob['name'] if blob.get('name') else ''}: nothing to download or merge")
    p.blob = blob
    if not p.request.dry_run:
        p.journal.record("blob", blob)


def _preflight(p: _Pull) -> bool:
    """The disk plan; refuses before any download. Returns True for a dry run (stop here)."""
    if p.files:
        model_bytes = sum(f.size for f in p.files)
    elif p.blob is not None:
        model_bytes = int(p.blob["bytes"])
    else:
        model_bytes = sum(path.stat().st_size for path in p.resolved.local_files)
    delete_shards = p.resolved.kind != "local" and not p.request.keep_shards
    download_dir = p.settings.models_dir / (p.resolved.repo or "local")
    plan = disk.plan_disk(
        model_bytes, fetched=_downloaded(p) or p.resolved.kind == "local",
        delete_shards=delete_shards, blob_done=p.blob is not None, create_done=bool(p.journal.done("create")),
        rewrites=p.rewrites, shared_store=p.shared_store, direct=p.request.direct,
        free_bytes=disk.disk_free(p.store.root), layout=p.layout, download_dir=str(download_dir),
        store=str(p.store.root), server_version=p.version,
    )
    p.result.disk_plan = plan.as_dict()
    p.notify(f"disk plan: {plan.message()}")
    if p.request.dry_run:
        p.result.dry_run = True
        return True
    plan.check(p.resolved.label)
    return False


def _download(p: _Pull) -> Outcome:
    from dslocal.sources.download import DownloadOptions, download

    if p.resolved.kind == "local":
        p.shards = p.resolved.local_files
        return Outcome(StepState.SKIPPED, "local files: nothing to download")
    if p.blob is not None:
        return Outcome(StepState.RESUMED, "the model blob is already merged: nothing to download")
    journaled = bool(p.journal.done("download"))
    if journaled:
        p.result.resumed.append("download")
    p.step("download")
    report = download(p.files, p.settings.models_dir / (p.resolved.repo or "local"), source=p.chosen.source.name,
                      session=p.session, headers=p.chosen.source.headers(),
                      options=DownloadOptions(connections=int(p.settings["connections"])),
                      progress=p.progress, notify=p.notify, local=p.chosen.local)
    p.shards = tuple(f.target for f in report.files if f.target.suffix == ".gguf")
    p.journal.record("download", [str(path) for path in p.shards])
    total = sum(f.size for f in report.files)
    earlier = max(total - report.fetched_bytes, 0)  # verified files and partial ones an earlier run left
    summary = f"{len(report.files)} file{'s' if len(report.files) > 1 else ''}, {format_bytes(total)}"
    if earlier:
        summary += f" ({format_bytes(earlier)} of it already here)"
    return Outcome(StepState.RESUMED if journaled or earlier else StepState.DONE, summary)


def _verify(p: _Pull) -> Outcome:
    """The shards are one whole set; its real header replans a plan that was an estimate."""
    if p.blob is not None:
        p.result.resumed.append("blob")
        return Outcome(StepState.RESUMED, "the model blob was verified when it was merged")
    p.step("verify")
    shard_set = open_local_set(p.shards[0])
    if p.facts is None or not p.facts.exact:
        p.replan(from_shard_set(shard_set, name=p.resolved.label))
    count = len(p.shards)
    return Outcome(summary=f"{count} shard{'s' if count > 1 else ''}, one complete set")


def _merge(p: _Pull) -> Outcome:
    """The model blob: merged, in canonical form, straight into the store."""
    state = StepState.RESUMED
    if p.blob is None:
        state = StepState.DONE
        p.step("merge")
        p.store.work.mkdir(parents=True, exist_ok=True)
        delete_shards = p.resolved.kind != "local" and not p.request.keep_shards
        assert p.source is not None
        merged = merge_shards(p.shards[0], p.store.work / work_name(p.source.key), force=True, layout=p.layout,
                              delete_shards=delete_shards, compute_sha256=True, progress=p.progress)
        digest = f"sha256:{merged.sha256}"
        p.store.adopt(merged.path, digest)
        p.blob = {"digest": digest, "bytes": merged.size}
        p.journal.record("blob", p.blob)
        p.source.record("blob", {**p.blob, "name": p.name})
    p.result.blob_bytes = int(p.blob["bytes"])
    p.digest = str(p.blob["digest"])
    return Outcome(state, f"{p.digest[:19]}... ({format_bytes(p.result.blob_bytes)}, {p.layout} layout)")


def _create(p: _Pull) -> Outcome:
    digest = p.digest
    if p.the_plan is None:  # resumed after the blob was made: plan from its header
        p.replan(from_shard_set(open_local_set(p.store.blob_path(digest)), name=p.resolved.label))
    parameters = model_parameters(p.the_plan, p.resolved, pin_gpu_layers=not p.rewrites)
    if p.journal.done("create") and p.store.find_manifest(p.name) is not None:
        p.result.resumed.append("create")
        p.result.digest = p.store.model_layer(p.name)
        return Outcome(StepState.RESUMED, f"{p.name} is in Ollama")
    p.step("create")
    if p.request.direct:
        p.result.digest = create_direct(p.store, p.name, digest, p.result.blob_bytes, p.resolved, parameters,
                                        notify=p.notify)
        summary = f"{p.name} written into {p.store.root} (--direct)"
    else:
        p.result.digest = create_via_api(p.client, p.store, p.name, digest, p.result.blob_bytes, p.resolved,
                                         parameters, shared_store=p.shared_store, server_rewrites=p.rewrites,
                                         notify=p.notify,
                                         progress=p.progress)
        summary = f"{p.name} created by Ollama {p.version}" + ("" if p.shared_store else " (uploaded)")
    p.journal.record("create", p.result.digest)
    return Outcome(summary=summary)


def _smoke_step(p: _Pull) -> Outcome:
    if p.request.direct:
        return Outcome(StepState.SKIPPED, "--direct: no server was asked")
    if not p.request.smoke_test:
        return Outcome(StepState.SKIPPED, "--no-smoke-test")
    _smoke(p)
    smoke = p.result.smoke or {}
    return Outcome(summary=f"{smoke.get('tokens')} tokens in {smoke.get('seconds')} s")


def smoke_wait(env: dict[str, str] | None = None) -> float | None:
    """Seconds to wait for the smoke test's first byte, which a server sends only once the model is loaded.

    ``OLLAMA_LOAD_TIMEOUT`` (Go duration or seconds; 5 m by default, zero or less for
    no limit) is how long the server lets a load stall before it gives up and says so,
    not how long a load may take: 400 GB from a slow disk takes longer. So the wait is
    generous, 2 h or four times that timeout, and none when the server has no limit.
    """
    from dslocal.ollama.duration import parse_duration

    value = (env if env is not None else os.environ).get("OLLAMA_LOAD_TIMEOUT", "")
    seconds = parse_duration(value) if value.strip() else None
    if seconds is None:
        seconds = DEFAULT_LOAD_TIMEOUT
    if seconds <= 0:
        return None
    return max(SMOKE_MIN_WAIT, 4 * seconds)


def _smoke(p: _Pull) -> None:
    """A short generation; the wait for the first byte covers a large model's load."""
    p.step("smoke")
    wait = smoke_wait()
    p.notify(f"loading {p.name} for a short test (a large model can take minutes)")
    started = time.monotonic()
    chunks = list(p.client.chat(p.name, [{"role": "user", "content": "Say hello."}], options={"num_predict": 8},
                                timeout=wait))
    final = chunks[-1] if chunks else {}
    text = "".join(c.get("message", {}).get("content", "") for c in chunks)
    if not final.get("done"):
        raise OllamaError(f"the smoke test of {p.name} did not finish", "see 'dslocal ollama logs'")
    eval_ns = final.get("eval_duration") or 0
    p.result.smoke = {
        "seconds": round(time.monotonic() - started, 2), "tokens": final.get("eval_count"),
        "tokens_per_s": round(final.get("eval_count", 0) / eval_ns * 1e9, 2) if eval_ns else None,
        "text": text[:200],
    }


def _record(p: _Pull, digest: str) -> None:
    record_provenance(p.settings, p.name, {
        "model": p.request.model, "kind": p.resolved.kind, "repo": p.resolved.repo,
        "source": p.chosen.source.name if p.chosen else ("local" if p.resolved.kind == "local" else None),
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.size} for f in p.files],
        "blob": digest, "layout": p.layout,
        "plan": {k: p.result.plan.get(k) for k in ("placement", "num_ctx", "num_gpu")},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    })


PULL_STEPS: tuple[Step[_Pull], ...] = (
    Step("resolve", _resolve), Step("plan", _plan), Step("preflight", _preflight_step), Step("download", _download),
    Step("verify", _verify), Step("merge", _merge), Step("create", _create), Step("smoke", _smoke_step),
)
