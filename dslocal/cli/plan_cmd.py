"""``dslocal plan``, ``recommend`` and ``modelfile``: what runs here, how, and how fast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.errors import UsageError
from dslocal.cli.output import emit, json_option, key_values, note
from dslocal.cli.planning import detect_ollama_version, hw_option, load_hw, ollama_version_option
from dslocal.units import format_bytes, format_rate

SPLIT_IMPORT = (0, 30, 0)  # the first Ollama that imports a split GGUF (its shards as one model)
class _Context(click.ParamType):
    """A context length of at least 256 tokens, or ``max``: the largest that keeps the placement."""

    name = "TOKENS|max"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, int) or str(value).strip().lower() == "max":
            return value if isinstance(value, int) else "max"
        try:
            number = int(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not a number of tokens or 'max'", param, ctx)
        if number < 256:
            self.fail(f"{number} is below 256 tokens", param, ctx)
        return number


ctx_option = click.option(
    "--ctx", type=_Context(),
    help="Context length in tokens, or 'max' for the largest that keeps the placement (default: a practical "
         "4K-16K that keeps the placement and speed; 4K when weights stream from disk).")
kv_option = click.option("--kv-type", type=click.Choice(["f16", "q8_0", "q4_0"]), default="f16", show_default=True,
                         help="KV cache type (quantized needs flash attention).")


def _alternatives(profile, ollama_version: str | None, limit: int = 3) -> list[dict[str, Any]]:
    from dslocal.catalog import load_catalog
    from dslocal.planner.rank import recommend

    usable = [r for r in recommend(load_catalog(), profile, ollama_version) if r.usable]
    return [{"variant": r.variant.id, "reason": r.reason} for r in usable[:limit]]


@click.command(
    "plan",
    epilog="""\b
ID is a catalog id or alias (see 'dslocal list'), a local GGUF file, or any target
'dslocal gguf inspect' takes (URL, hf:ORG/REPO/PATH). Catalog ids are planned from the
catalog's sizes; --exact reads the real GGUF headers first (a few MB, cached).

\b
Examples:
  dslocal plan r1-671b-q2 --hw rtx4090-64gb
  dslocal plan r1-671b-iq1s --hw a100-80gb-256gb --ollama-version 0.5.7
  dslocal plan r1-distill-qwen-32b --ctx 32768 --json
  dslocal plan v4-flash-q2 --ctx max           the longest context that keeps the placement
  dslocal plan ./DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf
  dslocal plan r1-671b-fp8 --cluster "2 nodes x 8 H20"
