"""Quant recipes: which ggml type each tensor of a model gets, kept as TOML data.

A recipe file (``quant_recipes/*.toml``, shipped in the wheel) holds::

    name = "UD-IQ1_S"               # how ``dslocal recipe show NAME`` finds it (or the file's stem)
    architecture = "deepseek2"      # general.architecture of the models it is for
    default_type = "IQ1_S"          # the type of a tensor no rule matches
    imatrix = true                  # whether quantizing needs an importance matrix
    model = "DeepSeek-R1"           # optional: the model it was published for
    published_size_gib = 131        # optional: the size its publisher gives
    source = "https://..."          # optional: where the recipe comes from
    notes = "..."                   # optional

    [[rules]]                       # tried in order; the first whose regex matches the name wins
    pattern = '\\.ffn_(gate|up)_exps\\.weight$'
    type = "IQ1_S"

The schema check (:func:`parse_recipe`) rejects a broken recipe with the file and line at fault.
llama.cpp's quantizer never changes some tensors (1-D norms and biases, the MoE router): they keep
their source type whatever a rule says (:func:`kept_by_llama_cpp`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import tomllib

from dslocal.errors import InputError, NotFoundError
from dslocal.gguf_tools.ggml_types import GGML_TYPES

FOLDER = "quant_recipes"

# Types a recipe may name: the ggml types llama.cpp's quantizer writes (no integer or Q8_1/Q8_K types).
TYPES: frozenset[str] = frozenset(
    t.name for t in GGML_TYPES.values() if t.name not in ("I8", "I16", "I32", "I64", "F64", "Q8_1", "Q8_K")
)
# Types llama.cpp refuses to quantize a weight to without an importance matrix ("this quantization
# requires an importance matrix", llama-quant.cpp; token_embd and output are exempt there).
IMATRIX_TYPES: frozenset[str] = frozenset({"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS"})
IMATRIX_REASON = ("at about 3 bits per weight and below (IQ1-IQ3_XXS) llama.cpp needs per-column importance (an imatrix, made by "
                  "llama-imatrix from calibration text) to keep the model usable, and refuses without one")
_EXEMPT = ("token_embd.weight", "output.weight")

_REQUIRED = {"name": str, "architecture": str, "default_type": str, "imatrix": bool}
_OPTIONAL = {"model": str, "published_size_gib": (int, float), "source": str, "notes": str}
_RULE_KEYS = {"pattern": str, "type": str}


class RecipeError(InputError):
    """A recipe file that does not follow the schema."""


@dataclass(frozen=True)
class Rule:
    pattern: str
    type: str
    line: int = 0  # where the rule's table starts in its file (0: not from a file)

    def matches(self, tensor: str) -> bool:
        return re.search(self.pattern, tensor) is not None


@dataclass(frozen=True)
class Recipe:
    name: str
    architecture: str
    default_type: str
    imatrix: bool
    rules: tuple[Rule, ...]
    model: str | None = None
    published_size_gib: float | None = None
    source: str | None = None
    notes: str | None = None
    origin: str = "<memory>"  # the file it was read from

    def type_for(self, tensor: str) -> str:
        """The type the recipe names for ``tensor``: the first matching rule's, else the default."""
        for rule in self.rules:
            if rule.matches(tensor):
                return rule.type
        return self.default_type

    def types_named(self) -> set[str]:
        return {self.default_type, *(r.type for r in self.rules)}

    def needs_imatrix(self, tensors: Iterable[str] | None = None) -> list[str]:
        """The imatrix-only types the recipe gives (to ``tensors`` when given, else anywhere)."""
        if tensors is None:
            return sorted(self.types_named() & IMATRIX_TYPES)
        return sorted({self.type_for(t) for t in tensors if t not in _EXEMPT} & IMATRIX_TYPES)


def kept_by_llama_cpp(name: str, shape: tuple[int, ...]) -> bool:
    """Tensors llama.cpp's quantizer copies unchanged: 1-D ones (norms, biases) and the MoE router
    (``ffn_gate_inp``), as llama_model_quantize_impl decides ``quantize`` (llama-quant.cpp)."""
    return sum(1 for n in shape if n > 1) < 2 or "ffn_gate_inp.weight" in name


# --- the schema check ----------------------------------------------------------------------------------

def _locate(lines: list[str], table: int, key: str | None) -> int:
    """The 1-based line of ``key`` in the top level (table -1) or in the ``table``-th [[rules]]."""
    start, seen = 0, -1
    if table >= 0:
        for i, line in enumerate(lines):
            if re.match(r"\s*\[\[\s*rules\s*\]\]", line):
                seen += 1
                if seen == table:
                    start = i
                    break
    if key is None:
        return start + 1
    for i in range(start + (1 if table >= 0 else 0), len(lines)):
        if table < 0 and re.match(r"\s*\[", lines[i]):
            break
        if table >= 0 and re.match(r"\s*\[", lines[i]):
            break
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


