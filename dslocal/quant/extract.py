"""The recipe a quantized GGUF embodies: its tensor types, written back as recipe rules.

Tensors are grouped by role (the name after ``blk.N.``, or the whole name outside the blocks). A role
with one type in every block becomes part of one rule per type (``^blk\\.\\d+\\.(role|role)$``); a role
whose type changes from block to block gets a rule per minority type over its block ranges
(``^blk\\.(3|4|5)\\.ffn_down_exps\\.weight$``) before its role-wide rule. Rules never overlap, so their
order does not change a tensor's type, and the result is checked: every tensor of the file gets
back exactly its type (:func:`check_equivalent`).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from dslocal.errors import DslocalError
from dslocal.planner.fit import number_range_regex
from dslocal.quant.recipes import (
    _EXEMPT,
    IMATRIX_TYPES,
    Recipe,
    Rule,
    kept_by_llama_cpp,
    parse_recipe,
)

_BLOCK = re.compile(r"^blk\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class FileTensor:
    name: str
    shape: tuple[int, ...]
    type: str
    bytes: int


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _layer_pattern(layers: list[int], role: str) -> str:
    alternatives = "|".join(number_range_regex(a, b) for a, b in _runs(layers))
    return rf"^blk\.({alternatives})\.{re.escape(role)}$"


def extract_rules(tensors: Iterable[FileTensor]) -> tuple[list[Rule], str]:
    """The rules that give every tensor its type, and the default type (most bytes of quantized weights)."""
    tensors = list(tensors)
    roles: dict[str, dict[int, str]] = defaultdict(dict)
    outside: dict[str, list[str]] = defaultdict(list)  # type -> names outside the blocks
    for t in tensors:
        match = _BLOCK.match(t.name)
        if match:
            roles[match[2]][int(match[1])] = t.type
        else:
            outside[t.type].append(t.name)
    per_layer: list[Rule] = []
    uniform: dict[str, list[str]] = defaultdict(list)  # type -> roles with that type in every block
    for role, by_layer in roles.items():
        counts = Counter(by_layer.values())
        majority = max(counts, key=lambda k: (counts[k], k))
        for type_name in sorted(counts):
            if type_name != majority:
                layers = [i for i, t in by_layer.items() if t == type_name]
                per_layer.append(Rule(_layer_pattern(layers, role), type_name))
        uniform[majority].append(role)
    rules = per_layer
    for type_name in sorted(uniform):
        names = "|".join(re.escape(r) for r in sorted(uniform[type_name]))
        rules.append(Rule(rf"^blk\.\d+\.({names})$", type_name))
    for type_name in sorted(outside):
        names = "|".join(re.escape(n) for n in sorted(outside[type_name]))
        rules.append(Rule(rf"^({names})$", type_name))
    weights = Counter()
    for t in tensors:
        if not kept_by_llama_cpp(t.name, t.shape):
            weights[t.type] += t.bytes
    default = weights.most_common(1)[0][0] if weights else "F32"
    return rules, default


def check_equivalent(recipe: Recipe, tensors: Iterable[FileTensor]) -> None:
    for t in tensors:
        if recipe.type_for(t.name) != t.type:
            raise DslocalError(f"the extracted recipe gives {t.name} {recipe.type_for(t.name)}, the file has {t.type}",
                               "report this: a bug in dslocal recipe from-gguf")


def recipe_from_tensors(tensors: Iterable[FileTensor], *, name: str, architecture: str, imatrix_keys: bool,
                        file_bytes: int, source: str, model: str | None = None) -> Recipe:
    tensors = list(tensors)
    rules, default = extract_rules(tensors)
    uses_imatrix_types = any(t.type in IMATRIX_TYPES and t.name not in _EXEMPT for t in tensors)
    recipe = Recipe(
        name=name, architecture=architecture, default_type=default, imatrix=imatrix_keys or uses_imatrix_types,
        rules=tuple(rules), model=model, published_size_gib=float(f"{file_bytes / (1 << 30):.4g}"), source=source,
        notes=f"read by 'dslocal recipe from-gguf' from the types of its {len(tensors)} tensors",
    )
    check_equivalent(recipe, tensors)
    return recipe


def recipe_from_set(shard_set, *, name: str | None, source: str) -> Recipe:
    first = shard_set.first
    tensors = [FileTensor(t.name, tuple(t.shape), t.type_name, t.n_bytes) for _, t in shard_set.tensors()]
    label = name or str(first.get("general.name") or "extracted")
    return recipe_from_tensors(
        tensors, name=label, architecture=first.arch or "unknown",
        imatrix_keys=any(k.startswith("quantize.imatrix.") for k in first.kv), file_bytes=shard_set.file_bytes,
        source=source, model=first.get("general.basename") if isinstance(first.get("general.basename"), str) else None,
    )


def recipe_toml(recipe: Recipe) -> str:
    """The recipe as a file :func:`dslocal.quant.recipes.parse_recipe` reads back to the same rules."""
    import tomli_w

    top = {"name": recipe.name, "architecture": recipe.architecture}
    if recipe.model:
        top["model"] = recipe.model
    top |= {"default_type": recipe.default_type, "imatrix": recipe.imatrix}
    for key in ("published_size_gib", "source", "notes"):
        if getattr(recipe, key) is not None:
            top[key] = getattr(recipe, key)
    top["rules"] = [{"pattern": r.pattern, "type": r.type} for r in recipe.rules]
    text = ("# Written by 'dslocal recipe from-gguf': the ggml type of every tensor of the file, as rules.\n"
            "# Rules are tried in order; the first whose regular expression matches the tensor name wins.\n\n"
            + tomli_w.dumps(top, multiline_strings=False))
    back = parse_recipe(text, "<from-gguf>")
    if [(r.pattern, r.type) for r in back.rules] != [(r.pattern, r.type) for r in recipe.rules]:
        raise DslocalError("the written recipe does not read back the same", "report this: a bug in dslocal")
    return text
