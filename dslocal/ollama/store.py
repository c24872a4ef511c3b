"""Ollama's model store on disk (``OLLAMA_MODELS``): blobs and manifests, in the layout ``ollama pull`` writes.

Used for the least-disk paths: writing a merged GGUF straight into ``blobs/`` so that
create finds it and copies nothing, and ``--direct``, which writes the blobs and the
manifest itself when even the server's own copy would not fit.

What is written follows Ollama v0.32.15's own writer (``server/create.go``,
``manifest/manifest.go``, ``types/model/config.go``): manifests at
``manifests/HOST/NAMESPACE/MODEL/TAG`` for every registry host (``hf.co/...`` too), JSON
as Go's ``json.Encoder`` writes it (compact, ``<>&`` escaped, a trailing newline), the
layers in the server's order (model, template, system, license, params, messages), a
``ConfigV2`` config without ``rootfs`` whose ``model_type`` is the parameter count as
Ollama shows it, and files that the server's own service user can read (0644, folders
0755).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslocal.fsutil import atomic_write_bytes, fsync_dir
from dslocal.ollama.names import ModelName, check_name, parse_name

FILE_MODE = 0o644
DIR_MODE = 0o755
MEDIA = {
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "system": "application/vnd.ollama.image.system",
    "license": "application/vnd.ollama.image.license",
    "params": "application/vnd.ollama.image.params",
    "messages": "application/vnd.ollama.image.messages",
}
MANIFEST_MEDIA = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA = "application/vnd.docker.container.image.v1+json"


def go_json(obj: Any) -> bytes:
    """``json.NewEncoder(w).Encode(obj)``: compact, HTML-safe escapes, a trailing newline."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return (text + "\n").encode("utf-8")


def human_number(n: int) -> str:
    """Ollama's ``format.HumanNumber`` (``format/format.go``): 671B, 7.6B, 1.50M, 15K, 999."""
    if n >= 10**9:
        value = n / 10**9
        return f"{value:.0f}B" if value == int(value) else f"{value:.1f}B"
    if n >= 10**6:
        value = n / 10**6
        return f"{value:.0f}M" if value == int(value) else f"{value:.2f}M"
    if n >= 10**3:
        return f"{n / 10**3:.0f}K"
    return str(n)


def split_name(model: str) -> tuple[str, str]:
    name, _, tag = model.partition(":")
    return name, tag or "latest"


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def work(self) -> Path:
        """dslocal's own work folder inside the store: same filesystem, so renames into blobs/ are atomic."""
        return self.root / "dslocal-work"

    def blob_path(self, digest: str) -> Path:
        return self.blobs / digest.replace(":", "-")

    def manifest_path(self, model: str) -> Path:
        return check_name(model).manifest_path(self.root)

    def _manifest_files(self) -> Iterator[tuple[ModelName, Path]]:
        base = self.root / "manifests"
        for path in base.glob("*/*/*/*"):  # every registry host, as Ollama's manifest.Manifests() globs
            if path.is_file():
                yield ModelName(*path.relative_to(base).parts), path

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Every parseable manifest in the store, by the name Ollama shows (``DisplayShortest``)."""
        out = {}
        for name, path in self._manifest_files():
            try:
                out[name.shortest()] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return out

    def referenced(self) -> set[str]:
        """Digests that any manifest names, whatever its host; an unreadable manifest references everything."""
        digests = set()
        for _, path in self._manifest_files():
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
                digests.add(manifest.get("config", {}).get("digest", ""))
                digests.update(layer.get("digest", "") for layer in manifest.get("layers", []))
            except (OSError, ValueError, AttributeError):
                # Ollama then skips pruning altogether; dslocal must not delete blobs either.
                return {p.name.replace("-", ":", 1) for p in self.blobs.glob("sha256-*")}
        return digests

    def find_manifest(self, model: str) -> Path | None:
        """The manifest Ollama would use for ``model``: matched case-insensitively, as ``getExistingName`` does."""
        wanted = parse_name(model)
        exact = wanted.manifest_path(self.root) if wanted.valid else None
        if exact is not None and exact.is_file():
            return exact
        for name, path in self._manifest_files():
            if name.same(wanted):
                return path
        return None

    def serves_blobs(self, probe: Any) -> bool:
        """Whether a server reads this store: ``probe(digest)`` (``HEAD /api/blobs``) sees a blob written here.

        The answer comes from the server itself, never from its address: a server on
        0.0.0.0 or a LAN address may use this very folder.
        """
        token = f"dslocal store probe {uuid.uuid4()}\n".encode()
        digest = "sha256:" + hashlib.sha256(token).hexdigest()
        path = self.blob_path(digest)
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, token, perms=FILE_MODE)
        except OSError:
            return False
        try:
            return bool(probe(digest))
        finally:
            path.unlink(missing_ok=True)

    def adopt(self, path: Path, digest: str) -> Path:
        """Rename a finished file into ``blobs/`` under its digest (same filesystem), readable by the server."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        os.chmod(path, FILE_MODE)
        target = self.blob_path(digest)
        os.replace(path, target)
        fsync_dir(self.blobs)
        return target

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_path(digest).exists():
            self.blobs.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.blob_path(digest), data, perms=FILE_MODE)
        return digest, len(data)

    def _layer(self, kind: str, data: bytes) -> dict[str, Any]:
        digest, size = self.put_bytes(data)
        return {"mediaType": MEDIA[kind], "digest": digest, "size": size}

    def write_manifest(self, model: str, model_digest: str, model_size: int, *, family: str, file_type: str,
                       parameter_count: int, template: str | None, system: str | None,
                       parameters: dict[str, Any] | None) -> str:
        """Write the config blob, the text layers and the manifest, as Ollama's create lays them out."""
        path = self.manifest_path(model)
        layers = [{"mediaType": MEDIA["model"], "digest": model_digest, "size": model_size}]
        if template:
            layers.append(self._layer("template", template.encode("utf-8")))
        if system:
            layers.append(self._layer("system", system.encode("utf-8")))
        if parameters:
            layers.append(self._layer("params", go_json(dict(sorted(parameters.items())))))
        config = {"model_format": "gguf", "model_family": family, "model_families": [family],
                  "model_type": human_number(parameter_count), "file_type": file_type,
                  "architecture": "amd64", "os": "linux"}
        config_digest, config_size = self.put_bytes(go_json(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA,
            "config": {"mediaType": CONFIG_MEDIA, "digest": config_digest, "size": config_size},
            "layers": layers,
        }
        data = go_json(manifest)
        _make_dirs(path.parent, self.root)
        atomic_write_bytes(path, data, perms=FILE_MODE)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def model_layer(self, model: str) -> str | None:
        path = self.find_manifest(model)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            return None
        for layer in manifest.get("layers", []):
            if layer.get("mediaType") == MEDIA["model"]:
                return str(layer["digest"])
        return None


def _make_dirs(folder: Path, root: Path) -> None:
    """``os.MkdirAll(dir, 0o755)``, with the mode set even under a strict umask."""
    missing = []
    while not folder.exists() and folder != root:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)
        os.chmod(path, DIR_MODE)
