"""Downloads against a loopback hub double with injected faults: resumable, verified, locked, safe."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hubdouble import run_hub
from hubfiles import REPO, sha, write_repo

from dslocal.config import load_settings
from dslocal.errors import DiskError, DslocalError, InputError, NotFoundError
from dslocal.progress import Progress
from dslocal.sources import download as dl
from dslocal.sources.download import DownloadOptions, download, part_path
from dslocal.sources.http import make_session
from dslocal.sources.hub import HubSource, ModelScopeSource
from dslocal.sources.listing import RemoteFile, safe_target, select
from dslocal.sources.local import LocalSource, PlainHttpSource
from dslocal.sources.select import choose, named_source

FAST = DownloadOptions(connections=4, chunk_size=256 << 10, read_timeout=1.0, backoff=0.05, max_attempts=12)


@pytest.fixture
def hub_root(tmp_path):
    """A repository with two 'shards', a README and a nested folder, more entries than one listing page."""
    return write_repo(tmp_path, {"Q1/Test-00001-of-00002.gguf": 3_000_000, "Q1/Test-00002-of-00002.gguf": 1_700_001,
                                 "small.gguf": 1000}, seed=1)


def hf(hub) -> HubSource:
    return HubSource("test-hub", hub.url)


def fetch(hub, dest: Path, options: DownloadOptions = FAST, include=("*.gguf",), **kw):
    files = select(hf(hub).list_files(REPO), include)
    return download(files, dest, source="test-hub", options=options, **kw)


def assert_same(hub_root: Path, dest: Path, pattern: str = "**/*.gguf") -> None:
    for original in (hub_root / REPO).glob(pattern):
        copy = dest / original.relative_to(hub_root / REPO)
        assert sha(copy) == sha(original), copy


def test_listing_follows_pagination_and_carries_lfs_sha(hub_root):
    with run_hub(hub_root, page_size=2) as hub:
        files = hf(hub).list_files(REPO)
        assert hub.stats.listing_requests >= 3
    by_path = {f.path: f for f in files}
    assert set(by_path) == {"Q1/Test-00001-of-00002.gguf", "Q1/Test-00002-of-00002.gguf", "small.gguf", "README.md"}
    shard = hub_root / REPO / "Q1" / "Test-00001-of-00002.gguf"
    assert by_path["Q1/Test-00001-of-00002.gguf"].sha256 == sha(shard)
    assert by_path["Q1/Test-00001-of-00002.gguf"].size == shard.stat().st_size
    assert by_path["README.md"].sha256 is None


def test_clean_download_through_cdn_redirects(hub_root, tmp_path):
    events: list[Progress] = []
    with run_hub(hub_root) as hub:
        report = fetch(hub, tmp_path / "out", progress=events.append)
    assert_same(hub_root, tmp_path / "out")
    assert all(f.status == "downloaded" for f in report.files)
    totals = [e for e in events if e.task == "download"]
    assert totals[-1].done == totals[-1].total == sum(f.size for f in report.files)
    assert {e.task for e in events} >= {"download", "file:Q1/Test-00001-of-00002.gguf"}
    assert not list((tmp_path / "out").rglob(".*.part*"))


@pytest.mark.parametrize("fault", ["cut", "error_500", "error_429", "stall"])
def test_faults_are_retried(hub_root, tmp_path, fault):
    with run_hub(hub_root) as hub:
        setattr(hub.faults, fault, 3)
        hub.faults.stall_seconds = 3.0
        start = time.monotonic()
        fetch(hub, tmp_path / "out")
        elapsed = time.monotonic() - start
        assert getattr(hub.faults, fault) == 0, "the fault was injected"
    assert_same(hub_root, tmp_path / "out")
    if fault == "error_429":
        assert elapsed >= 1.0, 'RateLimit: "resolvers";r=0;t=1 must be waited out'


def test_random_fault_storm(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.random_rate = 0.3
        hub.faults.rng.seed(5)
        hub.faults.stall_seconds = 1.5
        fetch(hub, tmp_path / "out")
    assert_same(hub_root, tmp_path / "out")


def test_a_wrong_byte_is_caught_and_refetched_once(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.wrong_byte = 1
        hub.faults.wrong_byte_offset = 1_234_567
        report = fetch(hub, tmp_path / "out", include=("Q1/Test-00001-of-00002.gguf",))
    assert report.files[0].status == "downloaded-after-refetch"
    assert_same(hub_root, tmp_path / "out", "Q1/Test-00001-of-00002.gguf")


def test_a_source_that_keeps_corrupting_fails_naming_the_file(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.wrong_byte_always = True
        hub.faults.wrong_byte_offset = 10
        with pytest.raises(DslocalError, match=r"Q1/Test-00001-of-00002.gguf failed its sha256 check twice") as info:
            fetch(hub, tmp_path / "out", include=("Q1/Test-00001-of-00002.gguf",))
    assert "another --source" in info.value.hint
    assert not (tmp_path / "out" / "Q1" / "Test-00001-of-00002.gguf").exists()


def test_hostile_listing_is_refused_before_writing(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.hostile_listing = True
        with pytest.raises(InputError, match="unsafe file name"):
            hf(hub).list_files(REPO)
        with pytest.raises(InputError, match="unsafe file name"):
            ModelScopeSource("ms", hub.url).list_files(REPO)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "etc").exists()


def test_verified_files_are_never_fetched_again(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        fetch(hub, tmp_path / "out")
        requests_before = hub.stats.file_requests
        report = fetch(hub, tmp_path / "out")
        assert hub.stats.file_requests == requests_before
    assert {f.status for f in report.files} == {"verified-before"}
    assert report.fetched_bytes == 0


def test_preflight_refuses_with_numbers(hub_root, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with run_hub(hub_root) as hub:
        with pytest.raises(DiskError, match=r"needs 4\.5 MiB more .* there is 1000 B free"):
            fetch(hub, tmp_path / "out")
        assert hub.stats.file_requests == 0


def test_a_resume_after_a_full_disk_counts_the_space_its_partial_files_hold(hub_root, tmp_path, monkeypatch):
    """Newcomer trial A17: a .part file whose state file was lost still holds its blocks."""
    with run_hub(hub_root) as hub:
        files = select(HubSource("hub", hub.url).list_files(REPO), ["*.gguf"])
        out = tmp_path / "out"
        target = safe_target(out, files[0].path, "hub")
        target.parent.mkdir(parents=True)
        part = dl.part_path(target)
        part.write_bytes(b"x" * files[0].size)  # what a disk-full crash leaves, without .part.json
        total = sum(f.size for f in files)
        real = shutil.disk_usage
        free = total - files[0].size + 4096  # enough for the rest only
        monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: real(p)._replace(free=free))
        report = dl.download(files, out, source="hub")
    assert {f.status for f in report.files} <= {"downloaded", "resumed"}
    assert all(f.target.exists() for f in report.files)


def test_preflight_shortfall_is_said_when_the_numbers_round_alike(tmp_path, monkeypatch):
    remote = RemoteFile("a.gguf", 1_610_612_736, "0" * 64, "http://127.0.0.1:9/a.gguf")
    plan = dl.FilePlan(remote, tmp_path / "a.gguf", False, 0)
    real = shutil.disk_usage
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: real(p)._replace(free=remote.size - 1000))
    with pytest.raises(DiskError, match=r"\(1000 B short\)"):
        dl.preflight([plan], tmp_path)


CHILD = r"""
import sys
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from dslocal.sources.download import DownloadOptions, download
from dslocal.sources.hub import HubSource
from dslocal.sources.listing import RemoteFile, safe_target, select
hub, dest, lock_wait = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
files = select(HubSource("h", hub).list_files("unsloth/Test-R1-GGUF"), ["*.gguf"])
options = DownloadOptions(connections=3, chunk_size=128 << 10, read_timeout=1.0, backoff=0.05, max_attempts=20,
                          lock_wait=None if lock_wait == "none" else float(lock_wait))
