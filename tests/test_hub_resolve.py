"""Hugging Face as it is, against the loopback hub double: one resolve per file at a pinned commit,
ranged reads from the redirect's CDN (another host, no token, ETags that change per answer),
rate-limit windows waited out, expired links resolved again once."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

import pytest
from hubdouble import RateLimit, run_hub
from hubfiles import REPO, sha, write_repo

from dslocal.errors import AccessError, NetworkError
from dslocal.progress import Progress
from dslocal.sources.download import DownloadOptions, download
from dslocal.sources.hub import HubSource
from dslocal.sources.listing import select

BIG = "Q1/Test-00001-of-00002.gguf"
OPTIONS = DownloadOptions(connections=4, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05, max_attempts=6)


@pytest.fixture
def hub_root(tmp_path):
    return write_repo(tmp_path, {BIG: 3_000_000, "Q1/Test-00002-of-00002.gguf": 1_100_003, "small.gguf": 5000}, seed=3)


def same_as(root: Path, dest: Path, paths) -> None:
    for path in paths:
        assert sha(dest / path) == sha(root / REPO / path), path


def test_one_resolve_per_file_and_the_token_never_reaches_the_cdn(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        assert hub.cdn_url != hub.url, "the CDN is another origin"
        source = HubSource("hf", hub.url, token="hf_user_token")
        files = select(source.list_files(REPO), [BIG])
        listing = hub.stats.listing_requests
        report = download(files, tmp_path / "out", source="hf", headers=source.headers(), options=OPTIONS)
        assert hub.stats.resolve_requests == 1, hub.stats.resolves
        assert hub.stats.listing_requests == listing
        assert len(hub.stats.cdn_commits) >= 12, "a dozen ranged reads from the CDN"
        assert hub.stats.cdn_authorized == [], "the token went to the CDN"
        assert any("/resolve/" in p for p in hub.stats.authorized_paths), "the hub got the token"
    assert report.files[0].status == "downloaded"
    same_as(hub_root, tmp_path / "out", [BIG])


def test_every_file_is_resolved_once(hub_root, tmp_path):
    """LFS files through the CDN, and README.md, which the hub serves itself: its resolve is the file."""
    with run_hub(hub_root) as hub:
        files = select(HubSource("hf", hub.url).list_files(REPO), ["*"])
        download(files, tmp_path / "out", source="hf", options=OPTIONS)
        resolved = sorted(path for _, path in hub.stats.resolves)
    assert resolved == sorted(f.path for f in files) and len(files) == 4
    assert next(f for f in files if f.path == "README.md").sha256 is None
    same_as(hub_root, tmp_path / "out", [f.path for f in files])


@pytest.mark.parametrize("cdn_etag", ["varying", "absent"])
def test_the_cdns_etag_is_not_the_files_identity(hub_root, tmp_path, cdn_etag):
    """cas-bridge.xethub.hf.co sends no ETag, CDN nodes differ: only the hop's X-Linked-Etag counts."""
    with run_hub(hub_root) as hub:
        hub.cdn_etag = cdn_etag
        files = select(HubSource("hf", hub.url).list_files(REPO), ["*.gguf"])
        report = download(files, tmp_path / "out", source="hf", options=OPTIONS)
    assert {f.status for f in report.files} == {"downloaded"}
    same_as(hub_root, tmp_path / "out", [f.path for f in files])


