"""Ranged reads are checked before a byte is written: the status, the Content-Range, 416; servers
that ignore Range get the file in one piece; the source speed probe reads a capped number of bytes."""

from __future__ import annotations

import random
import threading
import time

import pytest
from hubdouble import run_hub
from hubfiles import REPO, sha, write_repo

from dslocal.errors import NetworkError
from dslocal.progress import Progress
from dslocal.sources.download import DownloadOptions, download, part_path
from dslocal.sources.http import make_session
from dslocal.sources.hub import HubSource, ModelScopeSource
from dslocal.sources.listing import RemoteFile, select
from dslocal.sources.select import PROBE_BYTES, _probe_speed

BIG = "Test-00001-of-00001.gguf"
OPTIONS = DownloadOptions(connections=4, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05, max_attempts=6)


@pytest.fixture
def hub_root(tmp_path):
    return write_repo(tmp_path, {BIG: 3_000_000}, seed=7, readme=False)


def hf_files(hub, pattern=BIG):
    return select(HubSource("hf", hub.url).list_files(REPO), [pattern])


def test_a_range_other_than_the_one_asked_is_not_written(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.wrong_range = 3
        report = download(hf_files(hub), tmp_path / "out", source="hf", options=OPTIONS)
        assert hub.faults.wrong_range == 0, "the fault was injected"
    assert report.files[0].status == "downloaded", "caught per chunk, not by the sha256 at the end"
    assert sha(tmp_path / "out" / BIG) == sha(hub_root / REPO / BIG)


def test_a_server_that_always_answers_another_range_fails_clearly(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.faults.wrong_range_always = True
        with pytest.raises(NetworkError, match=r"asked for bytes \d+-\d+, the server sent \d+-\d+") as info:
            download(hf_files(hub), tmp_path / "out", source="hf", options=OPTIONS)
    assert "another --source" in info.value.hint
    assert not (tmp_path / "out" / BIG).exists()


def test_a_file_that_shrinks_on_the_server_is_an_error_naming_it(hub_root, tmp_path):
    """416 past the new end, and a Content-Range total that is not the listed size: not "HTTP 416"."""
    original = hub_root / REPO / BIG
    with run_hub(hub_root) as hub:
        hub.faults.throttle_bps = 6_000_000
        remote = RemoteFile(BIG, original.stat().st_size, sha(original), f"{hub.url}/plain/{REPO}/{BIG}")
        shrunk = threading.Event()

        def shrink_once(event: Progress) -> None:
            if not shrunk.is_set() and event.task.startswith("file:") and event.done > 300_000:
                shrunk.set()
                with open(original, "r+b") as handle:
                    handle.truncate(1_000_000)

        options = DownloadOptions(connections=2, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05, max_attempts=3)
        with pytest.raises(NetworkError) as info:
            download([remote], tmp_path / "out", source="lan", options=options, progress=shrink_once)
    assert shrunk.is_set()
    message = info.value.message
    assert message.startswith(f"{BIG}: the server")
    assert "the listing said 3,000,000" in message, message
    assert "changed on the server" in info.value.hint


def test_a_cdn_that_ignores_range_gets_one_request_for_the_whole_file(hub_root, tmp_path):
    notes: list[str] = []
    with run_hub(hub_root) as hub:
        hub.ignore_range = True
        report = download(hf_files(hub), tmp_path / "out", source="hf", options=OPTIONS, notify=notes.append)
        assert hub.stats.file_requests == 2, "the resolve's probe (closed at once), then the file in one piece"
        assert hub.stats.resolve_requests == 1
    assert report.files[0].status == "downloaded"
    assert any("ignores Range: fetching" in n for n in notes), notes
    assert sha(tmp_path / "out" / BIG) == sha(hub_root / REPO / BIG)


def test_a_partial_file_from_a_server_that_honoured_range_is_restarted_whole(hub_root, tmp_path):
    """The server stops honouring Range between two runs: the chunked partial cannot be resumed."""
    with run_hub(hub_root) as hub:
        files = select(ModelScopeSource("modelscope", hub.url).list_files(REPO), [BIG])

        def cut_after_the_first_bytes(event: Progress) -> None:
            if event.done > 0:
                hub.faults.cut = 1

        options = DownloadOptions(connections=1, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05, max_attempts=1)
        with pytest.raises(NetworkError):
            download(files, tmp_path / "out", source="modelscope", options=options, progress=cut_after_the_first_bytes)
        assert part_path(tmp_path / "out" / BIG).exists()
        hub.ignore_range = True
        report = download(files, tmp_path / "out", source="modelscope", options=OPTIONS)
    assert report.files[0].status == "downloaded"
    assert sha(tmp_path / "out" / BIG) == sha(hub_root / REPO / BIG)


def test_the_speed_probe_reads_a_capped_number_of_bytes_even_when_range_is_ignored(tmp_path):
    repo = tmp_path / "hub" / REPO
    repo.mkdir(parents=True)
    (repo / "huge.gguf").write_bytes(random.Random(1).randbytes(48 << 20))
    with run_hub(tmp_path / "hub") as hub:
        source = HubSource("hf", hub.url, token="hf_probe_token")
        files = source.list_files(REPO)
        hub.ignore_range = True
        hub.faults.throttle_bps = 40_000_000  # the whole file would take over a second
        start = time.monotonic()
        speed = _probe_speed(source, files, make_session())
        elapsed = time.monotonic() - start
        time.sleep(0.3)  # let the server notice the closed connection
        sent = hub.stats.body_bytes
        assert hub.stats.cdn_authorized == [] and hub.stats.resolve_requests == 1
    assert speed > 0
    assert sent < 8 * PROBE_BYTES, f"the probe made the server send {sent:,} bytes of {48 << 20:,}"
    assert elapsed < 1.0
