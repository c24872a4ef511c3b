"""Names, re-create, delete and prune as the real server handles them (audit findings 9 and 12)."""

from __future__ import annotations

import json
import os
import time

import requests
from contract.api import MT_PARAMS, blob_names, create, digest_of, import_files, layer, manifest, manifest_path, upload

HOUR = 3600


def test_names_are_matched_case_insensitively_and_keep_their_stored_case(ollama, models):
    server = ollama()
    import_files(server.url, "DeepSeek", models["single"])
    assert manifest_path(server.models_dir, "DeepSeek").is_file()
    shown = requests.post(f"{server.url}/api/show", json={"model": "deepseek"})
    assert shown.status_code == 200
    # Re-creating under another case writes the stored name, not a second model.
    import_files(server.url, "DEEPSEEK", models["single"], parameters={"num_ctx": 1024})
    names = [m["name"] for m in requests.get(f"{server.url}/api/tags").json()["models"]]
    assert names == ["DeepSeek:latest"]


def test_show_and_delete_of_a_missing_model(ollama):
    server = ollama()
    r = requests.post(f"{server.url}/api/show", json={"model": "ghost"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'ghost:latest' not found"})
    r = requests.delete(f"{server.url}/api/delete", json={"model": "ghost"})
    assert (r.status_code, r.json()) == (404, {"error": "model 'ghost' not found"})
    r = requests.delete(f"{server.url}/api/delete", json={"model": "team.x/r1"})
    assert (r.status_code, r.json()) == (400, {"error": 'name "team.x/r1" is invalid'})


def test_recreate_removes_the_old_versions_unused_layers(ollama, models):
    server = ollama()
    import_files(server.url, "r1", models["single"], parameters={"num_ctx": 1024})
    old = manifest(server.models_dir, "r1")
    old_params = layer(old, MT_PARAMS)["digest"]
    import_files(server.url, "r1", models["single"], parameters={"num_ctx": 2048})
    new = manifest(server.models_dir, "r1")
    assert layer(new, MT_PARAMS)["digest"] != old_params
    names = blob_names(server.models_dir)
    assert "sha256-" + old_params[7:] not in names, "the old params blob went at once"
    assert "sha256-" + layer(new, MT_PARAMS)["digest"][7:] in names


def test_recreate_keeps_old_layers_with_noprune(ollama, models):
    server = ollama(OLLAMA_NOPRUNE="1")
    import_files(server.url, "r1", models["single"], parameters={"num_ctx": 1024})
    old_params = layer(manifest(server.models_dir, "r1"), MT_PARAMS)["digest"]
    import_files(server.url, "r1", models["single"], parameters={"num_ctx": 2048})
    assert "sha256-" + old_params[7:] in blob_names(server.models_dir)


def test_delete_removes_unshared_blobs_at_once_and_keeps_shared_ones(ollama, models):
    server = ollama(OLLAMA_NOPRUNE="1")  # RemoveLayers on delete ignores NOPRUNE
    import_files(server.url, "a", models["single"])
    import_files(server.url, "b", models["single"], parameters={"num_ctx": 1024})
    model = layer(manifest(server.models_dir, "a"), "application/vnd.ollama.image.model")["digest"]
    b_params = layer(manifest(server.models_dir, "b"), MT_PARAMS)["digest"]
    assert requests.delete(f"{server.url}/api/delete", json={"model": "b"}).status_code == 200
    names = blob_names(server.models_dir)
    assert "sha256-" + b_params[7:] not in names
    assert "sha256-" + model[7:] in names, "still used by a"
    assert requests.delete(f"{server.url}/api/delete", json={"model": "a"}).status_code == 200
    assert "sha256-" + model[7:] not in blob_names(server.models_dir)


def _age(path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_prune_at_start_spares_young_blobs_and_removes_old_junk(ollama, models, tmp_path):
    server = ollama()
    (path,) = models["single"]
    assert upload(server.url, path).status_code == 201
    orphan = server.models_dir / "blobs" / ("sha256-" + digest_of(path)[7:])
    junk = server.models_dir / "blobs" / "sha256-123456789"
    junk.write_bytes(b"a temp file a crash left")
    server.restart()
    assert orphan.exists() and junk.exists(), "a blob younger than an hour is never pruned"
    _age(orphan, 2 * HOUR)
    _age(junk, 2 * HOUR)
    server.restart()
    assert not orphan.exists() and not junk.exists()


def test_a_corrupt_manifest_turns_prune_off(ollama, models):
    server = ollama()
    (path,) = models["single"]
    assert upload(server.url, path).status_code == 201
    orphan = server.models_dir / "blobs" / ("sha256-" + digest_of(path)[7:])
    _age(orphan, 2 * HOUR)
    bad = manifest_path(server.models_dir, "broken")
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    server.restart()
    assert orphan.exists(), "corrupt manifests detected, skipping prune"
    bad.unlink()
    server.restart()
    assert not orphan.exists()


def test_references_from_every_registry_host_protect_blobs(ollama, models):
    server = ollama()
    (path,) = models["single"]
    assert upload(server.url, path).status_code == 201
    digest = digest_of(path)
    blob = server.models_dir / "blobs" / ("sha256-" + digest[7:])
    config = json.dumps({"model_format": "gguf", "model_family": "deepseek2", "model_families": ["deepseek2"],
                         "model_type": "", "file_type": "", "architecture": "amd64", "os": "linux"}).encode()
    config_digest = "sha256:" + __import__("hashlib").sha256(config).hexdigest()
    (server.models_dir / "blobs" / ("sha256-" + config_digest[7:])).write_bytes(config)
    hf = server.models_dir / "manifests" / "hf.co" / "unsloth" / "DeepSeek-R1-GGUF" / "Q2"
    hf.parent.mkdir(parents=True)
    hf.write_text(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                              "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                         "digest": config_digest, "size": len(config)},
                              "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest,
                                          "size": path.stat().st_size}]}))
    _age(blob, 2 * HOUR)
    server.restart()
    assert blob.exists()
    names = [m["name"] for m in requests.get(f"{server.url}/api/tags").json()["models"]]
    assert "hf.co/unsloth/DeepSeek-R1-GGUF:Q2" in names
    status, _, lines = create(server.url, {"model": "hf.co/x", "files": {"x.gguf": digest}})
    assert (status, lines) == (400, [{"error": "invalid model name"}]), "a namespace may not hold '.'"
