"""Model facts for what a user names: a catalog id, a local GGUF, or any ``gguf inspect`` target."""

from __future__ import annotations

from pathlib import Path

from dslocal.catalog import Variant, load_catalog
from dslocal.config import Settings
from dslocal.planner.facts import ModelFacts, from_shard_set, from_variant


def catalog_target(variant: Variant) -> str | None:
    """The ``hf:`` target of a variant's first shard, for reading its real headers."""
    if not variant.known_paths:
        return None
    return f"hf:{variant.hf_repo}/{variant.known_paths[0]}"


def resolve_facts(
    name: str, settings: Settings, *, exact: bool = False
) -> tuple[ModelFacts, Variant | None, list[str]]:
    """Facts for ``name``; catalog ids use the estimate unless ``exact`` (read the headers, cached)."""
    from dslocal.gguf_tools.targets import open_target

    notes: list[str] = []
    variant = load_catalog().find(name)
    cache = settings.paths.cache_dir / "gguf-headers"
    endpoint = str(settings["hf_endpoint"])
    if variant is None:
        if not (Path(name).expanduser().exists() or name.startswith(("hf:", "http://", "https://"))):
            load_catalog().get(name)  # raises NotFoundError with suggestions
        opened = open_target(name, hf_endpoint=endpoint, cache_dir=cache)
        return from_shard_set(opened.shard_set, name=Path(name).name), None, notes
    if exact:
        target = catalog_target(variant)
        if target is None:
            notes.append("this variant's file names are not in the catalog: sizes stay estimated")
        else:
            opened = open_target(target, hf_endpoint=endpoint, cache_dir=cache)
            facts = from_shard_set(opened.shard_set, name=variant.id)
            real = facts.weight_bytes
            if abs(real - variant.size_bytes) > 0.03 * variant.size_bytes:
                notes.append(
                    f"the catalog says {variant.size_bytes / 1e9:.1f} GB, the headers say {real / 1e9:.1f} GB of tensors"
                )
            return facts, variant, notes
    return from_variant(variant), variant, notes