def test_the_whole_download_uses_the_pinned_commit_while_main_moves(hub_root, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(hub_root, moved)
    rng = random.Random(99)
    for path in (moved / REPO).rglob("*.gguf"):  # same names and sizes, other bytes
        path.write_bytes(rng.randbytes(path.stat().st_size))
    with run_hub(hub_root, page_size=2) as hub:
        pinned = hub.refs["main"]
        files = select(HubSource("hf", hub.url).list_files(REPO), ["*.gguf"])
        assert set(hub.stats.tree_revisions) == {pinned} and len(hub.stats.tree_revisions) >= 3, "every page at the commit"
        new_commit = []

        def move_main_once(event: Progress) -> None:
            if not new_commit and event.task.startswith("file:") and event.done > 0:
                new_commit.append(hub.push(moved))

        options = DownloadOptions(connections=2, parallel_files=1, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05)
        report = download(files, tmp_path / "out", source="hf", options=options, progress=move_main_once)
        assert new_commit and hub.refs["main"] == new_commit[0] != pinned, "main moved during the download"
        assert {rev for rev, _ in hub.stats.resolves} == {pinned}
        assert set(hub.stats.cdn_commits) == {pinned}
    assert {f.status for f in report.files} == {"downloaded"}
    same_as(hub_root, tmp_path / "out", [f.path for f in files])


def test_without_a_commit_in_the_listing_the_first_resolve_pins_it(hub_root, tmp_path):
    """A mirror whose model_info names no commit: X-Repo-Commit of the first resolve pins the rest."""
    moved = tmp_path / "moved"
    shutil.copytree(hub_root, moved)
    for path in (moved / REPO).rglob("*.gguf"):
        path.write_bytes(bytes(reversed(path.read_bytes())))
    with run_hub(hub_root) as hub:
        hub.info_has_sha = False
        pinned = hub.refs["main"]
        files = select(HubSource("hf", hub.url).list_files(REPO), ["*.gguf"])
        assert all("/resolve/main/" in f.url and f.origin.commit is None for f in files)
        moves = []

        def move_main_once(event: Progress) -> None:
            if not moves and event.task.startswith("file:") and event.done > 0:
                moves.append(hub.push(moved))

        options = DownloadOptions(connections=2, parallel_files=1, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05)
        report = download(files, tmp_path / "out", source="hf", options=options, progress=move_main_once)
        revisions = [rev for rev, _ in hub.stats.resolves]
        assert moves and revisions == ["main"] + [pinned] * (len(files) - 1)
        assert set(hub.stats.cdn_commits) == {pinned}
    assert {f.status for f in report.files} == {"downloaded"}
    same_as(hub_root, tmp_path / "out", [f.path for f in files])


def test_a_commit_sha_lists_and_downloads_that_commit(hub_root, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(hub_root, moved)
    (moved / REPO / "small.gguf").write_bytes(b"new small file")
    with run_hub(hub_root) as hub:
        first = hub.refs["main"]
        second = hub.push(moved)
        old = select(HubSource("hf", hub.url).list_files(REPO, first), ["small.gguf"])
        new = select(HubSource("hf", hub.url).list_files(REPO), ["small.gguf"])
        assert old[0].url == f"{hub.url}/{REPO}/resolve/{first}/small.gguf" and old[0].origin.commit == first
        assert new[0].origin.commit == second and new[0].size == len(b"new small file")
        download(old, tmp_path / "old", source="hf", options=OPTIONS)
        download(new, tmp_path / "new", source="hf", options=OPTIONS)
    assert sha(tmp_path / "old" / "small.gguf") == sha(hub_root / REPO / "small.gguf")
    assert (tmp_path / "new" / "small.gguf").read_bytes() == b"new small file"


def test_the_hubs_rate_limit_is_waited_out_and_said(hub_root, tmp_path):
    """RateLimit: "resolvers";r=0;t=N (no Retry-After): wait for the window, don't hammer, don't give up."""
    notes: list[str] = []
    events: list[Progress] = []
    with run_hub(hub_root) as hub:
        files = select(HubSource("hf", hub.url).list_files(REPO), ["*"])
        hub.rate_limit = RateLimit(limit=2, window=2.0)
        options = DownloadOptions(connections=2, parallel_files=4, chunk_size=256 << 10, read_timeout=2.0,
                                  backoff=0.05, max_attempts=2)
        start = time.monotonic()
        report = download(files, tmp_path / "out", source="hf", options=options, notify=notes.append,
                          progress=events.append)
        elapsed = time.monotonic() - start
        refused = hub.rate_limit.refused
    assert len(report.files) == 4 and {f.status for f in report.files} == {"downloaded"}
    assert 1 <= refused <= 4, "each waiting connection asked once, then waited for the window"
    assert elapsed >= 1.0
    said = [n for n in notes if n.startswith("waiting for the Hub's rate limit (")]
    assert said and said[0].endswith("s)"), notes
    assert any(e.task == "download" and e.detail.startswith("waiting for the Hub's rate limit") for e in events)
    same_as(hub_root, tmp_path / "out", [f.path for f in files])


def test_a_rate_limit_past_the_budget_fails_with_a_hint(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        files = select(HubSource("hf", hub.url).list_files(REPO), [BIG])
        hub.rate_limit = RateLimit(limit=0, window=300.0)  # t=300 on every answer
        options = DownloadOptions(read_timeout=2.0, backoff=0.05, rate_limit_cap=0.3, rate_limit_budget=1.0)
        start = time.monotonic()
        with pytest.raises(NetworkError, match=r"still rate limited \(HTTP 429\)") as info:
            download(files, tmp_path / "out", source="hf", options=options)
        assert time.monotonic() - start < 10, "each wait is capped (rate_limit_cap), the total by the budget"
        assert 2 <= hub.rate_limit.refused <= 6
    assert "HF_TOKEN" in info.value.hint


@pytest.mark.parametrize("status", [403, 410])
def test_an_expired_link_is_resolved_again(hub_root, tmp_path, status):
    with run_hub(hub_root) as hub:
        hub.expired_status = status
        hub.faults.throttle_bps = 4_000_000  # the download takes a while: links expire meanwhile
        files = select(HubSource("hf", hub.url).list_files(REPO), [BIG])
        expired = []

        def expire_once(event: Progress) -> None:
            if not expired and event.task.startswith("file:") and event.done > 500_000:
                expired.append(True)
                hub.expire_links()

        report = download(files, tmp_path / "out", source="hf", options=OPTIONS, progress=expire_once)
        assert expired and hub.stats.resolve_requests == 2, "one resolve, then one more for a fresh link"
    assert report.files[0].status == "downloaded"
    same_as(hub_root, tmp_path / "out", [BIG])


def test_a_fresh_link_that_is_refused_too_is_an_error_not_a_loop(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.link_uses = 1  # a link serves the resolve's one-byte probe, then expires
        files = select(HubSource("hf", hub.url).list_files(REPO), [BIG])
        with pytest.raises(AccessError, match=r"00001-of-00002.gguf: 127\.0\.0\.\d refused even a fresh link \(HTTP 403\)"):
            download(files, tmp_path / "out", source="hf", options=OPTIONS)
        assert hub.stats.resolve_requests == 2
