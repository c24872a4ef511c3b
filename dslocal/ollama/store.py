"""Ollama's model store on disk (``OLLAMA_MODELS``): blobs and manifests, in the layout ``ollama pull`` writes.

Used for the least-disk paths: writing a merged GGUF straight into ``blobs/`` so that
create finds it and copies nothing, and ``--direct``, which writes the blobs and the
manifest itself when even the server's own copy would not fit.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dslocal.fsutil import atomic_write_bytes, fsync_dir

REGISTRY = "registry.ollama.ai"
MEDIA = {
    "model": "application/vnd.ollama.image.model",
    "template": "application/vnd.ollama.image.template",
    "params": "application/vnd.ollama.image.params",
    "system": "application/vnd.ollama.image.system",
    "license": "application/vnd.ollama.image.license",
}


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
        name, tag = split_name(model)
        namespace, _, repo = name.rpartition("/")
        return self.root / "manifests" / REGISTRY / (namespace or "library") / repo / tag

    def manifests(self) -> dict[str, dict[str, Any]]:
        out = {}
        base = self.root / "manifests" / REGISTRY
        for path in base.glob("*/*/*"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            namespace, repo, tag = path.relative_to(base).parts
            name = repo if namespace == "library" else f"{namespace}/{repo}"
            out[f"{name}:{tag}"] = data
        return out

    def referenced(self) -> set[str]:
        digests = set()
        for manifest in self.manifests().values():
            digests.add(manifest.get("config", {}).get("digest", ""))
            digests.update(layer.get("digest", "") for layer in manifest.get("layers", []))
        return digests

    def adopt(self, path: Path, digest: str) -> Path:
        """Rename a finished file into ``blobs/`` under its digest (same filesystem)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        target = self.blob_path(digest)
        os.replace(path, target)
        fsync_dir(self.blobs)
        return target

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.blob_path(digest).exists():
            self.blobs.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.blob_path(digest), data)
        return digest, len(data)

    def write_manifest(self, model: str, model_digest: str, model_size: int, *, family: str, file_type: str,
                       template: str | None, system: str | None, parameters: dict[str, Any] | None) -> str:
        """Write the config blob, the text layers and the manifest, as ``ollama pull`` lays them out."""
        layers = [{"mediaType": MEDIA["model"], "digest": model_digest, "size": model_size}]
        for kind, text in (("template", template), ("system", system)):
            if text:
                digest, size = self.put_bytes(text.encode("utf-8"))
                layers.append({"mediaType": MEDIA[kind], "digest": digest, "size": size})
        if parameters:
            digest, size = self.put_bytes(json.dumps(parameters, sort_keys=True).encode())
            layers.append({"mediaType": MEDIA["params"], "digest": digest, "size": size})
        config = {"model_format": "gguf", "model_family": family, "model_families": [family], "file_type": file_type,
                  "model_type": "", "architecture": "amd64", "os": "linux",
                  "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]}}
        config_digest, config_size = self.put_bytes(json.dumps(config, sort_keys=True).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest,
                       "size": config_size},
            "layers": layers,
        }
        data = json.dumps(manifest).encode()
        atomic_write_bytes(self.manifest_path(model), data)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    def model_layer(self, model: str) -> str | None:
        try:
            manifest = json.loads(self.manifest_path(model).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        for layer in manifest.get("layers", []):
            if layer.get("mediaType") == MEDIA["model"]:
                return str(layer["digest"])
        return None
