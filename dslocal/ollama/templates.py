"""Which chat template Ollama really runs for a model, and why (protocol audit, finding 8).

From v0.30 a model with both a Modelfile TEMPLATE (Go) and a GGUF ``tokenizer.chat_template``
(jinja) runs the jinja natively in llama-server when the jinja "can do more": more
capabilities (tools, thinking), or the same with a tool round trip the Go template lacks
(``server/images.go`` ``shouldPreferChatTemplate``), unless ``OLLAMA_GO_TEMPLATE`` is set.
Every GGUF Unsloth publishes for DeepSeek carries a jinja with tools and ``</think>``
handling, so dslocal's templates reference ``.Tools`` and ``.ToolCalls`` and handle
``tool`` messages: Ollama keeps them, and ``think: false`` closes the thinking block the
way dslocal tested. On the native path R1's jinja always opens ``<think>``, so thinking
cannot be turned off.

These rules are read from the text of the templates, as the server reads them; ``ls`` and
``show`` use the server's own answer (``/api/show``) where a server is running.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

GO = "ollama"  # the Modelfile TEMPLATE, rendered by Ollama
JINJA = "gguf"  # the GGUF's chat template, applied by llama-server


@dataclass(frozen=True)
class TemplateUse:
    runs: str  # GO or JINJA
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"runs": self.runs, "reason": self.reason}


def jinja_capabilities(jinja: str) -> set[str]:
    caps = set()
    if "tools" in jinja or "tool_call" in jinja:
        caps.add("tools")
    split = "content.split('</think>')" in jinja or 'content.split("</think>")' in jinja
    if ("<think>" in jinja and "</think>" in jinja) or (split and "reasoning_content" not in jinja):
        caps.add("thinking")
    return caps


def jinja_round_trip(jinja: str) -> bool:
    marks = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"", "role\"] == 'tool'",
             "role\"] == \"tool\"", "message.role == 'tool'", "message.role == \"tool\"", "ipython")
    return ("tools" in jinja or "tool_call" in jinja) and ("tool_calls" in jinja or "assistant_tool_call" in jinja) \
        and any(m in jinja for m in marks)


def go_capabilities(template: str) -> set[str]:
    caps = set()
    if re.search(r"\.Tools\b", template):
        caps.add("tools")
    if re.search(r"range\s+(\$\w+,\s*\$\w+\s*:=\s*)?\.Messages", template) and ".Thinking" in template:
        caps.add("thinking")
    return caps


def go_round_trip(template: str) -> bool:
    return bool(re.search(r"\.Tools\b", template)) and ".ToolCalls" in template and (
        'eq .Role "tool"' in template or "tool_response" in template or "TOOL_RESULTS" in template)


def expected_use(go_template: str | None, jinja: str, go_template_env: str | None = None) -> TemplateUse:
    """What a v0.30+ server will run for a model with these templates."""
    if go_template is None:
        return TemplateUse(JINJA, "the model has no TEMPLATE")
    if go_template_env:
        on = go_template_env.strip().lower() not in ("0", "f", "false")
        return TemplateUse(GO if on else JINJA, f"OLLAMA_GO_TEMPLATE={go_template_env} decides")
    if not jinja:
        return TemplateUse(GO, "the GGUF has no chat template")
    chat, go = jinja_capabilities(jinja), go_capabilities(go_template)
    if len(chat) > len(go) and (not go_round_trip(go_template) or jinja_round_trip(jinja)):
        return TemplateUse(JINJA, f"the GGUF's template can do more ({', '.join(sorted(chat - go))})")
    if chat == go and "tools" in chat and jinja_round_trip(jinja) and not go_round_trip(go_template):
        return TemplateUse(JINJA, "the GGUF's template has a tool round trip the TEMPLATE lacks")
    return TemplateUse(GO, "the TEMPLATE can do as much as the GGUF's template")


def observed_use(shown: dict[str, Any]) -> TemplateUse:
    """The server's own answer: /api/show reports the GGUF's jinja as ``template`` on the native path."""
    from dslocal.ollama.modelfile import parse

    template = str(shown.get("template") or "")
    try:
        go = parse(str(shown.get("modelfile") or "")).template
    except Exception:  # noqa: BLE001 - a Modelfile dslocal cannot parse says nothing either way
        go = None
    if go and template == go:
        return TemplateUse(GO, "Ollama renders the Modelfile TEMPLATE")
    if "{%" in template:
        return TemplateUse(JINJA, "llama-server applies the GGUF's chat template")
    return TemplateUse(GO, "Ollama renders the Modelfile TEMPLATE")