report = download(files, dest, source="h", options=options, notify=lambda m: print("NOTE", m, flush=True))
print("DONE", report.fetched_bytes, flush=True)
"""


def spawn(hub, dest: Path, lock_wait: str = "none") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, hub.url, str(dest), lock_wait, str(Path(__file__).parent)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_at_random_points_then_rerun_completes(hub_root, tmp_path):
    dest = tmp_path / "out"
    rng = random.Random(11)
    kills = 0
    with run_hub(hub_root) as hub:
        hub.faults.throttle_bps = 3_000_000
        hub.faults.random_rate = 0.05
        for round_ in range(12):
            proc = spawn(hub, dest)
            time.sleep(rng.uniform(0.05, 0.6))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=60)
            if proc.returncode == 0:
                break
        hub.faults.throttle_bps = 0
        final = spawn(hub, dest)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err
    assert kills >= 5, "most rounds must have been killed mid-download"
    assert_same(hub_root, dest)
    assert not list(dest.rglob(".*.part*"))


def test_one_downloader_per_folder(hub_root, tmp_path):
    dest = tmp_path / "out"
    with run_hub(hub_root) as hub:
        hub.faults.throttle_bps = 400_000  # the first download takes several seconds
        first = spawn(hub, dest)
        deadline = time.monotonic() + 10
        while not (dest / ".dslocal" / "download.owner").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = spawn(hub, dest, lock_wait="0")
        third = spawn(hub, dest, lock_wait="none")
        _, err = second.communicate(timeout=30)
        assert second.returncode != 0
        assert f"pid {first.pid}" in err and "is being downloaded into" in err
        assert first.poll() is None, "the first download must still be running"
        out_first, _ = first.communicate(timeout=60)
        out_third, _ = third.communicate(timeout=60)
    assert first.returncode == 0 and third.returncode == 0
    assert f"waiting for the download into {dest} held by pid {first.pid}" in out_third
    assert "DONE 0" in out_third, "the waiting process finds every file already verified"
    assert_same(hub_root, dest)


def test_modelscope_listing_and_download(hub_root, tmp_path):
    """As the ModelScope SDK does it: Recursive=True, the /repo?Revision=&FilePath= route with Range."""
    with run_hub(hub_root) as hub:
        source = ModelScopeSource("modelscope", hub.url)
        files = select(source.list_files(REPO), ["*.gguf"])
        assert hub.stats.ms_queries[-1] == {"Revision": ["master"], "Recursive": ["True"]}
        nested = next(f for f in files if f.path == "Q1/Test-00001-of-00002.gguf")
        assert nested.url == f"{hub.url}/api/v1/models/{REPO}/repo?Revision=master&FilePath=Q1%2FTest-00001-of-00002.gguf"
        assert all(f.sha256 for f in files)
        download(files, tmp_path / "out", source="modelscope", options=FAST)
        assert hub.stats.file_requests > len(files), "several ranged reads per file"
        assert {q["FilePath"][0] for q in hub.stats.ms_queries[1:]} == {f.path for f in files}
        with pytest.raises(NotFoundError, match="nobody/nothing@master was not found on ModelScope"):
            source.list_files("nobody/nothing")  # a real HTTP 404, as ModelScope answers
        hub.ms_missing_as_200 = True
        with pytest.raises(NotFoundError, match="nobody/nothing@master was not found on ModelScope"):
            source.list_files("nobody/nothing")  # HTTP 200 with Code 10010205001, as older servers answer
    assert_same(hub_root, tmp_path / "out")


def test_local_folder_and_plain_http_sources(hub_root, tmp_path):
    repo = hub_root / REPO
    sums = "".join(f"{sha(p)}  {p.relative_to(repo).as_posix()}\n" for p in sorted(repo.rglob("*.gguf")))
    (repo / "SHA256SUMS").write_text(sums)
    local = LocalSource("usb", hub_root)
    files = select(local.list_files(REPO), ["*.gguf"])
    assert all(f.sha256 for f in files)
    report = download(files, tmp_path / "from-usb", source="usb", local=True)
    assert_same(hub_root, tmp_path / "from-usb")
    assert all(f.status == "downloaded" for f in report.files)
    with run_hub(hub_root) as hub:
        plain = PlainHttpSource("lan", f"{hub.url}/plain")
        files = plain.list_files(REPO)
        assert {f.path for f in files} == {p.relative_to(repo).as_posix() for p in repo.rglob("*.gguf")}
        download(files, tmp_path / "from-lan", source="lan", options=FAST)
    assert_same(hub_root, tmp_path / "from-lan")
    bad = hub_root / REPO / "small.gguf"
    (repo / "SHA256SUMS").write_text(sums.replace(sha(bad), "0" * 64))
    with pytest.raises(DslocalError, match="SHA256SUMS"):
        download(select(local.list_files(REPO), ["small.gguf"]), tmp_path / "bad", source="usb", local=True)


def test_token_goes_only_to_the_configured_hub(hub_root, dslocal_home, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_for_mirrors")
    with run_hub(hub_root) as hub:
        monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", hub.url)
        monkeypatch.setenv("DSLOCAL_HF_MIRROR_ENDPOINT", hub.url + "/")
        settings = load_settings()
        assert named_source("hf", settings).headers() == {"Authorization": "Bearer hf_not_for_mirrors"}
        assert named_source("hf-mirror", settings).headers() == {}
        assert named_source(hub.url, settings).token == "hf_not_for_mirrors"
        assert named_source("http://other.example", settings).token is None
        chosen = choose("hf-mirror", REPO, None, settings, make_session())
        assert chosen.files and hub.stats.authorized_paths == []
    assert "hf_not_for_mirrors" not in repr(named_source("hf", settings))


def test_auto_picks_a_reachable_source_and_says_why(hub_root, dslocal_home, monkeypatch):
    with run_hub(hub_root) as hub:
        monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
        monkeypatch.setenv("DSLOCAL_HF_MIRROR_ENDPOINT", hub.url)
        monkeypatch.setenv("DSLOCAL_MODELSCOPE_ENDPOINT", hub.url)
        notes: list[str] = []
        start = time.monotonic()
        chosen = choose("auto", REPO, None, load_settings(), make_session(), notify=notes.append)
        assert time.monotonic() - start < 15
    assert chosen.source.name in ("hf-mirror", "modelscope")
    assert "auto chose" in chosen.reason and "unreachable" in chosen.reason and notes == [chosen.reason]


def test_cli_download_json(hub_root, cli, dslocal_home, tmp_path):
    with run_hub(hub_root) as hub:
        result = cli("download", REPO, "--source", hub.url, "--include", "Q1/*", "--dir", str(tmp_path / "o"), "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["command"] == "download" and doc["data"]["source"] == hub.url
        assert [f["path"] for f in doc["data"]["files"]] == ["Q1/Test-00001-of-00002.gguf", "Q1/Test-00002-of-00002.gguf"]
        assert all(len(f["sha256"]) == 64 for f in doc["data"]["files"])
        missing = cli("download", "nobody/nothing", "--source", hub.url)
        assert missing.returncode == 5 and "not found" in missing.stderr
        bad = cli("download", "justaname", "--source", hub.url)
        assert bad.returncode == 2 and "ORG/NAME" in bad.stderr
        none = cli("download", REPO, "--source", hub.url, "--include", "*.safetensors")
        assert none.returncode == 5 and "no file" in none.stderr
        hostile_folder = cli("download", REPO, "--source", "/definitely/not/here")
        assert hostile_folder.returncode == 2 and "--source" in hostile_folder.stderr
    assert_same(hub_root, tmp_path / "o", "Q1/*.gguf")


def test_partial_state_survives_and_is_used(hub_root, tmp_path, monkeypatch):
    """A partial file left by a failure resumes from its recorded chunks instead of starting over."""
    options = DownloadOptions(connections=1, chunk_size=256 << 10, read_timeout=1, backoff=0.01, max_attempts=2)
    with run_hub(hub_root) as hub:
        files = select(hf(hub).list_files(REPO), ["Q1/Test-00001-of-00002.gguf"])
        target = tmp_path / "out" / files[0].path
        calls = {"n": 0}
        real = dl._FileJob._fetch_chunk

        def outage_after_four_chunks(self, fd, state, index):
            calls["n"] += 1
            if calls["n"] > 4:
                raise dl.NetworkError("simulated outage", "rerun")
            return real(self, fd, state, index)

        monkeypatch.setattr(dl._FileJob, "_fetch_chunk", outage_after_four_chunks)
        with pytest.raises(dl.NetworkError):
            download(files, tmp_path / "out", source="h", options=options)
        monkeypatch.setattr(dl._FileJob, "_fetch_chunk", real)
        assert part_path(target).exists()
        state = json.loads(dl.state_path(target).read_text())
        assert len(state["done"]) == 4
        before = hub.stats.body_bytes
        download(files, tmp_path / "out", source="h", options=options)
        fetched = hub.stats.body_bytes - before
    assert fetched == files[0].size - 4 * (256 << 10) + 1, "the missing chunks, and the CDN probe's one byte"
    assert sha(target) == files[0].sha256
