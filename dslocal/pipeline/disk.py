"""The disk a pull needs, step by step, and the preflight that refuses before any download.

From Ollama v0.30 a create rewrites the imported GGUF with llama-quantize COPY into a
temporary file, then ``manifest.NewLayer`` copies that into a second temporary file
while hashing it (``server/create.go`` ``rewriteLayerWithLlamaQuantize``,
``manifest/layer.go``): with the uploaded blob that is three times the model at the
peak, on the disk that holds the server's store. ``--direct`` needs the model once.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dslocal.errors import DiskError
from dslocal.units import format_bytes

REWRITE_COPIES = 2  # the COPY output and NewLayer's hashing copy, beside the uploaded blob


def disk_free(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


@dataclass(frozen=True)
class DiskPlan:
    model_bytes: int
    download_bytes: int  # still to fetch
    merged_copy_bytes: int  # the merged blob beside shards that stay (kept, or the user's own files)
    server_rewrite_bytes: int  # the server's transient copies, when its store is on this disk
    remote_server_bytes: int  # what a server with its own store needs there (3x the model from v0.30)
    free_bytes: int
    layout: str
    delete_shards: bool
    download_dir: str
    store: str
    server_version: str | None

    @property
    def needed_bytes(self) -> int:
        return self.download_bytes + self.merged_copy_bytes + self.server_rewrite_bytes

    def message(self) -> str:
        text = f"needs {format_bytes(self.needed_bytes)} free, you have {format_bytes(self.free_bytes)}"
        version = self.server_version or ">= 0.30"
        if self.server_rewrite_bytes:
            text += (f" (Ollama {version} rewrites every import through two temporary copies: 3x the model at "
                     "the peak; --direct needs 1x)")
        if self.remote_server_bytes:
            text += (f"; the Ollama server keeps its models elsewhere and needs "
                     f"{format_bytes(self.remote_server_bytes)} free there")
        return text

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "needed_bytes": self.needed_bytes}

    def check(self, label: str) -> None:
        if self.needed_bytes > self.free_bytes:
            raise DiskError(f"pulling {label} {self.message()}",
                            "free some space, or pass --direct to need only the model's size")


def plan_disk(model_bytes: int, *, fetched: bool, delete_shards: bool, blob_done: bool, create_done: bool,
              rewrites: bool, shared_store: bool, direct: bool, free_bytes: int, **where: Any) -> DiskPlan:
    """What is still to be written, given the steps the journal has."""
    server_copies = rewrites and not direct and not create_done
    return DiskPlan(
        model_bytes=model_bytes,
        download_bytes=0 if (fetched or blob_done) else model_bytes,
        merged_copy_bytes=0 if (delete_shards or blob_done) else model_bytes,
        server_rewrite_bytes=REWRITE_COPIES * model_bytes if (server_copies and shared_store) else 0,
        remote_server_bytes=(REWRITE_COPIES + 1) * model_bytes if (server_copies and not shared_store) else 0,
        free_bytes=free_bytes,
        delete_shards=delete_shards,
        **where,
    )
