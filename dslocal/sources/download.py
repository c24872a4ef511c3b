"""The downloader: parallel HTTP range requests, resumable after any crash, verified by sha256.

Each file is fetched in chunks by several connections into a hidden ``.NAME.part``
file beside its target; a small state file (``.NAME.part.json``) records the chunks
already written, so a rerun after a crash (SIGKILL included) fetches only what is
missing. The sha256 is computed while the bytes arrive, reading the finished prefix
back in order; a mismatch re-fetches the file once, then fails naming it. A verified
file is recorded in ``.dslocal/verified.json`` and never fetched or hashed again.
Only one downloader works in a folder at a time (a file lock); a second one waits
and says who holds the folder.

One resolve per file, as huggingface_hub does it (``file_download.py``): the file's URL
(``/resolve/<commit>/<path>`` on a hub) is asked once, without following the redirect;
the hop's ``X-Linked-Etag`` (normalised) is the file's identity, ``X-Repo-Commit`` its
commit and ``Location`` where every ranged read then goes, without the token when that
is another host. A link that expires (403/410 from the CDN) is resolved once more.
The Hub counts every resolve against a small quota; a 429 that says when its window
resets (``RateLimit: "resolvers";r=0;t=N``) is waited out, and the wait is reported.
Every ranged answer must carry the ``Content-Range`` asked for; a server that ignores
Range gets the file in one piece. The listing's sha256 is the final word on the bytes.

Durability: chunk data is not fsynced one by one (that would halve throughput); the
final sha256 check catches anything a power cut left half-written, and the file is
fsynced before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from dslocal.errors import AccessError, DiskError, DslocalError, NetworkError
from dslocal.fsutil import atomic_write_bytes, fsync_dir, remove_stale_temps
from dslocal.progress import Progress, ProgressSink, RateMeter, null_sink
from dslocal.sources.http import CONNECT_TIMEOUT, normalise_etag, raise_for_status
from dslocal.sources.listing import RemoteFile, safe_target
from dslocal.sources.resolve import (
    CONTENT_RANGE, LinkExpired, Net, RateGate, Resolved, Resolver, RetryRequest, content_total, raise_transient,
)
from dslocal.units import format_bytes

STATE_VERSION = 1
META_DIR = ".dslocal"
ONE_PIECE_LIMIT = 50 * 1000**3  # huggingface_hub MAX_HTTP_DOWNLOAD_SIZE: larger plain GETs are not served
Notify = Callable[[str], None]


@dataclass(frozen=True)
class DownloadOptions:
    connections: int = 4  # per file
    parallel_files: int = 2
    chunk_size: int = 64 << 20
    read_timeout: float = 30.0  # a stall longer than this aborts the request and retries
    max_attempts: int = 8  # per request, for failures other than waited-out rate limits and expired links
    backoff: float = 0.5  # seconds, doubled per attempt
    lock_wait: float | None = None  # seconds to wait for another downloader; None = forever
    rate_limit_cap: float = 330.0  # the most one 429 makes a connection wait (the Hub's windows are 300 s)
    rate_limit_budget: float = 3600.0  # the most one request waits out rate limits in all before it fails


@dataclass(frozen=True)
class FileResult:
    path: str
    target: Path
    size: int
    sha256: str | None
    status: str  # "verified-before", "downloaded", "downloaded-after-refetch"
    fetched_bytes: int


@dataclass(frozen=True)
class DownloadReport:
    folder: Path
    files: tuple[FileResult, ...]

    @property
    def fetched_bytes(self) -> int:
        return sum(f.fetched_bytes for f in self.files)


class ChecksumError(DslocalError):
    exit_code = NetworkError.exit_code


@dataclass
class _State:
    version: int
    url: str
    size: int
    sha256: str | None
    chunk: int
    etag: str | None = None  # the file's identity when it was started (X-Linked-Etag, else the ETag)
    done: list[int] = field(default_factory=list)
    commit: str | None = None  # X-Repo-Commit, where the hub says


def part_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part")


def state_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.part.json")


# --------------------------------------------------------------------------- ledger and lock


class Ledger:
    """``.dslocal/verified.json``: files whose sha256 was checked, keyed by relative path."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / META_DIR / "verified.json"
        try:
            self.entries: dict[str, dict] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.entries = {}

    def is_verified(self, remote: RemoteFile, target: Path) -> bool:
        entry = self.entries.get(remote.path)
        try:
            stat = target.stat()
        except OSError:
            return False
        return bool(
            entry and entry.get("size") == remote.size == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns
            and entry.get("sha256") == remote.sha256
        )

    def record(self, remote: RemoteFile, target: Path, sha256: str | None) -> None:
        stat = target.stat()
        self.entries[remote.path] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
        atomic_write_bytes(self.path, json.dumps(self.entries, indent=1, sort_keys=True).encode())


