"""Remote inspect over HTTP Range against a real loopback server: a few bytes, not the model."""

from __future__ import annotations

import json
import os

import pytest
from fileserver import serve_folder
from hubdouble import run_hub

from dslocal.errors import NotFoundError
from dslocal.gguf_tools.header import GGUFFormatError
from dslocal.gguf_tools.inspect import inspect_set
from dslocal.gguf_tools.remote import HeaderCache
from dslocal.gguf_tools.shards import open_local_set
from dslocal.gguf_tools.targets import open_target, parse_target
from dslocal.testing.ggufgen import ModelSpec, write_model


@pytest.fixture(scope="module")
def big_set(tmp_path_factory):
    """A ~200 MB split deepseek2 set: big enough that reading it whole would show."""
    folder = tmp_path_factory.mktemp("remote") / "DeepSeek-R1-Test"
    folder.mkdir()
    spec = ModelSpec.deepseek2("legacy", n_embd=512, n_layer=6, n_expert=64, n_ff_exp=512, n_head=8)
    files = write_model(folder / "DeepSeek-R1-Test.gguf", spec, dtype="f16", shards=3, fast_fill=True)
    return folder, files


def test_remote_inspect_reads_only_headers(big_set, tmp_path):
    folder, files = big_set
    total = sum(f.stat().st_size for f in files)
    assert total > 150_000_000
    with serve_folder(folder.parent, redirect=True) as (base, state):
        opened = open_target(f"{base}{folder.name}/{files[1].name}", hf_endpoint="https://hf.invalid", cache_dir=tmp_path)
        remote = inspect_set(opened.shard_set)
    local = inspect_set(open_local_set(files[0]))
    assert {k: v for k, v in remote.items() if k != "split"} == {k: v for k, v in local.items() if k != "split"}
    assert remote["split"]["count"] == 3
    assert opened.bytes_read == state.body_bytes_sent
    assert opened.bytes_read < total / 50, f"read {opened.bytes_read:,} of {total:,} bytes"


def test_cache_by_etag_skips_the_header_and_notices_changes(big_set, tmp_path):
    folder, files = big_set
    with serve_folder(folder.parent) as (base, state):
        url = f"{base}{folder.name}/{files[0].name}"
        first = open_target(url, hf_endpoint="https://hf.invalid", cache_dir=tmp_path)
        assert first.bytes_read > 0
        sent = state.body_bytes_sent
        second = open_target(url, hf_endpoint="https://hf.invalid", cache_dir=tmp_path)
        assert second.bytes_read == 0 and state.body_bytes_sent == sent
        assert inspect_set(second.shard_set) == inspect_set(first.shard_set)
        state.etag_salt = "changed upstream"
        third = open_target(url, hf_endpoint="https://hf.invalid", cache_dir=tmp_path)
        assert third.bytes_read > 0


def test_server_that_ignores_range_still_works_but_stops_early(big_set, tmp_path):
    folder, files = big_set
    with serve_folder(folder.parent, ignore_range=True) as (base, state):
        opened = open_target(f"{base}{folder.name}/{files[0].name}", hf_endpoint="https://hf.invalid")
    assert opened.shard_set.tensor_count == open_local_set(files[0]).tensor_count
    assert opened.bytes_read < sum(f.stat().st_size for f in files)


def test_hf_targets_use_the_configured_endpoint(big_set, tmp_path, monkeypatch):
    folder, files = big_set
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value")
    with serve_folder(folder.parent, prefix="/org/repo/resolve/main/") as (base, state):
        endpoint = base.split("/org/")[0]
        opened = open_target(f"hf:org/repo/{folder.name}/{files[2].name}", hf_endpoint=endpoint, cache_dir=tmp_path)
    assert opened.shard_set.is_split and opened.target.hub
    assert all(path.startswith("/org/repo/resolve/main/") for _, path, _ in state.requests)
    assert "hf_secret_token_value" not in json.dumps(inspect_set(opened.shard_set))
    assert not any("hf_secret_token_value" in p.read_text(errors="ignore") for p in tmp_path.glob("*.json"))


def test_parse_target_forms():
    assert parse_target("hf:a/b/c/d.gguf@v1", "https://hf-mirror.com/").location == (
        "https://hf-mirror.com/a/b/resolve/v1/c/d.gguf"
    )
    assert parse_target("hf:a/b/d.gguf", "https://huggingface.co").location.endswith("/a/b/resolve/main/d.gguf")
    assert not parse_target("./x.gguf", "https://huggingface.co").remote
    from dslocal.errors import UsageError

    with pytest.raises(UsageError, match="not a Hugging Face file target") as info:
        parse_target("hf:only/repo", "https://huggingface.co")
    assert "hf:ORG/REPO/PATH" in info.value.hint


def test_remote_errors_are_clear(tmp_path):
    (tmp_path / "pointer.gguf").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n")
    with serve_folder(tmp_path) as (base, _):
        with pytest.raises(NotFoundError, match="404"):
            open_target(f"{base}missing.gguf", hf_endpoint="https://hf.invalid")
        with pytest.raises(GGUFFormatError, match="Git LFS pointer"):
            open_target(f"{base}pointer.gguf", hf_endpoint="https://hf.invalid")


def test_cli_remote_inspect_json(cli, dslocal_home, big_set):
    folder, files = big_set
    with serve_folder(folder.parent) as (base, _):
        result = cli("gguf", "inspect", f"{base}{folder.name}/{files[0].name}", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["architecture"] == "deepseek2" and data["attention"]["layout"] == "legacy"
    assert data["split"]["count"] == 3 and len(data["split"]["files"]) == 3
    assert 0 < data["bytes_read"] < data["file_bytes"] / 50
    assert {"architecture", "tensor_count", "tensor_bytes", "blocks", "split", "bytes_read"} <= set(data)
    assert all(set(b) == {"index", "bytes"} for b in data["blocks"])


def test_header_cache_ignores_corrupt_entries(tmp_path):
    cache = HeaderCache(tmp_path)
    cache.store("http://x/y.gguf", '"e"', 100, b"GGUF")
    meta, _ = cache._paths("http://x/y.gguf")
    meta.write_text("{broken")
    assert cache.load("http://x/y.gguf") is None


@pytest.mark.parametrize("cdn_etag", ["varying", "absent"])
def test_cache_keys_on_the_hubs_x_linked_etag_not_the_cdns_etag(big_set, tmp_path, cdn_etag):
    """The Hub's 302 carries X-Linked-Etag and no ETag; the CDN's ETag changes per answer, or is absent."""
    folder, files = big_set
    root = tmp_path / "hub"
    repo = root / "org" / "repo"
    repo.mkdir(parents=True)
    for shard in files:  # the whole split set, as hard links (the double serves only files inside its folder)
        os.link(shard, repo / shard.name)
    with run_hub(root) as hub:
        hub.cdn_etag = cdn_etag
        target = f"hf:org/repo/{files[0].name}"
        first = open_target(target, hf_endpoint=hub.url, cache_dir=tmp_path / "cache")
        sent = hub.stats.body_bytes
        second = open_target(target, hf_endpoint=hub.url, cache_dir=tmp_path / "cache")
        assert hub.stats.body_bytes == sent
    assert first.bytes_read > 0 and second.bytes_read == 0, "the second look is answered from the cache"
    etags = {json.loads(p.read_text())["etag"] for p in (tmp_path / "cache").glob("*.json")}
    assert etags == {hub.sha256(repo / shard.name) for shard in files}, "the normalised X-Linked-Etag (no quotes)"
