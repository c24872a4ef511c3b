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

    @property
    def usable(self) -> bool:
        return self.plan.fits and self.plan.decode_tokens_per_s >= USABLE_TOKENS_PER_S


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


def _key(item: Ranked) -> tuple:
    p = item.plan
    category = 0 if item.usable else 1 if p.fits else 2 if p.placement == "mmap" else 3
    return category, item.variant.quality_tier, -p.decode_tokens_per_s


def recommend(catalog: Catalog, profile: HardwareProfile, ollama_version: str | None = None) -> list[Ranked]:
    ranked = []
    for variant in catalog:
        if variant.multi_node:
            continue
        p = plan(from_variant(variant), profile, ollama_version=ollama_version, variant=variant.id)
        ranked.append(Ranked(variant, p, describe(variant, p)))
    return sorted(ranked, key=_key)


def way_out(ranked: list[Ranked], profile: HardwareProfile) -> str:
    """When nothing is usable: the cheapest way out, honestly."""
    smallest = min(ranked, key=lambda r: r.variant.size_bytes)
    missing = max(smallest.plan.ram_bytes - profile.memory.available_bytes, 0)
    return (
        f"nothing runs well here; the smallest model, {smallest.variant.model} {smallest.variant.quant}, "
        f"needs about {missing / GIB:.0f} GiB more RAM or a GPU; otherwise use the DeepSeek API "
        "(https://platform.deepseek.com) as the cloud alternative"
    )