@contextlib.contextmanager
def folder_lock(folder: Path, wait: float | None, notify: Notify):
    """Hold the folder's download lock; tell the user who holds it while waiting."""
    from filelock import FileLock, Timeout

    meta = folder / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(meta / "download.lock"))
    owner_file = meta / "download.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        try:
            owner = json.loads(owner_file.read_text(encoding="utf-8"))
            who = f"pid {owner['pid']} on {owner['host']} since {owner['since']}"
        except (OSError, ValueError, KeyError):
            who = "another dslocal process"
        if wait == 0:
            raise DslocalError(
                f"{folder} is being downloaded into by {who}", "wait for it to finish, or stop that process"
            ) from None
        notify(f"waiting for the download into {folder} held by {who}")
        try:
            lock.acquire(timeout=-1 if wait is None else wait)
        except Timeout:
            raise DslocalError(
                f"{folder} stayed locked by {who} for {wait:g} s", "wait for it to finish, or stop that process"
            ) from None
    try:
        atomic_write_bytes(
            owner_file,
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(),
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            owner_file.unlink()
        lock.release()


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class FilePlan:
    remote: RemoteFile
    target: Path
    verified: bool
    done_bytes: int  # already in a partial file
    held_bytes: int = 0  # disk the partial file already holds (its chunks, or a crash's leftovers)

    @property
    def remaining(self) -> int:
        return 0 if self.verified else self.remote.size - self.done_bytes

    @property
    def new_disk(self) -> int:
        """Disk still to find: the partial file's space is reused (or freed) by the resume."""
        if self.verified:
            return 0
        return max(0, self.remote.size - max(self.done_bytes, self.held_bytes))


def _load_state(target: Path, remote: RemoteFile) -> _State | None:
    try:
        state = _State(**json.loads(state_path(target).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    if (state.version, state.size, state.sha256) != (STATE_VERSION, remote.size, remote.sha256) or not part_path(target).exists():
        return None
    return state


def plan_files(files: Sequence[RemoteFile], folder: Path, source: str) -> list[FilePlan]:
    ledger = Ledger(folder)
    plans = []
    for remote in files:
        target = safe_target(folder, remote.path, source)
        verified = ledger.is_verified(remote, target)
        state = None if verified else _load_state(target, remote)
        done = sum(min(state.chunk, remote.size - i * state.chunk) for i in set(state.done)) if state else 0
        plans.append(FilePlan(remote, target, verified, done, 0 if verified else _held(part_path(target), remote.size)))
    return plans


def _held(part: Path, size: int) -> int:
    """Bytes of disk a partial file holds (allocated blocks, at most the file's size)."""
    try:
        return min(part.stat().st_blocks * 512, size)
    except OSError:
        return 0


def preflight(plans: Sequence[FilePlan], folder: Path) -> tuple[int, int]:
    """(bytes still to fetch, free bytes); refuses with the numbers when the disk is too small.

    The partial files of an interrupted download already hold their space (even one whose
    state file a crash lost), so only what they do not hold counts against the free space.
    """
    fetch = sum(p.remaining for p in plans)
    need = sum(p.new_disk for p in plans)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DiskError(
            f"the download needs {format_bytes(need)} more in {folder}, there is {format_bytes(free)} free "
            f"({format_bytes(need - free)} short)",
            "free some space, or choose another folder with --dir",
        )
    return fetch, free


# --------------------------------------------------------------------------- one file


class _PrefixHasher:
    """Hashes the finished chunks in order, in a thread of its own, while later ones still arrive."""

    def __init__(self, fd: int, chunk: int, size: int, done: set[int], lock: threading.Condition) -> None:
        self.fd, self.chunk, self.size, self.done, self.lock = fd, chunk, size, done, lock
        self.n_chunks = max(1, -(-size // chunk))
        self.hasher = hashlib.sha256()
        self.hashed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        view = memoryview(bytearray(8 << 20))
        while True:
            with self.lock:
                while self.hashed < self.n_chunks and self.hashed not in self.done and not self.stop.is_set():
                    self.lock.wait(0.5)
                if self.stop.is_set() or self.hashed >= self.n_chunks:
                    return
            offset, end = self.hashed * self.chunk, min(self.size, (self.hashed + 1) * self.chunk)
            while offset < end:
                n = os.preadv(self.fd, [view[: min(len(view), end - offset)]], offset)
                self.hasher.update(view[:n])
                offset += n
            self.hashed += 1


class _FileJob:
    def __init__(self, plan: FilePlan, net: Net, progress: Callable[[int], None]) -> None:
        self.plan = plan
        self.remote = plan.remote
        self.net = net
        self.options = net.options
        self.progress = progress
        self.lock = threading.Condition()
        self.refresh_lock = threading.Lock()
        self.fetched = 0
        self.target: Resolved | None = None
        self.refreshed = False  # the current target is a new link asked for after one expired
        self.served = False  # ... and it has served a chunk since

    # -- state
    def _save(self, state: _State) -> None:
        atomic_write_bytes(state_path(self.plan.target), json.dumps(asdict(state)).encode())

    def _resolve(self) -> Resolved:
        self.remote = self.net.pins.apply(self.remote)
        resolved = Resolver(self.net, self.remote).resolve()
        pinned = self.net.pins.learn(self.remote, resolved.commit)
        if resolved.size is not None and resolved.size != self.remote.size:
            raise self._changed(f"the server says it is {resolved.size:,} bytes, the listing said {self.remote.size:,}")
        if pinned and resolved.commit and resolved.commit != pinned:
            raise self._changed(f"the hub served commit {resolved.commit}, the download is pinned to {pinned}")
        return resolved

    def _changed(self, why: str) -> NetworkError:
        return NetworkError(f"{self.remote.path}: {why}",
                            "the file changed on the server: rerun to list it again, or use another --source")

    def _start_state(self, target: Resolved) -> _State:
        """The partial file's state, kept when it is still this file; a fresh one otherwise."""
        path, remote = self.plan.target, self.remote
        chunk = self.options.chunk_size if target.ranged else max(remote.size, 1)
        state = _load_state(path, remote)
        # The listing's sha256 is the final word; the identity only guards files that have none.
        changed = bool(state and remote.sha256 is None and state.etag and target.identity
                       and normalise_etag(state.etag) != target.identity)
        if state is not None and (changed or (not target.ranged and state.chunk != chunk)):
            if changed:
                self.net.status(f"{remote.path} changed on the server since it was started; starting it over")
            _discard_partial(path)
            state = None
        if not target.ranged:
            big = " (plain GETs this large are often refused)" if remote.size > ONE_PIECE_LIMIT else ""
            self.net.status(f"{urlsplit(target.data_url).hostname} ignores Range: fetching {remote.path} in one piece{big}")
        state = state or _State(STATE_VERSION, remote.url, remote.size, remote.sha256, chunk)
        state.etag, state.commit = target.identity or state.etag, target.commit or state.commit
        return state

    def _refresh(self, stale: Resolved, status: int) -> None:
        """A new link from the hub once ``stale`` expired, unless another connection already got one.
        A new link that is refused before it served anything is an error, not a loop."""
        with self.refresh_lock:
            if self.target is not stale:
                return
            if self.refreshed and not self.served:
                raise self._refused_again(stale, status)
            self.target = self._resolve()
            self.refreshed, self.served = True, False

    def _refused_again(self, target: Resolved, status: int) -> AccessError:
        return AccessError(f"{self.remote.path}: {urlsplit(target.data_url).hostname} refused even a fresh link"
                           f" (HTTP {status})", "rerun later, or try another --source")

    # -- one chunk
    def _fetch_chunk(self, fd: int, state: _State, index: int) -> None:
        start = index * state.chunk
        end = min(self.remote.size, start + state.chunk) - 1
        expired: list[Resolved] = []

        def attempt() -> int:
            target = self.target
            assert target is not None
            try:
                written = self._get_range(fd, start, end, target)
            except LinkExpired as exc:
                if expired:  # once per chunk: the new link failed this chunk too
                    raise self._refused_again(target, exc.status) from None
                expired.append(target)
                self._refresh(target, exc.status)
                raise RetryRequest(f"the link expired (HTTP {exc.status})", counted=False) from None
            self.served = self.served or target is self.target
            return written

        written = self.net.retrying(f"{self.remote.path}: bytes {start}-{end}", self.target.data_url, attempt)
        with self.lock:
            self.fetched += written

    def _get_range(self, fd: int, start: int, end: int, target: Resolved) -> int:
        headers = {**self.net.headers_for(target.data_url, self.remote.url), "Accept-Encoding": "identity"}
        if target.ranged:
            headers["Range"] = f"bytes={start}-{end}"
        with self.net.session.get(
            target.data_url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, self.options.read_timeout)
        ) as response:
            self._check_answer(response, start, end, target)
            return self._write_body(fd, response, start, end)

    def _check_answer(self, response: requests.Response, start: int, end: int, target: Resolved) -> None:
        """Only the bytes asked for are written: the status and Content-Range are checked first."""
        code = response.status_code
        raise_transient(response)
        if code in (403, 410) and target.foreign:
            raise LinkExpired(code)
        if code == 416:
            total = content_total(response)
            raise self._changed(f"the server has no bytes {start}-{end} (HTTP 416): the file there is "
                                f"{'smaller' if total is None else f'{total:,} bytes'}, the listing said {self.remote.size:,}")
        if code >= 400:
            raise_for_status(response, self.remote.path, origin=None if target.foreign else self.remote.origin,
                             token_sent=not target.foreign and self.net.token_sent)
        if code == 206:
            match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None:
                raise RetryRequest(f"HTTP 206 without a Content-Range for bytes {start}-{end}")
            if match[3] != "*" and int(match[3]) != self.remote.size:
                raise self._changed(f"the server says it is {int(match[3]):,} bytes, the listing said {self.remote.size:,}")
            if (int(match[1]), int(match[2])) != (start, end):
                raise RetryRequest(f"asked for bytes {start}-{end}, the server sent {match[1]}-{match[2]}")
        elif code == 200:
            if (start, end) != (0, self.remote.size - 1):
                raise RetryRequest(f"the server ignored Range for bytes {start}-{end} (HTTP 200)")
        else:
            raise RetryRequest(f"HTTP {code}")

    def _write_body(self, fd: int, response: requests.Response, start: int, end: int) -> int:
        position = start
        try:
            for block in response.iter_content(1 << 20):
                if position + len(block) > end + 1:
                    raise RetryRequest("the server sent more than asked")
                os.pwrite(fd, block, position)
                position += len(block)
                self.progress(len(block))
            if position != end + 1:
                raise RetryRequest(f"short read ({position - start} of {end + 1 - start} bytes)")
        except BaseException:
            self.progress(start - position)
            raise
        return position - start

    # -- the whole file
    def run(self) -> str | None:
        """Fetch what is missing and return the sha256 of the complete file."""
        target = self.plan.target
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.remote.size == 0:
            part_path(target).write_bytes(b"")
            return hashlib.sha256().hexdigest()
        self.target = self._resolve()
        if self.target.whole is not None:  # a small file: the resolve's answer was all of it
            return self._write_whole(self.target.whole)
        state = self._start_state(self.target)
        fd = os.open(part_path(target), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not state.done:
                os.ftruncate(fd, self.remote.size)
            self._save(state)
            digest = self._fetch_all(fd, state)
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest

    def _write_whole(self, data: bytes) -> str:
        with open(part_path(self.plan.target), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.progress(len(data))
        self.fetched += len(data)
        return hashlib.sha256(data).hexdigest()

    def _fetch_all(self, fd: int, state: _State) -> str:
        done = set(state.done)
        hashing = _PrefixHasher(fd, state.chunk, self.remote.size, done, self.lock)
        pending = [i for i in range(hashing.n_chunks) if i not in done]

        def work(index: int) -> None:
            if hashing.stop.is_set():
                return
            self._fetch_chunk(fd, state, index)
            with self.lock:
                done.add(index)
                state.done = sorted(done)
                self._save(state)
                self.lock.notify_all()

        hashing.thread.start()
        try:
            with ThreadPoolExecutor(max_workers=self.options.connections) as pool:
                futures = [pool.submit(work, i) for i in pending]
                for future in futures:
                    try:
                        future.result()
                    except BaseException:
                        hashing.stop.set()
                        raise
        finally:
            with self.lock:
                self.lock.notify_all()
            hashing.thread.join()
        return hashing.hasher.hexdigest()


def _discard_partial(target: Path) -> None:
    for path in (part_path(target), state_path(target)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    remove_stale_temps(state_path(target))


def fetch_file(
    plan: FilePlan, net: Net, progress: Callable[[int], None], ledger: Ledger, ledger_lock: threading.Lock,
) -> FileResult:
    """Fetch one file (resuming), verify it, re-fetch once on a bad checksum, and move it into place."""
    remote, target = plan.remote, plan.target
    fetched = 0
    digest = None
    for attempt in (1, 2):
        job = _FileJob(plan, net, progress)
        digest = job.run()
        fetched += job.fetched
        part = part_path(target)
        size = part.stat().st_size
        if size == remote.size and (remote.sha256 is None or digest == remote.sha256):
            os.replace(part, target)
            fsync_dir(target.parent)
            state_path(target).unlink(missing_ok=True)
            remove_stale_temps(state_path(target))
            with ledger_lock:
                ledger.record(remote, target, digest if remote.sha256 else None)
            status = "downloaded" if attempt == 1 else "downloaded-after-refetch"
            return FileResult(remote.path, target, remote.size, digest if remote.sha256 else None, status, fetched)
        _discard_partial(target)
        progress(-remote.size)
    raise ChecksumError(
        f"{remote.path} failed its sha256 check twice (expected {remote.sha256}, got {digest})",
        "the source serves a damaged file: try another --source, and report it to the mirror's operator",
    )


def copy_local(plan: FilePlan, progress: Callable[[int], None], ledger: Ledger, ledger_lock: threading.Lock) -> FileResult:
    """A local-folder source: copy at disk speed, hashing on the way, then the same checks."""
    from dslocal.gguf_tools.layout import copy_range

    remote, target = plan.remote, plan.target
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    hasher = hashlib.sha256()
    src = os.open(remote.url, os.O_RDONLY)
    dst = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        copy_range(src, 0, dst, 0, remote.size, hasher=hasher, on_bytes=progress)
        os.fsync(dst)
    finally:
        os.close(src)
        os.close(dst)
    digest = hasher.hexdigest()
    if remote.sha256 is not None and digest != remote.sha256:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{remote.url} does not match its SHA256SUMS entry", "copy the file to the source folder again")
    os.replace(part, target)
    fsync_dir(target.parent)
    with ledger_lock:
        ledger.record(remote, target, digest)
    return FileResult(remote.path, target, remote.size, digest, "downloaded", remote.size)


class _Meters:
    """Per-file and total byte counts, turned into progress events; status lines go the same way."""

    def __init__(self, plans: Sequence[FilePlan], progress: ProgressSink, notify: Notify) -> None:
        self.progress, self.notify = progress, notify
        self.total = sum(p.remote.size for p in plans)
        self.done = {p.remote.path: p.remote.size - p.remaining for p in plans}
        self.sizes = {p.remote.path: p.remote.size for p in plans}
        self.meters = {path: RateMeter() for path in [*self.done, ""]}
        self.lock = threading.Lock()

    def advance(self, n: int, name: str) -> None:
        with self.lock:
            self.done[name] += n
            file_done, all_done = self.done[name], sum(self.done.values())
            file_rate, file_eta = self.meters[name].update(file_done, self.sizes[name])
            rate, eta = self.meters[""].update(all_done, self.total)
        self.progress(Progress(f"file:{name}", file_done, self.sizes[name], name, file_rate, file_eta))
        self.progress(Progress("download", all_done, self.total, name, rate, eta))

    def status(self, message: str) -> None:
        """A visible status (e.g. "waiting for the Hub's rate limit (120s)"): a note, and the detail of an event."""
        self.notify(message)
        with self.lock:
            all_done = sum(self.done.values())
        self.progress(Progress("download", all_done, self.total, message))


def download(
    files: Sequence[RemoteFile],
    folder: Path,
    *,
    source: str,
    session: requests.Session | None = None,
    headers: dict[str, str] | None = None,
    options: DownloadOptions = DownloadOptions(),
    progress: ProgressSink = null_sink,
    notify: Notify = lambda message: None,
    local: bool = False,
) -> DownloadReport:
    """Download ``files`` into ``folder``: lock, preflight, fetch in parallel, verify.

    ``headers`` (the token) go to the files' own URLs only, never to a CDN on another host."""
    from dslocal.sources.http import make_session

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    session = session or make_session()
    with folder_lock(folder, options.lock_wait, notify):
        plans = plan_files(files, folder, source)
        preflight(plans, folder)
        meters = _Meters(plans, progress, notify)
        net = Net(session, dict(headers or {}), options, RateGate(meters.status), meters.status)
        ledger = Ledger(folder)
        remove_stale_temps(ledger.path)
        ledger_lock = threading.Lock()

        def one(plan: FilePlan) -> FileResult:
            if plan.verified:
                return FileResult(plan.remote.path, plan.target, plan.remote.size, plan.remote.sha256, "verified-before", 0)
            sink = lambda n, name=plan.remote.path: meters.advance(n, name)  # noqa: E731
            if local:
                return copy_local(plan, sink, ledger, ledger_lock)
            return fetch_file(plan, net, sink, ledger, ledger_lock)

        with ThreadPoolExecutor(max_workers=max(1, options.parallel_files)) as pool:
            results = list(pool.map(one, plans))
        return DownloadReport(folder, tuple(results))
