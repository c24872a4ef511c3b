"""The catalog: every DeepSeek variant dslocal knows, read from the packaged ``variants.toml``.

Sizes there serve offline; exact sizes come from the real GGUF headers (``dslocal
gguf inspect``) when the network is there. See the file's header for its conventions.
"""

from __future__ import annotations

import difflib
import functools
import sys
from dataclasses import dataclass, field, fields
from importlib import resources
from typing import Any

from dslocal.errors import NotFoundError


@dataclass(frozen=True)
class Variant:
    id: str
    model: str
    family: str
    quant: str
    architecture: str
    params_b: float
    active_params_b: float
    size_bytes: int
    hf_repo: str
    template: str
    context_length: int
    block_count: int
    quality_tier: int
    license: str = ""
    aliases: tuple[str, ...] = ()
    size_source: str = ""
    hf_folder: str = ""
    files: tuple[str, ...] = ()
    modelscope_repo: str | None = None
    kv_layout: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    min_p: float | None = None
    multi_node: bool = False
    needs: str = ""  # what it takes beyond mainline llama.cpp and Ollama (a fork, a cloud), when it cannot run here
    notes: str = ""
    unverified: tuple[str, ...] = field(default=())

    @property
    def paths(self) -> tuple[str, ...]:
        """Repository paths of the variant's files, in shard order."""
        prefix = f"{self.hf_folder}/" if self.hf_folder else ""
        return tuple(prefix + name for name in self.files)

    @property
    def shard_count(self) -> int:
        return len(self.files)

    @property
    def size_exact(self) -> bool:
        return self.size_source.startswith("exact")

    @property
    def is_moe(self) -> bool:
        return self.active_params_b < self.params_b

    @property
    def known_paths(self) -> tuple[str, ...]:
        """The paths when a source named them; names only inferred from a sibling quant's give ()."""
        return () if "files" in self.unverified else self.paths

    def include_globs(self) -> tuple[str, ...]:
        """What ``dslocal download`` should fetch from ``hf_repo``: the named files, else the folder's GGUFs."""
        if self.known_paths or (self.paths and not self.hf_folder):  # a guessed root file: no folder to list
            return self.paths
        return (f"{self.hf_folder}/*.gguf",) if self.hf_folder else ()

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


# Ollama library tags people type (facts file, section 7), and the closest catalog variant: the same
# model at Q4_K_M for the distills; for 671b the library's Q4_K_M against Unsloth's dynamic 4-bit.
OLLAMA_LIBRARY = {
    "deepseek-r1:1.5b": "r1-distill-qwen-1.5b", "deepseek-r1:7b": "r1-distill-qwen-7b",
    "deepseek-r1:8b": "r1-0528-qwen3-8b", "deepseek-r1:8b-llama-distill-q4_k_m": "r1-distill-llama-8b",
    "deepseek-r1:14b": "r1-distill-qwen-14b", "deepseek-r1:32b": "r1-distill-qwen-32b",
    "deepseek-r1:70b": "r1-distill-llama-70b", "deepseek-r1:671b": "r1-671b-q4", "deepseek-v3:671b": "v3-q4",
    # A cloud model only (field refresh 2026-12, 1.5): the closest local one is Unsloth's 8-bit of the 0731 weights.
    "deepseek-v4-flash": "v4-flash-0731-q8",
}


class Catalog:
    def __init__(self, variants: list[Variant]) -> None:
        self.variants = variants
        self._by_name: dict[str, Variant] = {}
        for variant in variants:
            for name in (variant.id, *variant.aliases):
                if name in self._by_name:
                    raise ValueError(f"catalog name {name!r} is used twice")
                self._by_name[name] = variant

    def __iter__(self):
        return iter(self.variants)

    def find(self, name: str) -> Variant | None:
        return self._by_name.get(name.strip().lower())

    def get(self, name: str) -> Variant:
        variant = self.find(name)
        if variant is None:
            library = OLLAMA_LIBRARY.get(name.strip().lower().removesuffix(":latest"))
            if library and library in self._by_name:
                raise NotFoundError(f"{name!r} is Ollama's library name, not a dslocal catalog id",
                                    f"the closest here is {library}: dslocal pull {library}")
            close = difflib.get_close_matches(name.lower(), list(self._by_name), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise NotFoundError(f"{name!r} is not in dslocal's catalog", f"{hint}see 'dslocal list'")
        return variant


def _variant(entry: dict[str, Any]) -> Variant:
    known = {f.name for f in fields(Variant)}
    values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in entry.items() if k in known}
    return Variant(**values)


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    text = (resources.files("dslocal.catalog") / "variants.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    return Catalog([_variant(entry) for entry in data["variant"]])