class _Checker:
    def __init__(self, text: str, origin: str) -> None:
        self.lines = text.splitlines()
        self.origin = origin

    def fail(self, table: int, key: str | None, problem: str) -> RecipeError:
        line = _locate(self.lines, table, key)
        return RecipeError(f"{self.origin}:{line}: {problem}",
                           "fix that line; quant_recipes/README.md describes a recipe's keys")

    def fields(self, table: dict, index: int, required: dict, optional: dict, what: str) -> None:
        for key, value in table.items():
            kind = required.get(key) or optional.get(key)
            if kind is None:
                raise self.fail(index, key, f"unknown key {key!r} in {what} (known: {', '.join([*required, *optional])})")
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise self.fail(index, key, f"{key} must be a {_kind_name(kind)}, not {type(value).__name__}")
        for key in required:
            if key not in table:
                raise self.fail(index, None, f"{what} has no {key!r}")

    def ggml_type(self, value: str, index: int, key: str) -> str:
        if value.upper() not in TYPES:
            raise self.fail(index, key, f"{value!r} is not a ggml type llama.cpp quantizes to "
                                        f"(e.g. Q4_K, Q6_K, IQ1_S, IQ2_XXS, Q8_0, F16)")
        return value.upper()


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "string", bool: "boolean (true/false)", int: "number", float: "number"}
    return " or ".join(dict.fromkeys(names[k] for k in kinds))


def parse_recipe(text: str, origin: str = "<memory>") -> Recipe:
    """Read and check one recipe; :class:`RecipeError` names ``origin:LINE`` and the problem."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        where = f"{origin}:{match[1]}" if match else origin
        raise RecipeError(f"{where}: not valid TOML ({exc})", "fix the TOML syntax on that line") from None
    check = _Checker(text, origin)
    rules_data = data.pop("rules", None)
    check.fields(data, -1, _REQUIRED, _OPTIONAL, "the recipe")
    if not isinstance(rules_data, list) or not rules_data or not all(isinstance(r, dict) for r in rules_data):
        raise check.fail(-1, "rules", "a recipe needs at least one [[rules]] table (pattern and type)")
    rules = []
    for i, raw in enumerate(rules_data):
        check.fields(raw, i, _RULE_KEYS, {}, f"rule {i + 1}")
        try:
            re.compile(raw["pattern"])
        except re.error as exc:
            raise check.fail(i, "pattern", f"pattern {raw['pattern']!r} is not a regular expression: {exc}") from None
        rules.append(Rule(raw["pattern"], check.ggml_type(raw["type"], i, "type"), _locate(check.lines, i, None)))
    recipe = Recipe(
        name=data["name"], architecture=data["architecture"],
        default_type=check.ggml_type(data["default_type"], -1, "default_type"), imatrix=data["imatrix"],
        rules=tuple(rules), model=data.get("model"), published_size_gib=data.get("published_size_gib"),
        source=data.get("source"), notes=data.get("notes"), origin=origin,
    )
    needing = recipe.needs_imatrix()
    if needing and not recipe.imatrix:
        raise check.fail(-1, "imatrix", f"imatrix = false, but the recipe names {', '.join(needing)}, "
                                        "which llama.cpp quantizes only with an importance matrix")
    return recipe


# --- the packaged recipes ------------------------------------------------------------------------------

def packaged_files() -> list[str]:
    from dslocal.resources import list_data

    return [n for n in list_data(FOLDER) if n.endswith(".toml")]


def packaged_recipes() -> list[Recipe]:
    from dslocal.resources import read_data

    return [parse_recipe(read_data(FOLDER, n), f"{FOLDER}/{n}") for n in packaged_files()]


def find_recipe(name: str) -> Recipe:
    """A packaged recipe by name, file stem (case-insensitive) or a path to a .toml file."""
    from pathlib import Path

    if name.endswith(".toml") and Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        return parse_recipe(path.read_text(encoding="utf-8"), str(path))
    wanted = name.lower()
    recipes = packaged_recipes()
    for recipe in recipes:
        stem = recipe.origin.rsplit("/", 1)[-1].removesuffix(".toml")
        if wanted in (recipe.name.lower(), stem.lower()):
            return recipe
    raise NotFoundError(f"no quant recipe named {name!r}",
                        f"see 'dslocal recipe ls' (known: {', '.join(_label(r) for r in recipes)}) or give a .toml path")


def _label(recipe: Recipe) -> str:
    return recipe.origin.rsplit("/", 1)[-1].removesuffix(".toml")
