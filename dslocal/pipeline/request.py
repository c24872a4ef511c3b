"""What a pull was asked for, what it resolved to, and what it did."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dslocal.catalog import Variant, load_catalog
from dslocal.errors import InputError, UsageError
from dslocal.gguf_tools.shards import discover_local, parse_shard_name
from dslocal.ollama.names import check_name
from dslocal.sources.listing import check_repo_id


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
    force: bool = False  # pull even when the plan says it cannot load, or only crawls


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
    plan_note: str | None = None  # why there is no plan before the download, when there is none


@dataclass(frozen=True)
class Resolved:
    kind: str  # catalog | hf | local
    variant: Variant | None
    repo: str | None
    include: tuple[str, ...]
    local_files: tuple[Path, ...]
    template: str
    name: str  # the Ollama name, checked against Ollama's rules, with its tag
    label: str  # the name as given or defaulted (without the ':latest' Ollama adds)
    quant: str | None = None  # the :QUANT of an hf: target


def default_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return name or "deepseek"


def refuse_multi_node(variant: Variant) -> None:
    """The FP8 original runs on a cluster (SGLang/vLLM), never in Ollama: refused by pull and modelfile alike.

    So is a model that needs a llama.cpp fork or a cloud: pulling 400 GB that nothing here can load helps nobody.
    """
    if variant.needs:
        raise UsageError(f"{variant.id} does not run in mainline llama.cpp or Ollama", f"it needs {variant.needs}")
    if variant.multi_node:
        raise UsageError(f"{variant.id} is the multi-node FP8 original", f"plan it with 'dslocal plan {variant.id} --cluster ...'")


def _ollama_name(given: str | None, default: str) -> tuple[str, str]:
    """(name with tag, label) of the model in Ollama; a name the server would refuse is refused before any work."""
    text = given if given is not None else default
    check_name(text)
    return (text if text.rfind(":") > text.rfind("/") else f"{text}:latest"), text


def resolve(request: PullRequest) -> Resolved:
    """What to pull: a catalog variant, an ``hf:ORG/REPO[:QUANT]`` repository, or local GGUF files."""
    catalog = load_catalog()
    variant = catalog.find(request.model)
    if variant is not None:
        refuse_multi_node(variant)
        name, label = _ollama_name(request.name, variant.aliases[0] if variant.aliases else variant.id)
        return Resolved("catalog", variant, variant.hf_repo, variant.include_globs(), (), variant.template, name, label)
    if request.model.startswith("hf:"):
        repo, _, quant = request.model[3:].partition(":")
        try:
            check_repo_id(repo)
        except UsageError:
            raise UsageError(f"{request.model!r} is not hf:ORG/REPO[:QUANT]", "e.g. hf:unsloth/DeepSeek-R1-GGUF:UD-IQ1_S") from None
        include = (f"*{quant}*.gguf",) if quant else ("*.gguf",)
        default = default_name(repo.split("/")[1].removesuffix("-GGUF") + (f"-{quant}" if quant else ""))
        name, label = _ollama_name(request.name, default)
        return Resolved("hf", None, repo, include, (), "deepseek-r1", name, label, quant or None)
    if request.name is not None:
        _ollama_name(request.name, "")  # a bad name is refused before the files are looked at
    files = _local_files(Path(request.model).expanduser(), request.model)
    stem = parse_shard_name(files[0].name)
    name, label = _ollama_name(request.name, default_name(stem.prefix if stem else files[0].stem))
    return Resolved("local", None, None, (), files, "deepseek-r1", name, label)


def _local_files(path: Path, model: str) -> tuple[Path, ...]:
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise InputError(f"{path} holds no .gguf file", "point at a GGUF file or a folder of shards")
        files = tuple(discover_local(ggufs[0]))
        if len(files) != len(ggufs):
            raise InputError(f"{path} holds more than one model", "name one of its .gguf files instead")
        return files
    if path.is_file():
        return tuple(discover_local(path))
    load_catalog().get(model)  # NotFoundError with suggestions
    raise AssertionError("unreachable")
