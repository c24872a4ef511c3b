"""dslocal's view of Ollama's store: references across registry hosts, the shared-store probe, --direct's writer."""

from __future__ import annotations

import json
import stat

from dslocal.ollama.store import Store, go_json, human_number
from dslocal.pipeline.disk import plan_disk


def write_manifest(root, rel: str, digests: list[str]) -> None:
    path = root / "manifests" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": {"digest": digests[0]}, "layers": [{"digest": d} for d in digests[1:]]}))


def test_references_are_seen_for_every_registry_host(tmp_path):
    store = Store(tmp_path)
    write_manifest(tmp_path, "registry.ollama.ai/library/r1/latest", ["sha256:" + "a" * 64, "sha256:" + "b" * 64])
    write_manifest(tmp_path, "hf.co/unsloth/DeepSeek-R1-GGUF/Q2", ["sha256:" + "c" * 64, "sha256:" + "d" * 64])
    assert {"sha256:" + "b" * 64, "sha256:" + "d" * 64} <= store.referenced()
    assert set(store.manifests()) == {"r1:latest", "hf.co/unsloth/DeepSeek-R1-GGUF:Q2"}


def test_an_unreadable_manifest_protects_every_blob(tmp_path):
    store = Store(tmp_path)
    store.blobs.mkdir(parents=True)
    blob = store.blobs / ("sha256-" + "e" * 64)
    blob.write_bytes(b"x")
    (tmp_path / "manifests/registry.ollama.ai/library/broken").mkdir(parents=True)
    (tmp_path / "manifests/registry.ollama.ai/library/broken/latest").write_text("{not json")
    assert "sha256:" + "e" * 64 in store.referenced()  # Ollama then skips pruning; so does dslocal


def test_names_are_found_case_insensitively(tmp_path):
    store = Store(tmp_path)
    write_manifest(tmp_path, "registry.ollama.ai/library/DeepSeek/Latest", ["sha256:" + "a" * 64])
    assert store.find_manifest("deepseek") == tmp_path / "manifests/registry.ollama.ai/library/DeepSeek/Latest"
    assert store.find_manifest("other") is None


def test_the_shared_store_probe_asks_the_server_and_cleans_up(tmp_path):
    store = Store(tmp_path)
    seen = []

    def head(digest: str) -> bool:
        seen.append(digest)
        return store.blob_path(digest).exists()  # what a server reading this folder answers

    assert store.serves_blobs(head) is True
    assert store.serves_blobs(lambda digest: False) is False
    assert len(seen) == 1 and not list(store.blobs.iterdir())


def test_go_json_and_human_number_follow_ollama():
    assert go_json({"a": "<&>", "b": [1, 2]}) == b'{"a":"\\u003c\\u0026\\u003e","b":[1,2]}\n'
    assert [human_number(n) for n in (999, 1_500, 1_500_000, 2_000_000, 7_615_616_512, 671_000_000_000)] == \
        ["999", "2K", "1.50M", "2M", "7.6B", "671B"]


def test_direct_manifest_is_what_the_server_writes(tmp_path):
    store = Store(tmp_path)
    digest, size = store.put_bytes(b"GGUF-model-bytes")
    store.write_manifest("team/r1:q2", digest, size, family="deepseek2", file_type="Q8_0",
                         parameter_count=671_000_000_000, template="{{ .Prompt }}", system="be brief",
                         parameters={"stop": ["<x>"], "num_ctx": 4096})
    path = tmp_path / "manifests/registry.ollama.ai/team/r1/q2"
    raw = path.read_bytes()
    manifest = json.loads(raw)
    assert raw.endswith(b"}\n") and b": " not in raw
    media = [layer["mediaType"].rsplit(".", 1)[-1] for layer in manifest["layers"]]
    assert media == ["model", "template", "system", "params"]
    config = json.loads(store.blob_path(manifest["config"]["digest"]).read_bytes())
    assert list(config) == ["model_format", "model_family", "model_families", "model_type", "file_type",
                            "architecture", "os"]
    assert config["model_type"] == "671B" and "rootfs" not in config
    for file in [path, *store.blobs.iterdir()]:
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755


def test_disk_plan_counts_the_servers_two_temporary_copies():
    common = dict(fetched=False, delete_shards=True, blob_done=False, create_done=False, free_bytes=10**12,
                  layout="ollama", download_dir="d", store="s", server_version="0.32.15")
    new = plan_disk(100, rewrites=True, shared_store=True, direct=False, **common)
    assert new.needed_bytes == 300  # the download (merged in place), then llama-quantize's copy and NewLayer's
    assert "3x the model" in new.message()
    assert plan_disk(100, rewrites=True, shared_store=True, direct=True, **common).needed_bytes == 100
    assert plan_disk(100, rewrites=False, shared_store=True, direct=False, **common).needed_bytes == 100
    remote = plan_disk(100, rewrites=True, shared_store=False, direct=False, **common)
    assert remote.needed_bytes == 100 and remote.remote_server_bytes == 300
    kept = plan_disk(100, rewrites=True, shared_store=True, direct=False, **{**common, "delete_shards": False})
    assert kept.needed_bytes == 400