""",
)
@click.argument("model")
@ctx_option
@kv_option
@hw_option
@ollama_version_option
@click.option("--engine", type=click.Choice(["ollama", "llama.cpp"]), default="ollama", show_default=True)
@click.option("--num-gpu", type=click.IntRange(min=0), help="Pin the number of GPU layers instead of planning it.")
@click.option("--cluster", metavar="SPEC", help="Plan a multi-node original across nodes, e.g. '2 nodes x 8 H20' "
              "(short for 'dslocal cluster plan').")
@click.option("--exact", is_flag=True, help="Read the variant's real GGUF headers (network, cached).")
@json_option
@click.pass_obj
def plan_cmd(app: AppContext, model: str, ctx: int | None, kv_type: str, hw: str | None, ollama_version: str | None,
             engine: str, num_gpu: int | None, cluster: str | None, exact: bool, as_json: bool) -> None:
    """Whether and where a model runs here, with its Ollama settings and expected speed."""
    from dslocal.catalog import load_catalog
    from dslocal.planner.cluster import cluster_plan, parse_cluster
    from dslocal.planner.fit import plan
    from dslocal.planner.rank import not_yet_planned
    from dslocal.planner.sources import resolve_facts

    variant = load_catalog().find(model)
    if cluster or (variant is not None and variant.multi_node):
        if variant is None or not variant.multi_node:
            originals = ", ".join(v.id for v in load_catalog() if v.multi_node)
            raise UsageError(f"--cluster plans the multi-node FP8 originals ({originals}); {model} is not one",
                             f"plan it without --cluster: dslocal plan {model}")
        spec_text = cluster or _node_of(load_hw(app, hw))
        _cluster(variant, spec_text, cluster_plan, parse_cluster, as_json)
        return
    if variant is not None and (why := not_yet_planned(variant)) is not None:
        hint = (f"it needs {variant.needs}" if variant.needs
                else "plan a downloaded GGUF of it instead: dslocal plan PATH/TO/FIRST-SHARD.gguf")
        raise UsageError(f"{variant.id}: {why.split(': needs ')[0]}", hint)
    facts, variant, source_notes = resolve_facts(model, app.settings(), exact=exact)
    profile = load_hw(app, hw)
    ollama_version = detect_ollama_version(app, ollama_version)
    result = plan(facts, profile, ctx=ctx, kv_type=kv_type, engine=engine, ollama_version=ollama_version,
                  num_gpu=num_gpu, variant=variant.id if variant else model)
    data = result.as_dict()
    data["notes"] = [*source_notes, *data["notes"]]
    data["hardware"] = profile.origin
    data["alternatives"] = [] if result.fits else _alternatives(profile, ollama_version)
    emit("plan", data, as_json=as_json, human=lambda: _print_plan(data))


PLACEMENTS = {
    "gpu": "fits: fully on the GPU",
    "partial": "fits: part on the GPU, the rest in RAM",
    "cpu": "fits: on the CPU, in RAM",
    "mmap": "does not fit in memory: it would run only by streaming weights from disk",
    "none": "does not fit: it cannot load here",
}


def _verdict(d: dict[str, Any]) -> str:
    if d["placement"] == "partial" and d["override_tensors"]:
        return "fits: attention and KV cache on the GPU, routed experts in RAM"
    if d["placement"] == "gpu" and not d["gpu_layers"]:
        return PLACEMENTS["cpu"]
    return PLACEMENTS.get(d["placement"], d["placement"])


def _print_plan(d: dict[str, Any]) -> None:
    click.echo(f"{d['variant']} on {d['hardware']}: {_verdict(d)}")
    num_gpu = str(d["num_gpu"]) if d["num_gpu"] is not None else "unset (Ollama places the layers itself)"
    rows = [
        ("engine", f"{d['engine']} {d['ollama_version'] or ''}".strip()),
        ("num_gpu", num_gpu),
        ("layers on GPU", f"{d['gpu_layers']} of {d['total_layers']}"),
        ("num_ctx", str(d["num_ctx"])),
        ("num_thread", str(d["num_thread"])),
        ("KV cache", f"{d['kv_cache_type']}, {format_bytes(d['kv_cache_bytes'])} "
                     f"({format_bytes(d['kv_bytes_per_token'])} per token)"),
        ("flash attention", "on" if d["flash_attention"] else "off"),
        ("GPU memory", format_bytes(d["gpu_bytes"])),
        ("RAM", format_bytes(d["ram_bytes"])),
        ("weights", format_bytes(d["weights_bytes"]) + ("" if d["exact"] else " (estimated)")),
        ("decode", f"~{format_rate(d['decode_tokens_per_s'])} tok/s"),
        ("prefill", f"~{format_rate(d['prefill_tokens_per_s'])} tok/s"),
        ("llama.cpp args", d["llama_cpp_args"]),
    ]
    key_values(rows)
    for line in d["notes"]:
        click.echo(f"note: {line}")
    if d["alternatives"]:
        click.echo("what fits instead:")
        for alt in d["alternatives"]:
            click.echo(f"  {alt['variant']:32s} {alt['reason']}")


def _node_of(profile) -> str:
    """The cluster spec of one machine: its GPUs, when dslocal knows their kind."""
    from dslocal.planner.cluster import GPU_MEMORY_GB

    names = [g.name.upper() for g in profile.gpus]
    for kind in sorted(GPU_MEMORY_GB, key=len, reverse=True):
        if names and all(kind in name for name in names):
            return f"1 node x {len(names)} {kind}"
    raise UsageError("the FP8 original needs a GPU cluster, and this machine's GPUs are not one dslocal can plan for",
                     "give the cluster: --cluster '2 nodes x 8 H20' (or --hw a saved profile of one node)")


def _cluster(variant, spec_text: str, cluster_plan, parse_cluster, as_json: bool) -> None:
    """The short form of 'dslocal cluster plan': the same core, the GPU's first engine."""
    from dslocal.cli.cluster_cmd import deployment_data, print_deployment
    from dslocal.cluster.commands import Network, launches
    from dslocal.cluster.gpus import ENGINES, GPUS
    from dslocal.cluster.plan import plan_deployment

    spec = parse_cluster(spec_text)
    result = plan_deployment(variant, spec)
    data = deployment_data(result, Network(), with_rule=True)
    lines = {}
    for engine in ENGINES[GPUS[spec.gpu].vendor]:
        other = result if engine == result.engine else plan_deployment(variant, spec, engine)
        lines[engine] = [n.line for n in launches(other)] if other.fits else []
    data.update({"placement": "multi-node", "tensor_parallel": result.layout.tp,
                 "sglang": lines.get("sglang", []), "vllm": lines.get("vllm", lines.get("vllm-ascend", []))})
    emit("plan", data, as_json=as_json, human=lambda: print_deployment(data))


