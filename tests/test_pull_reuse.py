"""A pull that finds its work gone (newcomer trial A2) and a pull under a corrected name (A9)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hubdouble import run_hub
from ollama_double import run_ollama
from test_pull import MODEL, env, hub_root, model_bytes  # noqa: F401 - module-scoped fixtures

from dslocal.config import load_settings
from dslocal.hardware.presets import load_profile
from dslocal.ollama.client import OllamaClient, file_digest
from dslocal.ollama.store import Store
from dslocal.pipeline import PullRequest, pull
from dslocal.sources.listing import RemoteFile

pytest.importorskip("llama_cpp")

PROFILE = "cpu-only-64gb"


class Stop(Exception):
    """Stands for Ctrl-C, a crash or a refused create: the pull stops at a step."""


def stop_at(task: str):
    def sink(event):
        if event.task == task:
            raise Stop(task)

    return sink


def stopped_before_create(name: str | None = None, **request) -> str:
    """Run a pull that stops once the blob is recorded; returns the blob's digest."""
    with pytest.raises(Stop):
        pull(PullRequest(model=MODEL, name=name, smoke_test=False, **request), load_settings(), load_profile(PROFILE),
             progress=stop_at("step:create"))
    store = Store(Path(os.environ["OLLAMA_MODELS"]))
    blob = max(store.blobs.glob("sha256-*"), key=lambda p: p.stat().st_size)
    return blob.name.replace("-", ":", 1)


def damage(store: Path, digest: str, how: str) -> None:
    path = Store(store).blob_path(digest)
    if how == "truncated":
        os.truncate(path, path.stat().st_size // 2)
    elif how == "flipped":  # same size, same header: only the sha256 tells
        with open(path, "r+b") as handle:
            handle.seek(path.stat().st_size - 100)
            byte = handle.read(1)
            handle.seek(-1, 1)
            handle.write(bytes([byte[0] ^ 0xFF]))
    elif how == "not-gguf":
        with open(path, "r+b") as handle:
            handle.write(b"<htm")


def test_a_blob_ollama_pruned_is_merged_again_not_an_index_error(env, hub_root):  # noqa: F811
    """A2: the create was interrupted, then Ollama restarted and pruned the unreferenced blob."""
    with run_hub(hub_root) as hub:
        with run_ollama(env.store, "0.32.15") as ollama:
            env(hub.url, ollama.url)
            digest = stopped_before_create()
        old = time.time() - 2 * 3600  # past the server's 1 h grace
        os.utime(Store(env.store).blob_path(digest), (old, old))
        with run_ollama(env.store, "0.32.15") as ollama:
            assert ollama.pruned == [digest.replace(":", "-")], "the restart removed the blob, as Ollama does"
            env(hub.url, ollama.url)
            dry = pull(PullRequest(model=MODEL, dry_run=True), load_settings(), load_profile(PROFILE))
            assert dry.disk_plan["download_bytes"] == model_bytes(hub_root), "the dry run knows it downloads again"
            notes = []
            result = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE),
                          notify=notes.append)
            assert result.digest == digest and "merge" in result.steps and "download" in result.steps
            said = [n for n in notes if "downloading and merging it again" in n]
            assert len(said) == 1 and "is gone" in said[0] and "\n" not in said[0], notes
            assert result.name in [m["name"] for m in OllamaClient(ollama.url).tags()]
            assert file_digest(Store(env.store).blob_path(digest)) == digest


@pytest.mark.parametrize("how, why", [("truncated", "bytes instead of"), ("flipped", "sha256"),
                                      ("not-gguf", "not a usable GGUF")])
def test_a_damaged_blob_is_noticed_and_made_again(env, hub_root, how, why):  # noqa: F811
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        digest = stopped_before_create()
        damage(env.store, digest, how)
        notes = []
        result = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile(PROFILE),
                      notify=notes.append)
        assert [n for n in notes if "downloading and merging it again" in n and why in n], notes
        assert result.digest == digest and "merge" in result.steps
        assert file_digest(Store(env.store).blob_path(digest)) == digest, "the damaged blob was replaced"


def test_kept_shards_are_not_downloaded_again_when_the_blob_is_gone(env, hub_root):  # noqa: F811
    """A2's 'resume what can be resumed': the verified shards are still there, only the merge is redone."""
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        digest = stopped_before_create(keep_shards=True)
        Store(env.store).blob_path(digest).unlink()
        served = hub.stats.body_bytes
        result = pull(PullRequest(model=MODEL, smoke_test=False, keep_shards=True), load_settings(),
                      load_profile(PROFILE))
        assert result.digest == digest and "merge" in result.steps
        assert hub.stats.body_bytes - served < model_bytes(hub_root) / 2, "only headers were read, no shard again"


def test_a_corrected_name_reuses_the_merged_blob(env, hub_root):  # noqa: F811
    """A9: the first pull stopped before create (a refused name, Ctrl-C); the rerun under another name
    downloads and merges nothing."""
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        digest = stopped_before_create(name="first-try")
        served = hub.stats.body_bytes
        notes = []
        result = pull(PullRequest(model=MODEL, name="r1-test", smoke_test=False), load_settings(),
                      load_profile(PROFILE), notify=notes.append)
        assert result.name == "r1-test:latest" and result.digest == digest
        assert "download" not in result.steps and "merge" not in result.steps and "blob" in result.resumed
        assert hub.stats.body_bytes - served < model_bytes(hub_root) / 2
        assert any(n.startswith("reusing sha256:") and "first-try" in n for n in notes), notes
        assert result.disk_plan["download_bytes"] == 0
        assert "r1-test:latest" in [m["name"] for m in OllamaClient(ollama.url).tags()]


def test_a_second_name_for_a_pulled_model_needs_no_download(env, hub_root):  # noqa: F811
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        first = pull(PullRequest(model=MODEL, name="one", smoke_test=False), load_settings(), load_profile(PROFILE))
        served = hub.stats.body_bytes
        second = pull(PullRequest(model=MODEL, name="two", smoke_test=False), load_settings(), load_profile(PROFILE))
        assert "download" not in second.steps and "merge" not in second.steps
        assert hub.stats.body_bytes - served < model_bytes(hub_root) / 2
        store = Store(env.store)
        assert store.model_layer("one") == store.model_layer("two") == first.digest


def test_the_source_key_is_the_files_not_the_name():
    from dslocal.pipeline.reuse import source_key

    a = RemoteFile("Q8_0/m-00001-of-00002.gguf", 10, "aa" * 32, "http://x/1")
    b = RemoteFile("Q8_0/m-00002-of-00002.gguf", 20, "bb" * 32, "http://x/2")
    changed = RemoteFile(b.path, b.size, "cc" * 32, b.url)
    assert source_key("ollama", [a, b], ()) == source_key("ollama", [a, b], ())
    assert source_key("ollama", [a, b], ()) != source_key("ollama", [a, changed], ()), "a new commit's bytes"
    assert source_key("ollama", [a, b], ()) != source_key("llama.cpp", [a, b], ()), "another layout, another blob"
