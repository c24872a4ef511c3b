"""Repositories of random files for the downloader's tests against the hub double."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

REPO = "unsloth/Test-R1-GGUF"


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_repo(root: Path, files: dict[str, int], seed: int, readme: bool = True) -> Path:
    """``root/hub/REPO`` holding ``files`` (path -> size) of seeded random bytes; returns ``root/hub``."""
    repo = root / "hub" / REPO
    rng = random.Random(seed)
    for name, size in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(rng.randbytes(size))
    if readme:
        (repo / "README.md").write_text("# test\n")
    return root / "hub"
