"""DeepSeek's usage rules per generation, applied by default to every chat and each overridable.

* Sampling: the catalog's temperature / top_p / min_p for the variant (the model cards' values).
* System prompt: R1 and its distills were tuned without one; a given system prompt is folded into
  the first user turn (``system_prompt = "fold"`` in ``modelfiles/families.toml``).
* Thinking: ``always`` (a reasoning model), ``hybrid`` (on or off, V3.1 and V3.2), ``levels`` (V4:
  off, high or max; max needs a context of 384K), ``none`` (V3).

The rules come from the catalog variant when the model is known (by catalog id, by what dslocal pulled
it from, or by Ollama's library name), otherwise from the model name, and Ollama's own report of the
model's capabilities has the last word on whether it can think at all.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dslocal.catalog.catalog import OLLAMA_LIBRARY, Variant, load_catalog
from dslocal.chat.events import THINK_LEVELS, ChatOptions, Message
from dslocal.errors import UsageError
from dslocal.resources import read_data

THINKING_KINDS = ("always", "hybrid", "levels", "none")


@dataclass(frozen=True)
class ModelRules:
    family: str = "deepseek-r1"
    thinking: str = "always"
    think_levels: tuple[str, ...] = ()
    think_max_context: int | None = None
    system_prompt: str = "allow"  # or "fold"
    temperature: float | None = None
    top_p: float | None = None
    min_p: float | None = None
    catalog_id: str | None = None

    @property
    def can_think(self) -> bool:
        return self.thinking != "none"

    @property
    def default_think(self) -> bool | str | None:
        if self.thinking == "none":
            return None
        if self.thinking == "levels" and self.think_levels:
            return self.think_levels[0]
        return True

    def without_thinking(self) -> ModelRules:
        return dataclasses.replace(self, thinking="none", think_levels=())


@functools.lru_cache(maxsize=1)
def _families() -> dict[str, dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(read_data("modelfiles", "families.toml"))


def family_rules(family: str, variant: Variant | None = None) -> ModelRules:
    entry = _families().get(family, _families()["deepseek-r1"])
    source: Any = variant if variant is not None else None

    def pick(key: str) -> Any:
        value = getattr(source, key, None) if source is not None else None
        return value if value is not None else entry.get(key)

    thinking = getattr(variant, "thinking", None) or entry.get("thinking", "always")
    return ModelRules(
        family=family,
        thinking=thinking,
        think_levels=tuple(entry.get("think_levels", ())),
        think_max_context=entry.get("think_max_context"),
        system_prompt=entry.get("system_prompt", "allow"),
        temperature=pick("temperature"),
        top_p=pick("top_p"),
        min_p=pick("min_p"),
        catalog_id=variant.id if variant is not None else None,
    )


# Name fragments of models pulled by other tools, most specific first.
_NAME_FAMILIES = (
    (r"v4", "deepseek-v4"), (r"v3[._-]?2", "deepseek-v3.2"), (r"v3[._-]?1", "deepseek-v3.1"),
    (r"r1[._-]?0528.*qwen3|qwen3.*0528", "qwen3"), (r"r1[._-]?0528", "deepseek-r1-0528"),
    (r"distill.*llama|r1.*llama|llama.*distill", "distill-llama"),
    (r"distill|r1.*(1\.5b|7b|14b|32b|qwen)", "distill-qwen"),
    (r"v3", "deepseek-v3"), (r"r1", "deepseek-r1"),
)


def _family_from_name(name: str) -> str | None:
    text = name.lower()
    for pattern, family in _NAME_FAMILIES:
        if re.search(pattern, text):
            return family
    return None


def rules_for(model: str, *, catalog_id: str | None = None, capabilities: Sequence[str] | None = None) -> ModelRules:
    """The rules for ``model`` (a catalog id or alias, or an Ollama model name); ``catalog_id`` is what
    dslocal pulled it from, if known; ``capabilities`` Ollama's report (``/api/show``) when there is one."""
    catalog = load_catalog()
    variant = None
    for name in (catalog_id, model, OLLAMA_LIBRARY.get(model.lower().removesuffix(":latest"))):
        if name and (variant := catalog.find(name)) is not None:
            break
    if variant is None:
        bare = model.split("/")[-1].split(":")[0]
        variant = catalog.find(bare)
    if variant is not None:
        rules = family_rules(variant.template, variant)
    else:
        rules = family_rules(_family_from_name(model) or "deepseek-r1")
    if capabilities is not None and "thinking" not in capabilities:
        rules = rules.without_thinking()
    return rules


def parse_think(value: str) -> bool | str:
    """``on``/``off`` (and their synonyms) or a level, as typed after ``/think``."""
    word = value.strip().lower()
    if word in ("on", "true", "yes", "1"):
        return True
    if word in ("off", "false", "no", "0"):
        return False
    if word in THINK_LEVELS:
        return word
    raise UsageError(f"/think takes on, off or a level, not {value!r}", f"levels: {', '.join(THINK_LEVELS)}")


def resolve_think(rules: ModelRules, requested: bool | str | None, num_ctx: int | None = None) -> tuple[bool | str | None, list[str]]:
    """What ``think`` to send for a request, and notes for the user. A request the model cannot honour is
    refused with the reason (not silently dropped)."""
    notes: list[str] = []
    if requested is None:
        return rules.default_think, notes
    if isinstance(requested, str) and requested not in THINK_LEVELS:
        raise UsageError(f"unknown thinking level {requested!r}", f"use on, off or one of {', '.join(THINK_LEVELS)}")
    if rules.thinking == "none":
        if requested is False:
            return None, notes
        raise UsageError(f"{rules.family} does not support thinking", "turn it off with /think off (or --no-think)")
    if requested is False:
        if rules.thinking == "always":
            notes.append(f"{rules.family} was trained to reason: with thinking off its template pre-fills an empty "
                         "reasoning block, and answers may be weaker")
        return False, notes
    if requested is True:
        return rules.default_think, notes
    if rules.thinking != "levels":
        notes.append(f"{rules.family} has no thinking levels; thinking is simply on")
        return True, notes
    level = requested
    if level not in rules.think_levels:
        close = rules.think_levels[0] if level in ("low", "medium") else rules.think_levels[-1]
        notes.append(f"{rules.family} thinks at {', '.join(rules.think_levels)}; {level!r} is sent as {close!r}")
        level = close
    if level == "max" and rules.think_max_context and (num_ctx or 0) < rules.think_max_context:
        notes.append(f"think max needs a context of at least {rules.think_max_context // 1024}K tokens "
                     f"(this chat has {num_ctx or 'the default'}); long reasoning will be cut off")
    return level, notes


def apply_system_rule(rules: ModelRules, messages: Sequence[Message]) -> list[Message]:
    """R1 and its distills: the system prompt goes into the first user turn (the model card's advice)."""
    if rules.system_prompt != "fold":
        return list(messages)
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content.strip())
    rest = [m for m in messages if m.role != "system"]
    if not system:
        return rest
    for i, message in enumerate(rest):
        if message.role == "user":
            rest[i] = dataclasses.replace(message, content=f"{system}\n\n{message.content}")
            return rest
    return rest


def default_options(rules: ModelRules, options: ChatOptions) -> ChatOptions:
    """The options with the model's sampling filled in where the user left them unset."""
    return dataclasses.replace(
        options,
        temperature=options.temperature if options.temperature is not None else rules.temperature,
        top_p=options.top_p if options.top_p is not None else rules.top_p,
        min_p=options.min_p if options.min_p is not None else rules.min_p,
    )
