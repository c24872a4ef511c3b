"""The planner's plan for a llama.cpp engine, from the model's own header and this machine's profile."""

from __future__ import annotations

from typing import Any

from dslocal.config import Settings
from dslocal.engines.launch import Launch, from_plan
from dslocal.engines.models import ModelFiles
from dslocal.errors import UsageError


def plan_for(settings: Settings, model: ModelFiles, profile: Any, *, ctx: int | None = None, kv_type: str = "f16"):
    """(the Plan for engine llama.cpp, its facts) for ``model`` on ``profile``."""
    from dslocal.gguf_tools.targets import open_target
    from dslocal.planner.facts import from_shard_set
    from dslocal.planner.fit import plan

    opened = open_target(str(model.first), hf_endpoint=str(settings["hf_endpoint"]),
                         cache_dir=settings.paths.cache_dir / "gguf-headers")
    facts = from_shard_set(opened.shard_set, name=model.alias)
    return plan(facts, profile, ctx=ctx, kv_type=kv_type, engine="llama.cpp",
                variant=model.variant.id if model.variant else model.alias)


def launch_for(settings: Settings, model: ModelFiles, profile: Any, *, ctx: int | None = None, kv_type: str = "f16",
               **changes: Any) -> tuple[Launch, Any]:
    """A launch that applies the plan; refused with the planner's reason when the model cannot load here."""
    plan = plan_for(settings, model, profile, ctx=ctx, kv_type=kv_type)
    if plan.placement == "none":
        reason = plan.notes[-1] if plan.notes else "it does not fit in this machine's memory"
        raise UsageError(f"{model.alias} cannot load here: {reason}", "see 'dslocal plan' for what would fit")
    return from_plan(plan, model.first, model.alias, **changes), plan
