"""``dslocal recommend``: every catalog variant ranked for a machine, with a reason each."""

from __future__ import annotations

from dataclasses import dataclass

from dslocal.catalog import Catalog, Variant
from dslocal.hardware.profile import HardwareProfile
from dslocal.planner.facts import from_variant
from dslocal.planner.fit import Plan, plan
from dslocal.planner.memory import GIB
from dslocal.units import format_rate

USABLE_TOKENS_PER_S = 5.0  # a reasoning model thinks for hundreds of tokens: slower is a poor experience


@dataclass(frozen=True)
class Ranked:
    variant: Variant
    plan: Plan
    reason: str
    planned: bool = True  # False: the planner has no size model for the architecture yet

    @property
    def usable(self) -> bool:
        return self.planned and self.plan.fits and self.plan.decode_tokens_per_s >= USABLE_TOKENS_PER_S


def not_yet_planned(variant: Variant) -> str | None:
    """Why the planner cannot estimate ``variant`` (it needs a fork or a cloud; no tensor shapes yet), or None."""
    if variant.needs:
        return f"does not run in mainline llama.cpp or Ollama: needs {variant.needs}"
    try:
        from_variant(variant)
    except (KeyError, ValueError):
        return (f"not yet planned: the planner has no tensor shapes for {variant.model} ({variant.architecture}) "
                f"yet; {variant.size_bytes / 1e9:.0f} GB of weights")
    return None


def _unplanned(variant: Variant, why: str, ollama_version: str | None) -> Plan:
    """A plan that places nothing, for a variant the planner cannot estimate yet."""
    return Plan(variant=variant.id, model=variant.model, engine="ollama", ollama_version=ollama_version, fits=False,
                placement="none", num_gpu=None, num_gpu_reason=why, gpu_layers=0, total_layers=variant.block_count,
                num_ctx=0, num_thread=0, kv_cache_type="f16", flash_attention=False,
                weights_bytes=variant.size_bytes, gpu_bytes=0, ram_bytes=0, kv_cache_bytes=0, kv_bytes_per_token=0,
                compute_bytes=0, decode_tokens_per_s=0.0, prefill_tokens_per_s=0.0, override_tensors=None,
                llama_cpp_args="", gpus=(), unsloth_offload=None, exact=False, facts_source="none", notes=(why,))


def describe(variant: Variant, p: Plan) -> str:
    name = f"{variant.model} {variant.quant}"
    if not p.fits:
        if p.placement == "mmap":
            return f"{name}: only by streaming from disk, about {p.decode_tokens_per_s:.2g} tok/s"
        return f"{name}: does not fit ({p.ram_bytes / GIB:.0f} GiB of RAM needed beyond the GPUs)"
    where = {
        "gpu": "fully on GPU",
        "cpu": "on the CPU",
        "partial": (
            "attention on GPU, routed experts in RAM" if p.override_tensors else
            f"partial offload of {max(p.gpu_layers - 1, 0)} layers"
        ),
    }[p.placement]
    return f"{name}: {format_rate(p.decode_tokens_per_s)} tok/s, {where}, context {p.num_ctx}"


def bits_per_weight(variant: Variant) -> float:
    return variant.size_bytes * 8 / (variant.params_b * 1e9) if variant.params_b else 0.0


def _key(item: Ranked) -> tuple:
    """Usable first; then the quality tier; among usable variants of a tier, more bits per weight (the best
    quality that runs at a usable speed, not the fastest quant); MLA re-quants before legacy GGUFs; then speed."""
    p = item.plan
    category = 0 if item.usable else 1 if p.fits else 2 if p.placement == "mmap" else 3 if item.planned else 4
    bits = -int(bits_per_weight(item.variant)) if item.usable else 0  # whole bits: 4.6 and 4.8 are one class
    legacy = item.variant.kv_layout == "legacy"  # an MLA re-quant of the same weights reads a far smaller KV cache
    return category, item.variant.quality_tier, bits, legacy, -p.decode_tokens_per_s


def recommend(catalog: Catalog, profile: HardwareProfile, ollama_version: str | None = None) -> list[Ranked]:
    ranked = []
    for variant in catalog:
        if variant.multi_node:
            continue
        why = not_yet_planned(variant)
        if why is not None:
            ranked.append(Ranked(variant, _unplanned(variant, why, ollama_version),
                                 f"{variant.model} {variant.quant}: {why}", planned=False))
            continue
        p = plan(from_variant(variant), profile, ollama_version=ollama_version, variant=variant.id)
        ranked.append(Ranked(variant, p, describe(variant, p)))
    return sorted(ranked, key=_key)


def way_out(ranked: list[Ranked], profile: HardwareProfile) -> str:
    """When nothing is usable: the cheapest way out, honestly."""
    smallest = min((r for r in ranked if r.planned), key=lambda r: r.variant.size_bytes)
    missing = max(smallest.plan.ram_bytes - profile.memory.available_bytes, 0)
    return (
        f"nothing runs well here; the smallest model, {smallest.variant.model} {smallest.variant.quant}, "
        f"needs about {missing / GIB:.0f} GiB more RAM or a GPU; otherwise use the DeepSeek API "
        "(https://platform.deepseek.com) as the cloud alternative"
    )
