"""The downloader: parallel HTTP range requests, resumable after any crash, verified by sha256.

Each file is fetched in chunks by several connections into a hidden ``.NAME.part``
file beside its target; a small state file (``.NAME.part.json``) records the chunks
already written, so a rerun after a crash (SIGKILL included) fetches only what is
missing. The sha256 is computed while the bytes arrive, reading the finished prefix
back in order; a mismatch re-fetches the file once, then fails naming it. A verified
file is recorded in ``.dslocal/verified.json`` and never fetched or hashed again.
Only one downloader works in a folder at a time (a file lock); a second one waits
and says who holds the folder.

Durability: chunk data is not fsynced one by one (that would halve throughput); the
final sha256 check catches anything a power cut left half-written, and the file is
fsynced before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import dataclasses
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

import requests

from dslocal.errors import DiskError, DslocalError, NetworkError
from dslocal.fsutil import atomic_write_bytes, fsync_dir, remove_stale_temps
from dslocal.progress import Progress, ProgressSink, RateMeter, null_sink
from dslocal.sources.http import CONNECT_TIMEOUT, raise_for_status
from dslocal.sources.listing import RemoteFile, safe_target
from dslocal.units import format_bytes

STATE_VERSION = 1
META_DIR = ".dslocal"
Notify = Callable[[str], None]


@dataclass(frozen=True)
class DownloadOptions:
    connections: int = 4  # per file
    parallel_files: int = 2
    chunk_size: int = 64 << 20
    read_timeout: float = 30.0  # a stall longer than this aborts the request and retries
    max_attempts: int = 8  # per chunk
    backoff: float = 0.5  # seconds, doubled per attempt
    lock_wait: float | None = None  # seconds to wait for another downloader; None = forever


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


class _Restart(Exception):
    """The remote file changed (ETag) or the server ignores Range: start the file over."""

    def __init__(self, reason: str, whole_file: bool = False) -> None:
        super().__init__(reason)
        self.whole_file = whole_file


class ChecksumError(DslocalError):
    exit_code = NetworkError.exit_code


@dataclass
class _State:
    version: int
    url: str
    size: int
    sha256: str | None
    chunk: int
    etag: str | None = None
    done: list[int] = field(default_factory=list)


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

    @property
    def remaining(self) -> int:
        return 0 if self.verified else self.remote.size - self.done_bytes


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
        plans.append(FilePlan(remote, target, verified, done))
    return plans


def preflight(plans: Sequence[FilePlan], folder: Path) -> tuple[int, int]:
    """(bytes still to fetch, free bytes); refuses with the numbers when the disk is too small."""
    need = sum(p.remaining for p in plans)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need > free:
        raise DiskError(
            f"the download needs {format_bytes(need)} more in {folder}, there is {format_bytes(free)} free",
            "free some space, or choose another folder with --dir",
        )
    return need, free


# --------------------------------------------------------------------------- one file


class _FileJob:
    def __init__(
        self, plan: FilePlan, session: requests.Session, headers: dict[str, str], options: DownloadOptions,
        progress: Callable[[int], None],
    ) -> None:
        self.plan = plan
        self.remote = plan.remote
        self.session = session
        self.headers = headers
        self.options = options
        self.progress = progress
        self.lock = threading.Condition()
        self.fetched = 0

    # -- state
    def _fresh_state(self) -> _State:
        return _State(STATE_VERSION, self.remote.url, self.remote.size, self.remote.sha256, self.options.chunk_size)

    def _save(self, state: _State) -> None:
        atomic_write_bytes(state_path(self.plan.target), json.dumps(asdict(state)).encode())

    # -- one chunk
    def _fetch_chunk(self, fd: int, state: _State, index: int) -> None:
        start = index * state.chunk
        end = min(self.remote.size, start + state.chunk) - 1
        headers = {**self.headers, "Range": f"bytes={start}-{end}", "Accept-Encoding": "identity"}
        last_error = "no attempt"
        for attempt in range(self.options.max_attempts):
            written = 0
            try:
                with self.session.get(
                    self.remote.url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, self.options.read_timeout)
                ) as response:
                    if response.status_code >= 400 and response.status_code not in (429, 500, 502, 503, 504):
                        raise_for_status(response, self.remote.path)
                    if response.status_code in (429, 500, 502, 503, 504):
                        last_error = f"HTTP {response.status_code}"
                        raise requests.ConnectionError(last_error)
                    if response.status_code == 200 and (start, end) != (0, self.remote.size - 1):
                        raise _Restart("the server ignores Range requests", whole_file=True)
                    etag = response.headers.get("ETag")
                    with self.lock:
                        if state.etag is None:
                            state.etag = etag
                        elif etag and etag != state.etag:
                            raise _Restart("the file changed on the server")
                    position = start
                    for block in response.iter_content(1 << 20):
                        if position + len(block) > end + 1:
                            raise requests.ConnectionError("the server sent more than asked")
                        os.pwrite(fd, block, position)
                        position += len(block)
                        written += len(block)
                        self.progress(len(block))
                    if position != end + 1:
                        raise requests.ConnectionError(f"short read ({position - start} of {end + 1 - start} bytes)")
                with self.lock:
                    self.fetched += written
                return
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                self.progress(-written)
                last_error = str(exc)[:200] or type(exc).__name__
                time.sleep(min(self.options.backoff * (2**attempt), 30))
        raise NetworkError(
            f"{self.remote.path}: bytes {start}-{end} failed {self.options.max_attempts} times ({last_error})",
            "rerun the same command to resume, or try another --source",
        )

    # -- the whole file
    def run(self) -> str | None:
        """Fetch what is missing and return the sha256 of the complete file."""
        target = self.plan.target
        target.parent.mkdir(parents=True, exist_ok=True)
        state = _load_state(target, self.remote) or self._fresh_state()
        part = part_path(target)
        if self.remote.size == 0:
            part.write_bytes(b"")
            return hashlib.sha256().hexdigest()
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if not state.done:
                os.ftruncate(fd, self.remote.size)
            self._save(state)
            n_chunks = max(1, -(-self.remote.size // state.chunk))
            done = set(state.done)
            pending = [i for i in range(n_chunks) if i not in done]
            hasher = hashlib.sha256()
            hashed = [0]  # chunks hashed so far (in order)
            stop = threading.Event()

            def hash_prefix() -> None:
                view = memoryview(bytearray(8 << 20))
                while True:
                    with self.lock:
                        while hashed[0] < n_chunks and hashed[0] not in done and not stop.is_set():
                            self.lock.wait(0.5)
                        if stop.is_set() or hashed[0] >= n_chunks:
                            return
                    index = hashed[0]
                    offset, end = index * state.chunk, min(self.remote.size, (index + 1) * state.chunk)
                    while offset < end:
                        n = os.preadv(fd, [view[: min(len(view), end - offset)]], offset)
                        hasher.update(view[:n])
                        offset += n
                    hashed[0] += 1

            def work(index: int) -> None:
                if stop.is_set():
                    return
                self._fetch_chunk(fd, state, index)
                with self.lock:
                    done.add(index)
                    state.done = sorted(done)
                    self._save(state)
                    self.lock.notify_all()

            hash_thread = threading.Thread(target=hash_prefix, daemon=True)
            hash_thread.start()
            try:
                with ThreadPoolExecutor(max_workers=self.options.connections) as pool:
                    futures = [pool.submit(work, i) for i in pending]
                    for future in futures:
                        try:
                            future.result()
                        except BaseException:
                            stop.set()
                            raise
            finally:
                with self.lock:
                    self.lock.notify_all()
                hash_thread.join()
            os.fsync(fd)
        finally:
            os.close(fd)
        return hasher.hexdigest()


def _discard_partial(target: Path) -> None:
    for path in (part_path(target), state_path(target)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    remove_stale_temps(state_path(target))


def fetch_file(
    plan: FilePlan, session: requests.Session, headers: dict[str, str], options: DownloadOptions,
    progress: Callable[[int], None], ledger: Ledger, ledger_lock: threading.Lock,
) -> FileResult:
    """Fetch one file (resuming), verify it, re-fetch once on a bad checksum, and move it into place."""
    remote, target = plan.remote, plan.target
    fetched = 0
    for attempt in (1, 2):
        job = _FileJob(plan, session, headers, options, progress)
        try:
            digest = job.run()
        except _Restart as restart:
            _discard_partial(target)
            if restart.whole_file:  # one connection, one request for the whole file
                options = dataclasses.replace(options, chunk_size=max(remote.size, 1), connections=1)
            job = _FileJob(plan, session, headers, options, progress)
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
    """Download ``files`` into ``folder``: lock, preflight, fetch in parallel, verify."""
    from dslocal.sources.http import make_session

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    session = session or make_session()
    headers = dict(headers or {})
    with folder_lock(folder, options.lock_wait, notify):
        plans = plan_files(files, folder, source)
        preflight(plans, folder)
        total = sum(p.remote.size for p in plans)
        done_by_file = {p.remote.path: p.remote.size - p.remaining for p in plans}
        sizes = {p.remote.path: p.remote.size for p in plans}
        meters = {path: RateMeter() for path in [*done_by_file, ""]}
        counter_lock = threading.Lock()

        def advance(n: int, name: str) -> None:
            with counter_lock:
                done_by_file[name] += n
                file_done, all_done = done_by_file[name], sum(done_by_file.values())
                file_rate, file_eta = meters[name].update(file_done, sizes[name])
                rate, eta = meters[""].update(all_done, total)
            progress(Progress(f"file:{name}", file_done, sizes[name], name, file_rate, file_eta))
            progress(Progress("download", all_done, total, name, rate, eta))

        ledger = Ledger(folder)
        remove_stale_temps(ledger.path)
        ledger_lock = threading.Lock()
        results: list[FileResult] = []

        def one(plan: FilePlan) -> FileResult:
            if plan.verified:
                return FileResult(plan.remote.path, plan.target, plan.remote.size, plan.remote.sha256, "verified-before", 0)
            sink = lambda n, name=plan.remote.path: advance(n, name)  # noqa: E731
            if local:
                return copy_local(plan, sink, ledger, ledger_lock)
            return fetch_file(plan, session, headers, options, sink, ledger, ledger_lock)

        with ThreadPoolExecutor(max_workers=max(1, options.parallel_files)) as pool:
            for result in pool.map(one, plans):
                results.append(result)
        return DownloadReport(folder, tuple(results))
