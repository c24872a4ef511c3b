"""Which model of a repository ``hf:ORG/REPO[:QUANT]`` means.

A GGUF repository often holds many models: a folder per quant (unsloth's
``DeepSeek-R1-UD-IQ1_S/``), split sets side by side, or single files
(``...-Q4_K_M.gguf``). Without ``:QUANT`` a pull of such a repository would fetch every one
of them (more than a terabyte for DeepSeek-R1), so it is refused with the list; with it, the
model whose quant is exactly QUANT wins over others whose names merely contain it
(``Q2_K`` over ``UD-Q2_K_XL``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from dslocal.errors import UsageError
from dslocal.gguf_tools.shards import parse_shard_name
from dslocal.sources.listing import RemoteFile

_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(?:UD-)?(?:I?Q[1-8](?:_[A-Z0-9]+)*|TQ[12]_0|BF16|F16|F32|MXFP4(?:_MOE)?)(?![A-Za-z0-9])", re.IGNORECASE
)


@dataclass(frozen=True)
class RepoModel:
    label: str  # what to write after the ':' to pull it
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _quant_of(text: str) -> str | None:
    found = _QUANT.findall(text)
    return found[-1] if found else None


def group_models(files: Sequence[RemoteFile]) -> list[RepoModel]:
    """The GGUF files grouped into models: one split set, or one single file, each."""
    groups: dict[tuple[str, str], list[RemoteFile]] = {}
    for f in files:
        folder, _, name = f.path.rpartition("/")
        shard = parse_shard_name(name)
        stem = shard.prefix if shard else name.removesuffix(".gguf")
        groups.setdefault((folder, stem), []).append(f)
    labels = {key: _quant_of(key[1]) or _quant_of(key[0].rsplit("/", 1)[-1]) or key[1] for key in groups}
    taken = list(labels.values())
    models = []
    for key, members in groups.items():
        label = labels[key]
        if taken.count(label) > 1:  # the same quant twice (two folders): the path tells them apart
            label = f"{key[0]}/{key[1]}" if key[0] else key[1]
        models.append(RepoModel(label, tuple(sorted(members, key=lambda f: f.path))))
    return sorted(models, key=lambda m: m.label.lower())


def gb(n: int) -> str:
    """Decimal units, as hub pages show sizes: ``131.4 GB``, ``2.3 MB``."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def pick_model(files: Sequence[RemoteFile], repo: str, quant: str | None) -> list[RemoteFile]:
    """The files of the one model meant; a :class:`UsageError` listing the models when that is not clear."""
    models = group_models(files)
    if len(models) <= 1:
        return list(files)
    if quant:
        exact = [m for m in models if m.label.lower() == quant.lower()]
        if len(exact) == 1:
            return list(exact[0].files)
    found = ", ".join(f"{m.label} ({gb(m.size)})" for m in models)
    first = models[0].label
    what = f"{quant!r} matches {len(models)} models in {repo}" if quant else f"{repo} holds {len(models)} models"
    raise UsageError(
        f"{what}: name one, nothing was downloaded",
        f"add :{first}, e.g. 'dslocal pull hf:{repo}:{first}'; this repo has {found}",
    )
