"""Which GGUF an engine loads for what the user typed: a path, an Ollama model, or a catalog id.

* a GGUF file or a folder of shards: as it is (a split set is loaded by its first shard, unmerged);
* an Ollama model (``r1``, ``deepseek-r1:7b``): the model layer's blob in Ollama's store, which is a
  complete GGUF;
* a catalog id: the Ollama model dslocal pulled for it, else its files downloaded into the models folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dslocal.catalog.catalog import Variant, load_catalog
from dslocal.config import Settings
from dslocal.errors import InputError, NotFoundError
from dslocal.gguf_tools.shards import discover_local
from dslocal.ollama.names import check_name
from dslocal.ollama.store import Store


@dataclass(frozen=True)
class ModelFiles:
    files: tuple[Path, ...]
    alias: str  # the model id the server lists
    variant: Variant | None
    origin: str  # "file", "ollama", "download"

    @property
    def first(self) -> Path:
        return self.files[0]


def _local(path: Path) -> tuple[Path, ...]:
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not ggufs:
            raise InputError(f"{path} holds no .gguf file", "point at a GGUF file or a folder of shards")
        return tuple(discover_local(ggufs[0]))
    return tuple(discover_local(path))


def _ollama_blob(settings: Settings, name: str) -> Path | None:
    try:
        check_name(name)
    except Exception:  # noqa: BLE001 - not an Ollama name at all
        return None
    store = Store(Path(str(settings["ollama_models"])))
    digest = store.model_layer(name)
    if digest is None:
        return None
    blob = store.blob_path(digest)
    return blob if blob.is_file() else None


def _downloaded(settings: Settings, variant: Variant) -> tuple[Path, ...] | None:
    folder = settings.models_dir / variant.hf_repo
    if not variant.files:
        return None
    paths = tuple(folder / p for p in variant.paths)
    return paths if all(p.is_file() for p in paths) else None


def _pulled_name(settings: Settings, variant: Variant) -> str | None:
    from dslocal.pipeline import read_provenance

    for name in (*variant.aliases, variant.id):
        origin = read_provenance(settings, f"{name}:latest") or read_provenance(settings, name)
        if origin and origin.get("model") in (variant.id, *variant.aliases):
            return name
    return None


def resolve_model(settings: Settings, text: str) -> ModelFiles:
    path = Path(text).expanduser()
    if path.exists():
        files = _local(path)
        return ModelFiles(files, files[0].stem.split("-00001-of-")[0], None, "file")
    catalog = load_catalog()
    variant = catalog.find(text)
    names = [text] if variant is None else [n for n in (_pulled_name(settings, variant), *variant.aliases, variant.id) if n]
    for name in names:
        blob = _ollama_blob(settings, name)
        if blob is not None:
            return ModelFiles((blob,), name.split(":")[0], variant, "ollama")
    if variant is not None:
        files = _downloaded(settings, variant)
        if files:
            return ModelFiles(files, variant.aliases[0] if variant.aliases else variant.id, variant, "download")
        raise NotFoundError(f"{variant.id} is not on this machine yet",
                            f"get it with 'dslocal pull {variant.id}' (or 'dslocal download {variant.id}')")
    raise NotFoundError(f"{text!r} is not a GGUF file, an Ollama model or a catalog id",
                        "give a .gguf path, a name from 'dslocal ls', or an id from 'dslocal list'")
