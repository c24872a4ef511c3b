"""``dslocal pull``: from a catalog id (or hf: repo, or local file) to a ready Ollama model.

resolve -> hardware and plan -> disk preflight -> download (verified) -> shard-set check
-> model blob (merge, least disk) -> create (Ollama API) or --direct -> smoke test.

Each finished step is recorded in a journal (``STATE/pulls/NAME.json``), so a rerun
after a crash continues at the right step: verified files are not fetched again (the
downloader's own ledger) and a finished blob is not merged again.

The least-disk paths, by Ollama version (facts: shared/reference/ollama-observed.md):

* daemon local, dslocal knows its ``OLLAMA_MODELS``: the merge writes straight into
  the store and renames the file to ``blobs/sha256-<hex>``, so create uploads nothing;
* from v0.30 the server rewrites every import into a second blob; dslocal writes its
  blob in that canonical form, so the rewrite reproduces the same digest and no second
  copy survives (the transient peak is about twice the model), and removes its own
  blob if the server kept another;
* ``--direct`` writes the blob and the manifest itself, as ``ollama pull`` lays them out:
  the peak is the model's size on any version, but the server's validation is skipped.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslocal.catalog import Variant, load_catalog
from dslocal.config import Settings
from dslocal.errors import DiskError, InputError, OllamaError, UsageError
from dslocal.fsutil import atomic_write_bytes, remove_stale_temps
from dslocal.gguf_tools.ggml_types import FILE_TYPES
from dslocal.gguf_tools.header import read_file_header
from dslocal.gguf_tools.merge import merge_shards
from dslocal.gguf_tools.shards import discover_local, open_local_set, parse_shard_name
from dslocal.hardware.profile import HardwareProfile
from dslocal.ollama.client import OllamaClient
from dslocal.ollama.daemon import is_loopback
from dslocal.ollama.modelfile import STOP_TOKENS, load_family
from dslocal.ollama.store import Store
from dslocal.planner.facts import from_shard_set, from_variant
from dslocal.planner.fit import OLLAMA_AUTO_FIT, Plan, parse_version, plan
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.sources.listing import check_repo_id
from dslocal.units import format_bytes

JOURNAL_VERSION = 1
MIN_OLLAMA = (0, 5, 5)  # the 'modelfile' field of /api/create was removed; 'files' arrived
Notify = Callable[[str], None]


@dataclass(frozen=True)
class PullRequest:
    model: str
    name: str | None = None
    ctx: int | None = None
    source: str | None = None
    keep_shards: bool = False
    direct: bool = False
    dry_run: bool = False
    smoke_test: bool = True


@dataclass
class PullResult:
    name: str
    digest: str | None  # the model layer's digest in Ollama
    blob_bytes: int
    plan: dict[str, Any]
    disk_plan: dict[str, Any]
    steps: list[str] = field(default_factory=list)  # steps done in this run
    resumed: list[str] = field(default_factory=list)  # steps skipped because the journal had them
    smoke: dict[str, Any] | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Resolved:
    kind: str  # catalog | hf | local
    variant: Variant | None
    repo: str | None
    include: tuple[str, ...]
    local_files: tuple[Path, ...]
    template: str
    name: str


def default_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return name or "deepseek"


def resolve(request: PullRequest) -> Resolved:
    """What to pull: a catalog variant, an ``hf:ORG/REPO[:QUANT]`` repository, or local GGUF files."""
    catalog = load_catalog()
    variant = catalog.find(request.model)
    if variant is not None:
        if variant.multi_node:
            raise UsageError(f"{variant.id} is the multi-node FP8 original", f"plan it with 'dslocal plan {variant.id} --cluster ...'")
        name = request.name or (variant.aliases[0] if variant.aliases else variant.id)
        return Resolved("catalog", variant, variant.hf_repo, variant.include_globs(), (), variant.template, name)
    if request.model.startswith("hf:"):
        repo, _, quant = request.model[3:].partition(":")
        try:
            check_repo_id(repo)
        except UsageError:
            raise UsageError(f"{request.model!r} is not hf:ORG/REPO[:QUANT]", "e.g. hf:unsloth/DeepSeek-R1-GGUF:UD-IQ1_S") from None
        include = (f"*{quant}*.gguf",) if quant else ("*.gguf",)
        name = request.name or default_name(repo.split("/")[1].removesuffix("-GGUF") + (f"-{quant}" if quant else ""))
        return Resolved("hf", None, repo, include, (), "deepseek-r1", name)
    path = Path(request.model).expanduser()
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise InputError(f"{path} holds no .gguf file", "point at a GGUF file or a folder of shards")
        files = tuple(discover_local(ggufs[0]))
        if len(files) != len(ggufs):
            raise InputError(f"{path} holds more than one model", "name one of its .gguf files instead")
    elif path.is_file():
        files = tuple(discover_local(path))
    else:
        catalog.get(request.model)  # NotFoundError with suggestions
        raise AssertionError("unreachable")
    stem = parse_shard_name(files[0].name)
    name = request.name or default_name(stem.prefix if stem else files[0].stem)
    return Resolved("local", None, None, (), files, "deepseek-r1", name)


class Journal:
    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self.steps: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == JOURNAL_VERSION and data.get("key") == key:
                self.steps = data.get("steps", {})
        except (OSError, ValueError):
            pass

    def done(self, step: str) -> Any:
        return self.steps.get(step)

    def record(self, step: str, value: Any = True) -> None:
        self.steps[step] = value
        atomic_write_bytes(
            self.path, json.dumps({"version": JOURNAL_VERSION, "key": self.key, "steps": self.steps}, indent=1).encode()
        )

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
        remove_stale_temps(self.path)


def _disk_free(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def pull(
    request: PullRequest,
    settings: Settings,
    profile: HardwareProfile,
    *,
    notify: Notify = lambda message: None,
    progress: ProgressSink = null_sink,
) -> PullResult:
    from dslocal.sources.download import DownloadOptions, download
    from dslocal.sources.http import make_session
    from dslocal.sources.listing import select
    from dslocal.sources.select import choose

    resolved = resolve(request)
    name = resolved.name if ":" in resolved.name else f"{resolved.name}:latest"
    store = Store(Path(settings["ollama_models"]))  # type: ignore[arg-type]
    client = OllamaClient(str(settings["ollama_host"]))
    journal = Journal(
        settings.paths.state_dir / "pulls" / f"{default_name(name)}.json",
        {"model": request.model, "name": name, "direct": request.direct},
    )
    result = PullResult(name, None, 0, {}, {})
    existing = read_provenance(settings, name)
    if (
        not request.dry_run and not journal.steps and existing and existing.get("model") == request.model
        and store.manifest_path(name).exists() and store.model_layer(name) == existing.get("blob")
    ):
        notify(f"{name} is already in Ollama from {request.model}; 'dslocal rm {name.split(':')[0]}' first to pull again")
        result.digest, result.resumed = existing.get("blob"), ["all"]
        return result

    def step(label: str) -> None:
        result.steps.append(label)
        progress(Progress(f"step:{label}", len(result.steps), None, label))

    # -- Ollama: version decides the path (not needed for --direct or a dry run)
    local_store = is_loopback(str(settings["ollama_host"]))
    version = None
    if not request.direct:
        if client.is_running():
            version = client.version()
            if parse_version(version) < MIN_OLLAMA:
                raise OllamaError(
                    f"Ollama {version} is older than 0.5.5, whose create API (blobs + files) dslocal uses",
                    "update Ollama ('dslocal ollama install'), or use --direct",
                )
        elif not request.dry_run:
            raise OllamaError(
                f"no Ollama server answers at {client.url}",
                "start one with 'dslocal ollama start', or use --direct to write the model into OLLAMA_MODELS",
            )
    new_server = version is None or parse_version(version) >= OLLAMA_AUTO_FIT
    layout = "ollama" if (new_server or request.direct) else "llama.cpp"

    # -- plan (catalog estimate or the local header)
    facts = from_variant(resolved.variant) if resolved.variant else None
    if resolved.kind == "local":
        facts = from_shard_set(open_local_set(resolved.local_files[0]), name=resolved.name)
    the_plan: Plan | None = None
    if facts is not None:
        the_plan = plan(facts, profile, ctx=request.ctx, ollama_version=version, variant=resolved.name)
        result.plan = the_plan.as_dict()
        if not the_plan.fits:
            notify(f"warning: {resolved.name} does not fit this machine ({the_plan.placement}); see 'dslocal plan'")

    # -- listing and disk preflight
    files = []
    chosen = None
    session = make_session()
    if resolved.kind != "local" and not journal.done("blob"):
        chosen = choose(str(settings["source"] if request.source is None else request.source), resolved.repo or "",
                        None, settings, session, notify=notify)
        files = select(chosen.files, resolved.include)
        if not files:
            raise InputError(f"no GGUF file of {resolved.repo} matches {' '.join(resolved.include)}", "check the quant name")
    model_bytes = sum(f.size for f in files) if files else sum(p.stat().st_size for p in resolved.local_files)
    download_dir = settings.models_dir / (resolved.repo or "local")
    delete_shards = resolved.kind != "local" and not request.keep_shards
    # Bytes still to find on disk: the download (unless done), a merged copy when the shards stay
    # (kept or the user's own), and the server's transient rewrite from v0.30.
    fetched = bool(journal.done("download")) or resolved.kind == "local"
    need = (0 if fetched else model_bytes) + (0 if delete_shards else model_bytes)
    transient = model_bytes if (new_server and not request.direct) else 0
    if journal.done("blob"):
        need = 0
    result.disk_plan = {
        "model_bytes": model_bytes, "download_dir": str(download_dir), "store": str(store.root),
        "needed_bytes": need + transient, "server_rewrite_bytes": transient, "layout": layout,
        "delete_shards": delete_shards,
    }
    free = _disk_free(store.root)
    message = f"needs {format_bytes(need + transient)} free, you have {format_bytes(free)}"
    if transient:
        message += f" (Ollama {version or '>= 0.30'} rewrites every import: a transient second copy)"
    notify(f"disk plan: {message}")
    if request.dry_run:
        result.dry_run = True
        return result
    if need + transient > free:
        raise DiskError(f"pulling {resolved.name} {message}", "free some space, or pass --direct to need only the model's size")

    # -- download
    shards: tuple[Path, ...] = resolved.local_files
    if resolved.kind != "local" and not journal.done("blob"):
        if journal.done("download"):
            result.resumed.append("download")
        step("download")
        report = download(files, download_dir, source=chosen.source.name, session=session,
                          headers=chosen.source.headers(), options=DownloadOptions(connections=int(settings["connections"])),
                          progress=progress, notify=notify, local=chosen.local)
        shards = tuple(f.target for f in report.files if f.target.suffix == ".gguf")
        journal.record("download", [str(p) for p in shards])

    # -- blob: verify the set and write the model blob (merge, canonical form, straight into the store)
    blob = journal.done("blob")
    if blob and store.blob_path(blob["digest"]).exists():
        result.resumed.append("blob")
    else:
        step("verify")
        shard_set = open_local_set(shards[0])
        if facts is None or not facts.exact:
            facts = from_shard_set(shard_set, name=resolved.name)
            the_plan = plan(facts, profile, ctx=request.ctx, ollama_version=version, variant=resolved.name)
            result.plan = the_plan.as_dict()
        step("merge")
        store.work.mkdir(parents=True, exist_ok=True)
        merged = merge_shards(shards[0], store.work / f"{default_name(name)}.gguf", force=True, layout=layout,
                              delete_shards=delete_shards, compute_sha256=True, progress=progress)
        digest = f"sha256:{merged.sha256}"
        store.adopt(merged.path, digest)
        blob = {"digest": digest, "bytes": merged.size}
        journal.record("blob", blob)
    result.blob_bytes = int(blob["bytes"])
    digest = str(blob["digest"])

    # -- create
    family = load_family(resolved.template)
    if the_plan is None:  # resumed after the blob was made: plan from its header
        facts = from_shard_set(open_local_set(store.blob_path(digest)), name=resolved.name)
        the_plan = plan(facts, profile, ctx=request.ctx, ollama_version=version, variant=resolved.name)
        result.plan = the_plan.as_dict()
    parameters: dict[str, Any] = {"stop": list(STOP_TOKENS), "num_ctx": the_plan.num_ctx,
                                  "num_thread": the_plan.num_thread}
    if the_plan.num_gpu is not None and not new_server:
        parameters["num_gpu"] = the_plan.num_gpu
    for key in ("temperature", "top_p", "min_p"):
        value = getattr(resolved.variant, key, None) if resolved.variant else getattr(family, key)
        if value is not None:
            parameters[key] = value
    if journal.done("create") and store.manifest_path(name).exists():
        result.resumed.append("create")
        result.digest = store.model_layer(name)
    elif request.direct:
        step("create")
        header = read_file_header(store.blob_path(digest))  # dslocal's own validation stands in for the server's
        notify("--direct: the model was validated by dslocal; Ollama's own import checks were skipped")
        file_type = FILE_TYPES.get(int(header.get("general.file_type", -1) or -1), "unknown")
        store.write_manifest(name, digest, result.blob_bytes, family=str(header.arch), file_type=file_type,
                             template=family.template, system=family.system or None, parameters=parameters)
        result.digest = digest
        journal.record("create", digest)
    else:
        step("create")
        ours = store.blob_path(digest)
        shared_store = local_store and client.blob_exists(digest)
        if not shared_store:  # the server keeps its blobs elsewhere: upload ours
            notify(f"uploading {format_bytes(result.blob_bytes)} to {client.url}")
            sent = [0]

            def uploaded(n: int) -> None:
                sent[0] += n
                progress(Progress("upload", sent[0], result.blob_bytes, ours.name))

            client.push_blob(ours, digest, progress=uploaded)
        client.create(name, files={f"{default_name(resolved.name)}.gguf": digest}, template=family.template,
                      system=family.system or None, parameters=parameters, progress=lambda s: notify(f"ollama: {s}"))
        result.digest = store.model_layer(name) if shared_store else digest
        # Leave no unreferenced copy: ours was uploaded elsewhere, or the server kept a rewrite of it.
        if not shared_store or digest not in store.referenced():
            with contextlib.suppress(FileNotFoundError):
                ours.unlink()
        journal.record("create", result.digest)

    # -- smoke test
    if request.smoke_test and not request.direct:
        step("smoke")
        started = time.monotonic()
        chunks = list(client.chat(name, [{"role": "user", "content": "Say hello."}], options={"num_predict": 8}))
        final = chunks[-1] if chunks else {}
        text = "".join(c.get("message", {}).get("content", "") for c in chunks)
        if not final.get("done"):
            raise OllamaError(f"the smoke test of {name} did not finish", "see 'dslocal ollama logs'")
        eval_ns = final.get("eval_duration") or 0
        result.smoke = {
            "seconds": round(time.monotonic() - started, 2), "tokens": final.get("eval_count"),
            "tokens_per_s": round(final.get("eval_count", 0) / eval_ns * 1e9, 2) if eval_ns else None,
            "text": text[:200],
        }
    record_provenance(settings, name, {
        "model": request.model, "kind": resolved.kind, "repo": resolved.repo,
        "source": chosen.source.name if chosen else ("local" if resolved.kind == "local" else None),
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.size} for f in files],
        "blob": digest, "layout": layout, "plan": {k: result.plan.get(k) for k in ("placement", "num_ctx", "num_gpu")},
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    })
    journal.finish()
    return result


def provenance_path(settings: Settings, name: str) -> Path:
    return settings.paths.data_dir / "provenance" / f"{default_name(name)}.json"


def record_provenance(settings: Settings, name: str, data: dict[str, Any]) -> None:
    atomic_write_bytes(provenance_path(settings, name), json.dumps({"name": name, **data}, indent=1).encode())


def read_provenance(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(provenance_path(settings, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

