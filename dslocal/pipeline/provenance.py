"""Where each model dslocal put into Ollama came from (shown by ``dslocal ls``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dslocal.config import Settings
from dslocal.fsutil import atomic_write_bytes
from dslocal.pipeline.request import default_name


def provenance_path(settings: Settings, name: str) -> Path:
    return settings.paths.data_dir / "provenance" / f"{default_name(name)}.json"


def record_provenance(settings: Settings, name: str, data: dict[str, Any]) -> None:
    atomic_write_bytes(provenance_path(settings, name), json.dumps({"name": name, **data}, indent=1).encode())


def read_provenance(settings: Settings, name: str) -> dict[str, Any] | None:
    try:
        return json.loads(provenance_path(settings, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
