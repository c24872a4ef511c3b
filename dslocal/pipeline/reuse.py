"""Work a pull can trust again: a recorded blob that is still whole, and blobs found by their source.

The per-pull journal is keyed by the Ollama name (the steps of *this* pull). The merged
blob, though, depends only on the files it was merged from and the layout, so it is
also recorded under a key made of those (path, size and sha256 of every file): a pull
under a corrected ``--name`` finds the blob an earlier pull merged, and the merge it
left half done, instead of downloading and merging again.

A recorded blob is checked before it is used: Ollama deletes blobs no manifest
references when it starts, and a file can be truncated or damaged. Size and GGUF header
are checked always, the sha256 before the blob is actually used (one read of it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dslocal.gguf_tools.header import GGUFFormatError, read_file_header
from dslocal.ollama.client import file_digest
from dslocal.pipeline.journal import Journal
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.sources.listing import RemoteFile


def source_key(layout: str, files: Sequence[RemoteFile], local_files: Sequence[Path]) -> dict[str, Any]:
    """What a merged blob is made of: the files (with their sha256, or their URL where a source has none)."""
    if files:
        entries = [[f.path, f.size, f.sha256 or f.url] for f in files]
    else:
        entries = []
        for path in local_files:
            stat = path.stat()
            entries.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return {"layout": layout, "files": entries}


def key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def source_journal(state_dir: Path, key: dict[str, Any]) -> Journal:
    """The record of what was merged from these files, whatever the pull was named."""
    return Journal(state_dir / "pulls" / "sources" / f"{key_id(key)}.json", key)


def work_name(key: dict[str, Any]) -> str:
    """The merge's output name in the store's work folder: one per source, so a renamed pull resumes it."""
    return f"source-{key_id(key)}.gguf"


def blob_problem(path: Path, digest: str, size: int, *, full: bool, progress: ProgressSink = null_sink) -> str | None:
    """Why the blob at ``path`` cannot be used as ``digest`` of ``size`` bytes, or None when it can."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "is gone (Ollama deletes blobs that no model uses when it starts)"
    if actual != size:
        return f"has {actual:,} bytes instead of {size:,}"
    try:
        read_file_header(path)
    except GGUFFormatError as error:
        return f"is not a usable GGUF any more ({error.message})"
    if full:
        read = [0]

        def checked(n: int) -> None:
            read[0] += n
            progress(Progress("check", read[0], size, path.name))

        if file_digest(path, progress=checked) != digest:
            return "does not match its sha256"
    return None
