"""Ollama Modelfiles: rendering from ``modelfiles/`` and a plan, quoting, and parsing.

Quoting follows Ollama's parser (parser.go): a value is bare, in double quotes, or in
triple double quotes, and there are no escape sequences. A bare value ends at the end
of the line and loses surrounding spaces; a double-quoted one cannot hold a double
quote; a triple-quoted one cannot hold three double quotes nor end with one.
:func:`quote` picks the form that reads back exactly, and refuses a value no form can
carry, so a system prompt can never break the file.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from dslocal import __version__
from dslocal.errors import InputError
from dslocal.resources import read_data

STOP_TOKENS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>")
INSTRUCTIONS = ("from", "parameter", "template", "system", "adapter", "license", "message", "requires")


def quote(value: str) -> str:
    """The Modelfile form of ``value`` that Ollama's parser reads back unchanged."""
    plain = value == value.strip() and value and "\n" not in value and not value.startswith('"')
    if plain:
        return value
    if '"' not in value:
        return f'"{value}"'
    if '"""' in value or value.endswith('"'):
        raise InputError(
            "this text cannot be written in a Modelfile (it holds \"\"\" or ends with a quote)",
            "rephrase it: Modelfile values have no escape sequences",
        )
    return f'"""{value}"""'


@dataclass
class Modelfile:
    from_: str = ""
    template: str | None = None
    system: str | None = None
    license: str | None = None
    parameters: list[tuple[str, str]] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)

    def parameter_map(self) -> dict[str, Any]:
        """Parameters as /api/create expects them: ``stop`` accumulates into a list."""
        out: dict[str, Any] = {}
        for key, value in self.parameters:
            if key == "stop":
                out.setdefault("stop", []).append(value)
            else:
                out[key] = _number(value)
        return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _read_value(text: str, pos: int) -> tuple[str, int]:
    """Read a value starting at ``pos`` (after the instruction's whitespace); returns (value, next_pos)."""
    if text.startswith('"""', pos):
        end = text.find('"""', pos + 3)
        if end < 0:
            raise InputError("a \"\"\" quoted value is never closed", "close it with \"\"\"")
        return text[pos + 3 : end], end + 3
    if text.startswith('"', pos):
        end = text.find('"', pos + 1)
        if end < 0:
            raise InputError("a quoted value is never closed", 'close it with "')
        return text[pos + 1 : end], end + 1
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    return text[pos:end].strip(), end


def parse(text: str) -> Modelfile:
    """Parse a Modelfile the way Ollama does (instructions are case-insensitive; ``#`` starts a comment)."""
    result = Modelfile()
    pos = 0
    while pos < len(text):
        line_end = text.find("\n", pos)
        line_end = len(text) if line_end < 0 else line_end
        line = text[pos:line_end]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            pos = line_end + 1
            continue
        match = re.match(r"\s*(\S+)\s+", line)
        if not match or match[1].lower() not in INSTRUCTIONS:
            raise InputError(f"unknown Modelfile instruction in {stripped[:40]!r}", "see Ollama's Modelfile reference")
        instruction = match[1].lower()
        start = pos + match.end()
        if instruction in ("parameter", "message"):
            key_match = re.match(r"(\S+)\s+", text[start:])
            if key_match is None:
                raise InputError(f"{instruction.upper()} needs a name and a value", "e.g. PARAMETER num_ctx 8192")
            key = key_match[1]
            value, pos = _read_value(text, start + key_match.end())
            (result.parameters if instruction == "parameter" else result.messages).append((key, value))
        else:
            value, pos = _read_value(text, start)
            if instruction == "from":
                result.from_ = value
            elif instruction in ("template", "system", "license"):
                setattr(result, instruction, value)
        next_newline = text.find("\n", pos)
        pos = len(text) if next_newline < 0 else next_newline + 1
    if not result.from_:
        raise InputError("the Modelfile has no FROM line", "add FROM with a model name or a GGUF path")
    return result


@dataclass(frozen=True)
class Family:
    key: str
    description: str
    template: str  # the TEMPLATE body; "" = no TEMPLATE, the GGUF's own chat template runs
    temperature: float | None
    top_p: float | None
    min_p: float | None
    system: str


def load_family(key: str) -> Family:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    families = tomllib.loads(read_data("modelfiles", "families.toml"))
    if key not in families:
        raise InputError(f"no Modelfile family {key!r}", f"known: {', '.join(families)}")
    entry = families[key]
    name = entry.get("template", "")
    return Family(
        key=key,
        description=entry.get("description", key),
        template=read_data("modelfiles", name).rstrip("\n") if name else "",
        temperature=entry.get("temperature"),
        top_p=entry.get("top_p"),
        min_p=entry.get("min_p"),
        system=entry.get("system", ""),
    )


def _fmt(number: float) -> str:
    return f"{number:g}"


def render(
    family: Family,
    *,
    from_: str,
    num_ctx: int,
    num_thread: int,
    num_gpu: int | None = None,
    system: str | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    license_text: str | None = None,
    comment: str | None = None,
) -> str:
    """A complete Modelfile; sampling defaults come from the family unless given."""
    lines = [f"# Modelfile written by dslocal {__version__} ({family.description})"]
    if comment:
        lines.extend(f"# {line}" for line in comment.splitlines())
    lines.append(f"FROM {quote(from_)}")
    if family.template:
        lines.append(f'TEMPLATE """{family.template}"""')
    system = family.system if system is None else system
    if system:
        lines.append(f"SYSTEM {quote(system)}")
    lines.extend(f'PARAMETER stop "{token}"' for token in STOP_TOKENS)
    for name, value in (
        ("temperature", temperature if temperature is not None else family.temperature),
        ("top_p", top_p if top_p is not None else family.top_p),
        ("min_p", min_p if min_p is not None else family.min_p),
    ):
        if value is not None:
            lines.append(f"PARAMETER {name} {_fmt(value)}")
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    if num_gpu is not None:
        lines.append(f"PARAMETER num_gpu {num_gpu}")
    lines.append(f"PARAMETER num_thread {num_thread}")
    if license_text:
        lines.append(f"LICENSE {quote(license_text)}")
    return "\n".join(lines) + "\n"