@click.command(
    "recommend",
    epilog="""\b
Examples:
  dslocal recommend
  dslocal recommend --hw rtx4090-64gb
  dslocal recommend --hw cpu-only-32gb --json
""",
)
@hw_option
@ollama_version_option
@click.option("--all", "show_all", is_flag=True, help="List every variant, not just the top 10.")
@json_option
@click.pass_obj
def recommend_cmd(app: AppContext, hw: str | None, ollama_version: str | None, show_all: bool, as_json: bool) -> None:
    """Every variant ranked for this machine by quality, speed and fit, with a reason each."""
    from dslocal.catalog import load_catalog
    from dslocal.planner.rank import recommend, way_out

    profile = load_hw(app, hw)
    ollama_version = detect_ollama_version(app, ollama_version)
    ranked = recommend(load_catalog(), profile, ollama_version)
    data = {
        "hardware": profile.origin,
        "ollama_version": ollama_version,
        "ranking": [
            {"variant": r.variant.id, "usable": r.usable, "fits": r.plan.fits, "placement": r.plan.placement,
             "decode_tokens_per_s": r.plan.decode_tokens_per_s, "quality_tier": r.variant.quality_tier,
             "reason": r.reason}
            for r in ranked
        ],
        "advice": None if any(r.usable for r in ranked) else way_out(ranked, profile),
    }

    def human() -> None:
        shown = ranked if show_all else ranked[:10]
        click.echo(f"{'#':>3s}  {'VERDICT':7s} {'VARIANT':30s} WHY")
        for i, r in enumerate(shown, 1):
            mark = "usable" if r.usable else "slow" if r.plan.fits else "no"
            click.echo(f"{i:2d}.  {mark:7s} {r.variant.id:30s} {r.reason}")
        if data["advice"]:
            click.echo(f"advice: {data['advice']}")

    emit("recommend", data, as_json=as_json, human=human)


