"""From what the user typed (``dslocal chat r1-distill-qwen-7b``) to a backend and the model's rules.

For Ollama a catalog id finds the model dslocal pulled for it (by provenance, or by the name ``pull``
gives it), a plain name is looked up as Ollama matches names, and ``/api/show`` says whether the model
can think at all. For an OpenAI-compatible server or the DeepSeek API the model name is passed on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dslocal.catalog.catalog import load_catalog
from dslocal.chat.events import ChatBackend
from dslocal.chat.rules import ModelRules, rules_for
from dslocal.config import Settings
from dslocal.errors import NotFoundError, OllamaError, UsageError

BACKENDS = ("ollama", "openai", "deepseek")


@dataclass(frozen=True)
class Target:
    backend: ChatBackend
    rules: ModelRules
    model: str  # the name the backend knows the model by
    catalog_id: str | None = None


def _with_tag(name: str) -> str:
    return name if name.rfind(":") > name.rfind("/") else f"{name}:latest"


def _ollama_names(models: Sequence[dict[str, Any]]) -> list[str]:
    return [str(m.get("name") or m.get("model")) for m in models]


def pulled_name(settings: Settings, model: str, names: Sequence[str]) -> tuple[str | None, str | None]:
    """(the Ollama name, the catalog id it came from) for what the user typed, or (None, catalog id)."""
    from dslocal.pipeline import read_provenance

    lowered = {n.lower(): n for n in names}
    if _with_tag(model).lower() in lowered:
        name = lowered[_with_tag(model).lower()]
        origin = read_provenance(settings, name) or {}
        return name, origin.get("model") if load_catalog().find(str(origin.get("model") or "")) else None
    variant = load_catalog().find(model)
    if variant is None:
        return None, None
    for name in names:  # pulled under another name: provenance knows
        origin = read_provenance(settings, name) or {}
        if load_catalog().find(str(origin.get("model") or "")) is variant:
            return name, variant.id
    for candidate in (*variant.aliases, variant.id):  # the name pull gives by default
        if _with_tag(candidate).lower() in lowered:
            return lowered[_with_tag(candidate).lower()], variant.id
    return None, variant.id


def choose_default(settings: Settings, names: Sequence[str], last_used: str | None) -> str:
    """No model named: the one used last, or the only one there is."""
    if last_used and _with_tag(last_used).lower() in {n.lower() for n in names}:
        return last_used
    if len(names) == 1:
        return names[0]
    if not names:
        raise NotFoundError("Ollama has no models yet", "pull one: 'dslocal recommend', then 'dslocal pull ID'")
    shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
    raise UsageError(f"which model? Ollama has {len(names)}: {shown}", "name one: dslocal chat MODEL")


def ollama_target(settings: Settings, model: str | None, *, last_used: str | None = None,
                  keep_alive: str | None = None) -> Target:
    from dslocal.chat.backends.ollama import OllamaChat
    from dslocal.ollama.client import OllamaClient

    client = OllamaClient(str(settings["ollama_host"]))
    try:
        names = _ollama_names(client.tags())
    except OllamaError as exc:
        if "no Ollama server answers" not in exc.message:
            raise
        raise OllamaError(exc.message, "start it with 'dslocal ollama start' (no Ollama yet: 'dslocal ollama install'), "
                                       "or chat without Ollama: --backend embedded (MODEL may be a GGUF path)") from None
    model = model or choose_default(settings, names, last_used)
    name, catalog_id = pulled_name(settings, model, names)
    if name is None:
        hint = f"pull it with 'dslocal pull {catalog_id}'" if catalog_id else "see 'dslocal ls' for the models Ollama has"
        raise NotFoundError(f"Ollama has no model {model!r}", hint)
    shown = client.show(name)
    capabilities = shown.get("capabilities")
    rules = rules_for(name, catalog_id=catalog_id, capabilities=capabilities)
    return Target(OllamaChat(client, name, keep_alive=keep_alive), rules, name, catalog_id)


def openai_target(url: str, model: str | None, *, api_key: str | None = None, dialect: str = "generic",
                  think: bool | None = None) -> Target:
    from dslocal.chat.backends.openai import OpenAIChat

    if not model:
        raise UsageError("an OpenAI-compatible server needs a model name", "e.g. dslocal chat MODEL --backend openai --url URL")
    rules = rules_for(model)
    if think is False and not rules.can_think:
        rules = rules.without_thinking()
    return Target(OpenAIChat(url, model, api_key=api_key, dialect=dialect), rules, model, rules.catalog_id)


def deepseek_target(model: str | None, *, url: str | None = None) -> Target:
    """The DeepSeek API; ``model`` None is deepseek-flash, and /think turns thinking on, off or to an effort."""
    from dslocal.chat.backends.deepseek import DEFAULT_URL, THINK_LEVELS, DeepSeekChat

    backend = DeepSeekChat(model, base_url=url or DEFAULT_URL)
    # The API serves DeepSeek's newest generation, thinking on (effort high) unless asked otherwise, by request
    # fields (guides/thinking_mode); its sampling defaults are its own.
    rules = ModelRules(family="the DeepSeek API", thinking="levels", think_levels=THINK_LEVELS)
    return Target(backend, rules, backend.model)
