"""The size of the file a recipe makes, from the tensor shapes of its (BF16/F16/F32) source.

Each tensor's bytes are what ggml stores for its type: ``rows × ne[0] / block_size × type_size``.
Tensors llama.cpp keeps (norms, biases, the router) stay in the source's type; a tensor whose rows
do not divide into the type's blocks gets llama.cpp's fallback type (``tensor_type_fallback`` in
llama-quant.cpp: IQ and low K-quants to IQ4_NL, Q4_K to Q5_0, Q5_K to Q5_1, Q6_K to Q8_0, F16 when
even that does not divide). The header is taken as the source's (tokenizer and metadata, a few MB).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dslocal.errors import InputError
from dslocal.gguf_tools.ggml_types import GGML_TYPES
from dslocal.quant.recipes import Recipe, kept_by_llama_cpp

GIB = 1 << 30
_BY_NAME = {t.name: t for t in GGML_TYPES.values()}
_LOW = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M", "Q2_K", "Q3_K", "IQ4_XS")
FALLBACK = {**{t: "IQ4_NL" for t in _LOW}, "TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1",
            "Q6_K": "Q8_0"}
SOURCE_TYPES = ("F32", "F16", "BF16")


@dataclass(frozen=True)
class TensorShape:
    name: str
    shape: tuple[int, ...]  # ggml order, ne[0] first
    type: str = "BF16"  # the source's type


@dataclass(frozen=True)
class Planned:
    name: str
    shape: tuple[int, ...]
    type: str  # what the output file holds
    named: str  # what the recipe names (differs when llama.cpp keeps the tensor or falls back)
    bytes: int


@dataclass(frozen=True)
class Estimate:
    recipe: str
    tensors: tuple[Planned, ...]
    header_bytes: int
    source_bytes: int
    by_type: dict[str, tuple[int, int]] = field(default_factory=dict)  # type -> (tensors, bytes)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.bytes for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.tensor_bytes

    @property
    def fallbacks(self) -> list[Planned]:
        return [t for t in self.tensors if t.type != t.named and not kept_by_llama_cpp(t.name, t.shape)]


def type_bytes(type_name: str, shape: tuple[int, ...]) -> int:
    info = _BY_NAME[type_name]
    rows = math.prod(shape[1:])
    return rows * (shape[0] // info.block_size) * info.type_size


def output_type(recipe: Recipe, name: str, shape: tuple[int, ...], source_type: str) -> tuple[str, str]:
    """(the type the output holds, the type the recipe names) for one tensor."""
    named = recipe.type_for(name)
    if kept_by_llama_cpp(name, shape):
        return source_type, named
    actual = named
    if shape[0] % _BY_NAME[actual].block_size:
        actual = FALLBACK.get(actual, "F16")
        if shape[0] % _BY_NAME[actual].block_size:
            actual = "F16"
    return actual, named


def plan(recipe: Recipe, tensors: Iterable[TensorShape]) -> list[Planned]:
    out = []
    for t in tensors:
        actual, named = output_type(recipe, t.name, t.shape, t.type)
        out.append(Planned(t.name, t.shape, actual, named, type_bytes(actual, t.shape)))
    return out


def estimate(recipe: Recipe, tensors: Iterable[TensorShape], *, header_bytes: int = 0) -> Estimate:
    """What ``recipe`` makes of a source with ``tensors``."""
    tensors = list(tensors)
    planned = plan(recipe, tensors)
    by_type: dict[str, tuple[int, int]] = {}
    for p in planned:
        n, b = by_type.get(p.type, (0, 0))
        by_type[p.type] = (n + 1, b + p.bytes)
    source = sum(type_bytes(t.type, t.shape) for t in tensors)
    return Estimate(recipe.name, tuple(planned), header_bytes, source, dict(sorted(by_type.items())))


def source_shapes(shard_set, recipe: Recipe) -> tuple[list[TensorShape], int]:
    """The tensors of a GGUF source (every shard) and its first header's size; refuses another architecture."""
    arch = shard_set.first.arch
    if arch != recipe.architecture:
        raise InputError(f"{shard_set.first.source_name} is a {arch} model; recipe {recipe.name} is for {recipe.architecture}",
                         "pick a recipe for that architecture (dslocal recipe ls)")
    shapes = [TensorShape(t.name, tuple(t.shape), t.type_name) for _, t in shard_set.tensors()]
    return shapes, shard_set.first.data_offset


def quantized_weights(shapes: Iterable[TensorShape]) -> list[str]:
    """Names of weights that are already quantized (the estimate then starts from them, not from BF16)."""
    return [t.name for t in shapes if t.type not in SOURCE_TYPES and not kept_by_llama_cpp(t.name, t.shape)]
