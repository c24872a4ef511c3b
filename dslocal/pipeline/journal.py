"""The per-pull journal: which steps finished, so a rerun after a crash continues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dslocal.fsutil import atomic_write_bytes, remove_stale_temps

JOURNAL_VERSION = 1


class Journal:
    def __init__(self, path: Path, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key
        self.steps: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == JOURNAL_VERSION and data.get("key") == key:
                self.steps = data.get("steps", {})
        except (OSError, ValueError):
            pass

    def done(self, step: str) -> Any:
        return self.steps.get(step)

    def record(self, step: str, value: Any = True) -> None:
        self.steps[step] = value
        self._write()

    def forget(self, *steps: str) -> None:
        """Undo steps whose work is gone (a pruned blob, deleted shards), so the rerun does them again."""
        if any(step in self.steps for step in steps):
            for step in steps:
                self.steps.pop(step, None)
            self._write()

    def _write(self) -> None:
        atomic_write_bytes(
            self.path, json.dumps({"version": JOURNAL_VERSION, "key": self.key, "steps": self.steps}, indent=1).encode()
        )

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
        remove_stale_temps(self.path)
