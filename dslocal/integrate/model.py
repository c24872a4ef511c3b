"""What a client must be told about a model: its name on the server, its real window, what it can do.

When the model is in Ollama, Ollama's own ``/api/show`` answers: ``capabilities`` (``completion``,
``tools``, ``thinking``, ``vision``, as Ollama derives them from the template and the projector) and
the Modelfile's ``num_ctx`` in ``parameters``. Otherwise the catalog and the plan answer: the window is
the plan's ``num_ctx`` (what ``dslocal modelfile`` and ``pull`` write), tools come from the family's
chat template (a Go TEMPLATE that reads ``.Tools``, or the GGUF's own jinja for V3.2 and V4, which
carries DeepSeek's DSML tool calls), and no DeepSeek text model in the catalog takes images.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

from dslocal.catalog import Variant, load_catalog
from dslocal.config import Settings
from dslocal.errors import NotFoundError, OllamaError

SHOW_SOURCE = "Ollama /api/show"
CATALOG_SOURCE = "the catalog"


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the name the server knows the model by
    catalog_id: str | None
    num_ctx: int
    context_source: str
    vision: bool
    tools: bool
    thinking: bool
    capability_source: str
    pulled: bool
    notes: tuple[str, ...] = ()

    @property
    def max_tokens(self) -> int:
        """A bound for one answer (reasoning included): half the window, the other half for the prompt."""
        return max(256, self.num_ctx // 2)


def _default_ollama_name(variant: Variant) -> str:
    name = variant.aliases[0] if variant.aliases else variant.id
    return name if name.rfind(":") > name.rfind("/") else f"{name}:latest"


def _num_ctx(parameters: str) -> int | None:
    match = re.search(r"^num_ctx\s+(\d+)\s*$", parameters or "", re.M)
    return int(match[1]) if match else None


def template_tools(variant: Variant) -> bool:
    """Whether the family's chat template offers tool calls (what Ollama reads to report ``tools``)."""
    from dslocal.resources import read_data

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    family = tomllib.loads(read_data("modelfiles", "families.toml")).get(variant.template, {})
    name = family.get("template", "")
    if not name:  # the GGUF's own jinja (V3.2, V4): DSML tool calls
        return True
    return ".Tools" in read_data("modelfiles", name)


def planned_ctx(settings: Settings, variant: Variant, profile: Any, ollama_version: str | None, ctx: int | None) -> int:
    """The plan's ``num_ctx``, as ``dslocal modelfile`` writes it."""
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan

    return plan(from_variant(variant), profile, ctx=ctx, ollama_version=ollama_version, variant=variant.id).num_ctx


def from_catalog(settings: Settings, variant: Variant, profile: Any, *, ollama_version: str | None = None,
                 ctx: int | None = None, name: str | None = None, notes: tuple[str, ...] = ()) -> ModelInfo:
    from dslocal.chat.rules import rules_for

    num_ctx = planned_ctx(settings, variant, profile, ollama_version, ctx)
    return ModelInfo(
        name=name or _default_ollama_name(variant), catalog_id=variant.id, num_ctx=num_ctx,
        context_source=f"the plan for {getattr(profile, 'origin', 'this machine')} (num_ctx of 'dslocal modelfile')",
        vision=False, tools=template_tools(variant), thinking=rules_for(variant.id).can_think,
        capability_source=CATALOG_SOURCE, pulled=False, notes=notes)


def from_ollama(settings: Settings, client: Any, model: str, profile_loader: Any, *, ctx: int | None = None) -> ModelInfo:
    """Facts from the Ollama at ``client`` when it has the model; the catalog's when it has not."""
    from dslocal.chat.connect import pulled_name

    try:
        names = [str(m.get("name") or m.get("model")) for m in client.tags()]
    except OllamaError:
        names = None
    variant = load_catalog().find(model)
    if names is not None:
        name, catalog_id = pulled_name(settings, model, names)
        if name is not None:
            return _shown(settings, client, name, catalog_id, profile_loader, ctx)
    if variant is None:
        where = "Ollama has no such model" if names is not None else "Ollama does not answer"
        raise NotFoundError(f"{model!r} is not in the catalog and {where}",
                            "name a catalog id ('dslocal list') or a model Ollama has ('dslocal ls')")
    note = ("Ollama does not answer here: settings from the catalog and the plan" if names is None
            else f"Ollama has no model for {variant.id} yet: pull it with 'dslocal pull {variant.id}'")
    return from_catalog(settings, variant, profile_loader(), ctx=ctx, notes=(note,))


def _shown(settings: Settings, client: Any, name: str, catalog_id: str | None, profile_loader: Any,
           ctx: int | None) -> ModelInfo:
    shown = client.show(name)
    capabilities = [str(c) for c in shown.get("capabilities") or []]
    num_ctx = _num_ctx(str(shown.get("parameters") or ""))
    notes: list[str] = []
    source = f"the model's Modelfile (num_ctx in {SHOW_SOURCE})"
    if num_ctx is None:
        variant = load_catalog().find(catalog_id or "")
        if variant is not None:
            num_ctx, source = planned_ctx(settings, variant, profile_loader(), None, ctx), "the plan (the model sets no num_ctx)"
        else:
            trained = next((v for k, v in (shown.get("model_info") or {}).items() if k.endswith(".context_length")), None)
            num_ctx, source = int(trained or 4096), "the model's trained context (the model sets no num_ctx)"
        notes.append(f"{name} sets no num_ctx, so Ollama picks a window by itself; pin it: dslocal tune {name} --ctx {num_ctx}")
    return ModelInfo(name=name, catalog_id=catalog_id, num_ctx=num_ctx, context_source=source,
                     vision="vision" in capabilities, tools="tools" in capabilities,
                     thinking="thinking" in capabilities, capability_source=f"{SHOW_SOURCE} capabilities",
                     pulled=True, notes=tuple(notes))
