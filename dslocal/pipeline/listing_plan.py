"""Facts for an ``hf:`` pull before its download, so it can be planned (and refused) first.

The catalog's estimate when the listed files are a catalog variant's (sized by the
listing); otherwise the real GGUF headers, read with ranged requests (a few MB, cached
like ``dslocal plan``'s). When neither can be had, the reason is said instead.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dslocal.catalog import Variant, load_catalog
from dslocal.errors import NetworkError
from dslocal.planner.facts import ModelFacts, from_shard_set, from_variant
from dslocal.sources.listing import RemoteFile


def catalog_match(repo: str, files: Sequence[RemoteFile]) -> Variant | None:
    """The catalog variant whose files these are, if any."""
    paths = {f.path for f in files}
    for variant in load_catalog():
        if variant.multi_node or variant.hf_repo.lower() != repo.lower():
            continue
        if variant.known_paths and set(variant.known_paths) == paths:
            return variant
        folder = f"{variant.hf_folder}/"
        if not variant.known_paths and variant.hf_folder and all(p.startswith(folder) and "/" not in p[len(folder):]
                                                           for p in paths):
            return variant
    return None


def _header_facts(files: Sequence[RemoteFile], chosen: Any, session: Any, cache_dir: Path, label: str) -> ModelFacts:
    from dslocal.gguf_tools.remote import HeaderCache, read_remote_header
    from dslocal.gguf_tools.shards import open_local_set, validate_set

    if chosen.local:
        return from_shard_set(open_local_set(Path(files[0].url)), name=label)
    cache = HeaderCache(cache_dir)
    headers = [read_remote_header(f.url, session, headers=chosen.source.headers(), cache=cache).header for f in files]
    return from_shard_set(validate_set([f.url for f in files], headers), name=label)


def facts_before_download(repo: str, files: Sequence[RemoteFile], chosen: Any, session: Any, cache_dir: Path,
                          label: str) -> tuple[ModelFacts | None, str | None]:
    """(facts, None), or (None, why there are none) when the headers cannot be read."""
    variant = catalog_match(repo, files)
    if variant is not None:
        return from_variant(dataclasses.replace(variant, size_bytes=sum(f.size for f in files))), None
    try:
        return _header_facts(files, chosen, session, cache_dir, label), None
    except NetworkError as error:
        return None, f"no plan before the download: its GGUF headers could not be read ({error.message})"
