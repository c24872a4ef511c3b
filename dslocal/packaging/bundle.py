"""Write a folder of launcher files whole: built beside the target, then swapped in by renames."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def write_tree(target: Path, files: dict[str, tuple[str, int]]) -> Path:
    """Make ``target`` a folder holding exactly ``files`` (relative path -> (text, mode)).

    The new folder is complete before it replaces an old one, so a crash leaves the old launcher or the
    new one, never a mix (and at worst a hidden temporary folder beside it).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        for relative, (text, mode) in files.items():
            path = fresh / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            os.chmod(path, mode)
        os.chmod(fresh, 0o755)
        old = None
        if target.exists():
            old = target.parent / f"{fresh.name}.old"
            os.replace(target, old)
        os.replace(fresh, target)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
