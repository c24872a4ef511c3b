"""Whether a plan is worth the download: refuse what cannot load, or would only crawl, unless forced.

``none`` means Ollama refuses to load the model; ``mmap`` means llama.cpp streams the
weights from disk for every token; and a plan far below the speed the planner calls
usable (``USABLE_TOKENS_PER_S``) leaves a reasoning model thinking for minutes per
answer. For R1 each of those is a download of 130 GB or more that ends in a model nobody
can use, so the pull stops before it, says why and what fits instead (the ranking
``dslocal recommend`` shows).
"""

from __future__ import annotations

from collections.abc import Callable

from dslocal.errors import DslocalError
from dslocal.hardware.profile import HardwareProfile
from dslocal.planner.fit import Plan
from dslocal.planner.rank import USABLE_TOKENS_PER_S

FAR_BELOW = 5  # slower than USABLE_TOKENS_PER_S / FAR_BELOW (1 tok/s): not worth the download


class PlanRefused(DslocalError):
    """The plan says the model cannot load here, or only crawls; ``--force`` goes ahead anyway."""


def why_not(the_plan: Plan) -> str | None:
    """Why the plan is not worth a download, or None when it is."""
    speed = the_plan.decode_tokens_per_s
    if the_plan.placement == "none":
        reason = next((n.removeprefix("does not fit: ") for n in the_plan.notes if n.startswith("does not fit: ")),
                      "it does not fit in memory")
        return f"cannot load on this machine ({reason})"
    if the_plan.placement == "mmap":
        return f"would only stream its weights from disk here, about {speed:.2g} tok/s"
    if speed < USABLE_TOKENS_PER_S / FAR_BELOW:
        return f"would run at about {speed:.2g} tok/s here, far below the {USABLE_TOKENS_PER_S:g} tok/s of a usable plan"
    return None


def fits_instead(profile: HardwareProfile, ollama_version: str | None, *, skip: str | None = None,
                 limit: int = 3) -> list[str]:
    """Catalog ids that run well here, best first (as ``dslocal recommend`` ranks them)."""
    from dslocal.catalog import load_catalog
    from dslocal.planner.rank import recommend

    usable = [r.variant.id for r in recommend(load_catalog(), profile, ollama_version) if r.usable]
    return [v for v in usable if v != skip][:limit]


def refusal(label: str, the_plan: Plan, profile: HardwareProfile, ollama_version: str | None, *,
            plan_target: str, variant: str | None = None, verb: str = "pull") -> PlanRefused | None:
    """The one-line error for a plan not worth the download, or None when it is."""
    reason = why_not(the_plan)
    if reason is None:
        return None
    others = fits_instead(profile, ollama_version, skip=variant)
    instead = f"; what fits instead: {', '.join(others)}" if others else "; nothing in the catalog runs well here"
    first = f"'dslocal {verb} {others[0]}', " if others else ""
    return PlanRefused(f"{label} {reason}{instead}",
                       f"{first}see 'dslocal plan {plan_target}', or pass --force to go ahead anyway")


def check_plan(label: str, the_plan: Plan, profile: HardwareProfile, ollama_version: str | None, *,
               plan_target: str, variant: str | None, force: bool, dry_run: bool,
               notify: Callable[[str], None]) -> None:
    """Raise :class:`PlanRefused` for a plan not worth the download; a warning line with --force or --dry-run."""
    error = refusal(label, the_plan, profile, ollama_version, plan_target=plan_target, variant=variant)
    if error is None:
        return
    if not (force or dry_run):
        raise error
    notify(f"warning: {error.message}" + (" (--force: pulling it anyway)" if force and not dry_run else ""))