@click.command(
    "modelfile",
    epilog="""\b
FROM defaults to the variant's first shard; for Ollama older than 0.30, which cannot
import a split GGUF, to the merged file's name ('dslocal gguf merge' makes it). A plan
that cannot load here, and an existing -o FILE, are refused without --force.

\b
Examples:
  dslocal modelfile r1-671b-iq1s --hw rtx4090-64gb --from ./DeepSeek-R1-UD-IQ1_S.gguf
  dslocal modelfile r1-distill-qwen-7b --ctx 16384 -o Modelfile && ollama create r1-7b -f Modelfile
""",
)
@click.argument("model")
@ctx_option
@hw_option
@ollama_version_option
@click.option("--from", "from_", help="The FROM line: a GGUF path or model name (default: the variant's file name).")
@click.option("--system", help="A system prompt (any text; quoted safely).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout.")
@click.option("--force", is_flag=True, help="Replace FILE if it exists; write a Modelfile even for a plan that cannot load.")
@click.pass_obj
def modelfile_cmd(app: AppContext, model: str, ctx: int | None, hw: str | None, ollama_version: str | None,
                  from_: str | None, system: str | None, output: Path | None, force: bool) -> None:
    """An Ollama Modelfile for a model, with settings from the plan."""
    from dslocal.catalog import load_catalog
    from dslocal.errors import InputError
    from dslocal.fsutil import atomic_write_bytes
    from dslocal.ollama.modelfile import load_family, render
    from dslocal.pipeline.gate import refusal
    from dslocal.pipeline.request import refuse_multi_node
    from dslocal.planner.fit import plan
    from dslocal.planner.sources import resolve_facts

    if output is not None and output.exists() and not force:
        raise InputError(f"{output} already exists", "pass --force to replace it, or choose another -o")
    named = load_catalog().find(model)
    if named is not None:
        refuse_multi_node(named)  # as pull does: the FP8 original runs on a cluster, never in Ollama
    facts, variant, _ = resolve_facts(model, app.settings())
    profile = load_hw(app, hw)
    ollama_version = detect_ollama_version(app, ollama_version)
    result = plan(facts, profile, ctx=ctx, ollama_version=ollama_version, variant=variant.id if variant else model)
    if result.placement == "none" and not force:
        error = refusal(model, result, profile, ollama_version, plan_target=variant.id if variant else model,
                        variant=variant.id if variant else None, verb="modelfile")
        if error is not None:
            raise error
    family = load_family(variant.template if variant else _family_for(facts.architecture))
    text = render(
        family, from_=from_ or _default_from(variant, model, ollama_version, app.settings().models_dir),
        num_ctx=result.num_ctx,
        num_thread=result.num_thread, num_gpu=result.num_gpu, system=system,
        temperature=variant.temperature if variant else None, top_p=variant.top_p if variant else None,
        min_p=variant.min_p if variant else None, license_text=variant.license if variant else None,
        comment=f"planned for {profile.origin}: {result.placement}, ~{format_rate(result.decode_tokens_per_s)} tok/s",
    )
    if output is not None:
        atomic_write_bytes(output, text.encode("utf-8"))
        note(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def _default_from(variant, model: str, ollama_version: str | None, models_dir: Path | None = None) -> str:
    """The variant's first shard; the merged file's name for an Ollama that cannot import a split GGUF.

    A variant whose file names the catalog does not know (a folder glob) gets the first shard downloaded
    into the models folder, or a path that says what to put there: never its id, which Ollama would try
    to pull from its registry."""
    from dslocal.gguf_tools.shards import parse_shard_name
    from dslocal.planner.fit import parse_version

    if variant is None:
        return model
    if not variant.files:
        return _downloaded_first_shard(variant, models_dir)
    shard = parse_shard_name(variant.files[0])
    if shard is not None and shard.count > 1 and ollama_version and parse_version(ollama_version) < SPLIT_IMPORT:
        merged = f"{shard.prefix}.gguf"
        note(f"Ollama {ollama_version} cannot import a split GGUF: FROM names the merged file; "
             f"make it with 'dslocal gguf merge {variant.files[0]} -o {merged}'")
        return f"./{merged}"
    return f"./{variant.files[0]}"


def _downloaded_first_shard(variant, models_dir: Path | None) -> str:
    folder = (models_dir / variant.hf_repo / variant.hf_folder) if models_dir is not None else None
    found = sorted(folder.glob("*.gguf")) if folder is not None and folder.is_dir() else []
    if found:
        return str(found[0])
    where = f"{variant.hf_folder}/" if variant.hf_folder else ""
    note(f"the catalog does not list {variant.id}'s file names: FROM is a placeholder until "
         f"'dslocal download {variant.id}' fetches them (then point it at the first shard)")
    return f"./{where}FIRST-SHARD-00001-of-N.gguf"


def _family_for(architecture: str) -> str:
    return {"deepseek2": "deepseek-r1", "qwen2": "distill-qwen", "llama": "distill-llama", "qwen3": "qwen3"}.get(
        architecture, "distill-qwen"
    )
