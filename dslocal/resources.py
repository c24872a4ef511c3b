"""Data shipped inside the wheel (``modelfiles/``, ``quant_recipes/``, ``packaging/``), read with importlib.resources.

In a built wheel the folders live at ``dslocal/_data/<folder>``. In a source checkout
(editable install, tests run from the repo) they are the repository's top-level
folders of the same name.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from dslocal.errors import NotFoundError

if TYPE_CHECKING:  # importlib.resources.abc is 3.11+
    from importlib.resources.abc import Traversable

DATA_FOLDERS = ("modelfiles", "quant_recipes", "packaging")  # packaging/: the launchers' templates


def data_folder(folder: str) -> Traversable:
    if folder not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {folder!r}")
    packaged = resources.files("dslocal") / "_data" / folder
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / folder
    if checkout.is_dir():
        return checkout
    raise NotFoundError(
        f"dslocal's packaged data folder {folder!r} is missing",
        "reinstall dslocal: pip install --force-reinstall dslocal",
    )


def list_data(folder: str) -> list[str]:
    return sorted(entry.name for entry in data_folder(folder).iterdir() if entry.is_file())


def read_data(folder: str, name: str) -> str:
    entry = data_folder(folder) / name
    if not entry.is_file():
        raise NotFoundError(
            f"no packaged file {name!r} in {folder}",
            f"available: {', '.join(list_data(folder)) or 'none'}",
        )
    return entry.read_text(encoding="utf-8")
