"""Ollama's model names, by its own rules (``types/model/name.go`` of Ollama v0.32.15).

A name is ``[host/][namespace/]model[:tag]``, filled in with ``registry.ollama.ai``,
``library`` and ``latest``. Each part starts with a letter, digit or ``_`` and then holds
letters, digits, ``_``, ``-`` and ``.`` (not in a namespace), and ``:`` only in the host;
the host may be 350 bytes long, every other part 80. A name that passes these rules maps
to the folder ``manifests/HOST/NAMESPACE/MODEL/TAG`` and can never leave it.

The server matches existing names case-insensitively (``routes.go`` ``getExistingName``),
so :meth:`ModelName.same` does too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import UsageError

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
MISSING = "!MISSING!"
_LIMITS = {"host": 350, "namespace": 80, "model": 80, "tag": 80}
_ALLOWED = {
    "host": "letters, digits, '_', '-', '.' and ':'",
    "namespace": "letters, digits, '_' and '-'",
    "model": "letters, digits, '_', '-' and '.'",
    "tag": "letters, digits, '_', '-' and '.'",
}


def _valid_part(kind: str, text: str) -> bool:
    if not 1 <= len(text.encode("utf-8")) <= _LIMITS[kind]:
        return False
    for i, char in enumerate(text):
        if char.isascii() and (char.isalnum() or char == "_"):
            continue
        if i == 0:
            return False
        if char == "-" or (char == "." and kind != "namespace") or (char == ":" and kind == "host"):
            continue
        return False
    return True


def _cut_last(text: str, sep: str) -> tuple[str, str, bool]:
    before, found, after = text.rpartition(sep)
    if not found:
        return text, "", False
    return before or MISSING, after or MISSING, True


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def valid(self) -> bool:
        parts = (("host", self.host), ("namespace", self.namespace), ("model", self.model), ("tag", self.tag))
        return all(_valid_part(kind, text) for kind, text in parts)

    def shortest(self) -> str:
        """Ollama's ``DisplayShortest``: ``model:tag``, with the namespace (and host) when not the defaults."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    def manifest_path(self, models_dir: Path) -> Path:
        if not self.valid:
            raise ValueError(f"invalid model name {self!r}")
        return Path(models_dir) / "manifests" / self.host / self.namespace / self.model / self.tag

    def same(self, other: ModelName) -> bool:
        return all(a.lower() == b.lower() for a, b in zip(self.parts(), other.parts()))

    def parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)


def parse_name(text: str) -> ModelName:
    """``ParseName``: the parts of ``text`` merged with the defaults; check :attr:`ModelName.valid`."""
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_last(text, ":")
    rest, model, found = _cut_last(text, "/")
    if not found:
        return ModelName(DEFAULT_HOST, DEFAULT_NAMESPACE, text, tag or DEFAULT_TAG)
    rest, namespace, found = _cut_last(rest, "/")
    if not found:
        return ModelName(DEFAULT_HOST, rest, model, tag or DEFAULT_TAG)
    host = rest.split("://", 1)[1] if "://" in rest else rest
    return ModelName(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)


def check_name(text: str) -> ModelName:
    """The parsed name, or a :class:`UsageError` naming the rule it breaks (before any work is done)."""
    name = parse_name(text)
    if name.valid:
        suffix = name.tag.lower()
        if suffix in ("cloud", "local") or suffix.endswith("-cloud"):
            raise UsageError(
                f"{text!r} ends in a source suffix: Ollama reads ':cloud', ':local' and '-cloud' tags as "
                "'run on ollama.com' or 'this machine', not as part of the name",
                "choose another tag, e.g. 'deepseek-r1:671b-q2'",
            )
        return name
    for kind, part in zip(("host", "namespace", "model", "tag"), name.parts()):
        if _valid_part(kind, part):
            continue
        shown = "" if part == MISSING else part
        if not shown:
            why = f"its {kind} is empty"
        elif len(shown.encode("utf-8")) > _LIMITS[kind]:
            why = f"its {kind} is longer than {_LIMITS[kind]} bytes"
        else:
            why = f"its {kind} {shown!r} must start with a letter, digit or '_' and hold only {_ALLOWED[kind]}"
        break
    shown = text if len(text) <= 60 else text[:40] + "..." + text[-8:]
    raise UsageError(f"{shown!r} is not a valid Ollama model name: {why}",
                     "use e.g. 'deepseek-r1:671b-q2' or 'team/r1:latest' (Ollama's name rules)")
