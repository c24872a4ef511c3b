"""``dslocal list`` and ``dslocal show``: the catalog, with what fits this machine."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values
from dslocal.cli.planning import detect_ollama_version, hw_option, load_hw, ollama_version_option


@click.command(
    "list",
    epilog="""\b
Examples:
  dslocal list
  dslocal list --hw 2xh100-512gb
  dslocal list --json | jq '.data.variants[] | select(.fits) | .id'
""",
)
@hw_option
@ollama_version_option
@json_option
@click.pass_obj
def list_cmd(app: AppContext, hw: str | None, ollama_version: str | None, as_json: bool) -> None:
    """Every DeepSeek variant in the catalog, with its fit verdict for this machine."""
    from dslocal.catalog import load_catalog
    from dslocal.planner.rank import recommend

    profile = load_hw(app, hw)
    version = detect_ollama_version(app, ollama_version)
    verdicts = {r.variant.id: r for r in recommend(load_catalog(), profile, version)}
    rows = []
    for v in load_catalog():
        r = verdicts.get(v.id)
        rows.append({
            "id": v.id, "aliases": list(v.aliases), "model": v.model, "quant": v.quant, "size_bytes": v.size_bytes,
            "shards": v.shard_count, "fits": r.plan.fits if r else False,
            "placement": r.plan.placement if r else "multi-node",
            "decode_tokens_per_s": r.plan.decode_tokens_per_s if r else None,
            "verdict": r.reason if r else "multi-node only: see 'dslocal plan ID --cluster ...'",
        })

    def human() -> None:
        click.echo(f"{'FITS':4s}  {'ID':30s} {'ALIAS':24s} {'SIZE':>10s}  VERDICT")
        for row in rows:
            mark = "yes" if row["fits"] else "no"
            alias = row["aliases"][0] if row["aliases"] else ""
            click.echo(f"{mark:4s}  {row['id']:30s} {alias:24s} {row['size_bytes'] / 1e9:7.1f} GB  {row['verdict']}")

    emit("list", {"hardware": profile.origin, "ollama_version": version, "variants": rows}, as_json=as_json,
         human=human)


@click.command(
    "show",
    epilog="""\b
Examples:
  dslocal show r1-671b-q2
  dslocal show r1-distill-qwen-7b --json
""",
)
@click.argument("model")
@json_option
def show_cmd(model: str, as_json: bool) -> None:
    """Everything the catalog knows about one variant."""
    from dslocal.catalog import load_catalog

    from dslocal.ollama.modelfile import load_family
    from dslocal.ollama.templates import go_capabilities, go_round_trip

    v = load_catalog().get(model)
    family = load_family(v.template)
    caps = sorted(go_capabilities(family.template))
    kept = go_round_trip(family.template)
    if not family.template:
        reason = "dslocal writes no TEMPLATE for this generation: llama-server applies the GGUF's own jinja"
    elif kept:
        reason = "Ollama keeps dslocal's TEMPLATE over the GGUF's jinja: it has tools with a round trip"
    else:
        reason = "the GGUF's jinja can do more, so Ollama 0.30+ runs it instead"
    template = {"family": v.template, "capabilities": caps, "tool_round_trip": kept,
                "runs": "ollama" if kept else "gguf", "reason": reason}
    data = {**v.as_dict(), "template": template}

    def human() -> None:
        key_values([
            ("id", v.id), ("aliases", ", ".join(v.aliases)), ("model", f"{v.model} ({v.family})"),
            ("quant", v.quant), ("architecture", f"{v.architecture}, {v.block_count} blocks, context {v.context_length}"),
            ("parameters", f"{v.params_b:g}B total, {v.active_params_b:g}B active"),
            ("size", f"{v.size_bytes / 1e9:.1f} GB" + ("" if v.size_exact else
                     " (approximate; 'dslocal plan ID --exact' reads the real headers)")),
            ("repository", f"{v.hf_repo}" + (f" (ModelScope: {v.modelscope_repo})" if v.modelscope_repo else "")),
            ("files", "\n  ".join(("", *v.paths)) if v.paths else "(list them from the hub)"),
            ("sampling", ", ".join(f"{k} {getattr(v, k)}" for k in ("temperature", "top_p", "min_p") if getattr(v, k) is not None)),
            ("template", f"{v.template}" + (f" ({', '.join(caps)})" if caps else "")
             + f"; runs: {template['runs']}, {template['reason']}"),
            ("licence", v.license), ("notes", v.notes),
        ])

    emit("show", data, as_json=as_json, human=human)
