"""``dslocal ollama install``: the official Ollama release for this OS and CPU, checked and unpacked
under dslocal's data folder. The release base URL is a setting, so users in China can point it at
a GitHub mirror or an intranet copy of the release assets.

What a release holds (ollama/ollama ``.github/workflows/release.yaml``, ``scripts/install.sh``):

* Linux bundles are ``ollama-linux-<arch>.tar.zst`` since v0.14.0 (commit 34d0c55ea, "Linux: switch
  to zstd compression"); older releases shipped ``ollama-linux-<arch>.tgz``. Like install.sh, the
  ``.tar.zst`` is tried first and ``.tgz`` is the fall-back; versions before 0.14.0 ask for ``.tgz`` only.
* ``sha256sum.txt`` lists every asset (``sha256sum`` output, names as ``./NAME``); when the release or
  mirror serves it, the archive must match it, otherwise only its size is checked.
* The bundle unpacks to ``bin/ollama`` and ``lib/ollama/...`` (from v0.30 with ``llama-server`` and
  ``llama-quantize``, and CUDA libraries in ``cuda_v*`` subfolders).

The archive is downloaded with dslocal's resumable downloader, then streamed through the decoder
into a temporary folder beside the install (never held in memory); members that could land outside
that folder are refused. Only a complete, checked tree is renamed into place, so a failure or a
crash leaves the previous install (or none), never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import os
import platform
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from dslocal.errors import DiskError, DslocalError, InputError, NetworkError, NotFoundError, UsageError
from dslocal.fsutil import fsync_dir
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.sources.download import ChecksumError, download
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, network_error, raise_for_status
from dslocal.sources.listing import RemoteFile
from dslocal.sources.local import parse_sums
from dslocal.units import format_bytes

DEFAULT_VERSION = "0.32.15"
RELEASE_BASE = "https://github.com/ollama/ollama/releases/download"
ZSTD_SINCE = (0, 14, 0)  # the first release whose Linux bundles are .tar.zst
SUMS = "sha256sum.txt"
MIRROR_HINT = "or point DSLOCAL_OLLAMA_RELEASE_BASE at another mirror of the release assets"
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(-rc\d+)?")
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DATA_FILTER = hasattr(tarfile, "data_filter")  # Python 3.12, and 3.10.12 / 3.11.4 on


@dataclass(frozen=True)
class Asset:
    name: str  # e.g. "ollama-linux-amd64.tar.zst"
    url: str
    size: int
    sha256: str | None  # from the release's sha256sum.txt; None when the release serves none

    @property
    def compression(self) -> str:
        return "zstd" if self.name.endswith(".tar.zst") else "gzip"


def linux_arch(system: str | None = None, machine: str | None = None) -> str:
    """Ollama's name for this CPU ("amd64", "arm64"); other systems get a pointer to their installer."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    if system == "darwin":
        raise UsageError("on macOS Ollama comes as an app", "install it from https://ollama.com/download/mac")
    if system == "windows":
        raise UsageError("on Windows Ollama comes with an installer", "install it from https://ollama.com/download/windows")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system != "linux" or arch is None:
        raise UsageError(f"no Ollama release for {system}/{machine}", "see https://ollama.com/download")
    return arch


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not an Ollama version", f"give --version as X.Y.Z, e.g. {DEFAULT_VERSION}")
    return int(match[1]), int(match[2]), int(match[3])


def asset_names(version: str, arch: str) -> tuple[str, ...]:
    """The Linux bundle names to try for ``version``, best first."""
    stem = f"ollama-linux-{arch}"
    if parse_version(version) < ZSTD_SINCE:
        return (f"{stem}.tgz",)
    return (f"{stem}.tar.zst", f"{stem}.tgz")


def _raise_for_status(response: requests.Response, url: str) -> None:
    """:func:`raise_for_status` with a hint for release mirrors instead of model hubs."""
    try:
        raise_for_status(response, url)
    except DslocalError as exc:
        raise type(exc)(exc.message, f"try again later, {MIRROR_HINT}") from None


def _network_error(exc: requests.RequestException, what: str) -> NetworkError:
    error = network_error(exc, what)
    if isinstance(exc, requests.exceptions.SSLError):
        return error
    return NetworkError(error.message, f"check the network and any proxy settings, {MIRROR_HINT}")


def _release_sums(session: requests.Session, folder: str) -> dict[str, str] | None:
    """The release's sha256sum.txt as {name: sha256}, or None when it serves none (404)."""
    url = f"{folder}/{SUMS}"
    response = session.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    if response.status_code == 404:
        return None
    _raise_for_status(response, url)
    return parse_sums(response.text)


def find_asset(session: requests.Session, base: str, version: str, arch: str) -> Asset:
    """HEAD each candidate name (as install.sh does) and pair the first one served with its sha256."""
    version = version.strip().lstrip("v")
    folder = f"{base.rstrip('/')}/v{version}"
    names = asset_names(version, arch)
    try:
        sums = _release_sums(session, folder)
        for name in names:
            url = f"{folder}/{name}"
            head = session.head(url, allow_redirects=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            if head.status_code == 404:
                continue
            _raise_for_status(head, url)
            return _asset(name, url, head, sums)
    except requests.RequestException as exc:
        raise _network_error(exc, folder) from None
    raise NotFoundError(
        f"release {version} has no asset for linux-{arch} (asked {folder} for {' and '.join(names)})",
        f"check --version (e.g. --version {DEFAULT_VERSION}), {MIRROR_HINT}",
    )


def _asset(name: str, url: str, head: requests.Response, sums: dict[str, str] | None) -> Asset:
    length = head.headers.get("Content-Length", "")
    if not length.isdigit() or int(length) == 0:
        raise NetworkError(f"{url}: the server does not say how large the file is", MIRROR_HINT.removeprefix("or "))
    if sums is not None and name not in sums:
        raise InputError(f"the release's {SUMS} has no entry for {name}", f"check --version, {MIRROR_HINT}")
    return Asset(name, url, int(length), None if sums is None else sums[name])


# --------------------------------------------------------------------------- unpacking


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def unsafe_reason(member: tarfile.TarInfo, root: str) -> str | None:
    """Why ``member`` must not be unpacked under the real path ``root``, or None when it is safe."""
    name = member.name
    if os.path.isabs(name):
        return "an absolute path"
    if not _inside(os.path.realpath(os.path.join(root, name)), root):
        return "a path outside the install folder"
    if member.issym():
        if os.path.isabs(member.linkname):
            return "a symlink to an absolute path"
        parent = os.path.realpath(os.path.join(root, os.path.dirname(name)))
        if not _inside(os.path.realpath(os.path.join(parent, member.linkname)), root):
            return "a symlink pointing outside the install folder"
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _inside(os.path.realpath(os.path.join(root, member.linkname)), root):
            return "a hard link to a file outside the install folder"
    elif not (member.isreg() or member.isdir()):
        return "a device or other special file"
    return None


@contextlib.contextmanager
def _tar_stream(archive: Path, compression: str) -> Iterator[tuple[tarfile.TarFile, IO[bytes]]]:
    """The archive as a forward-only tar stream, and the raw file (whose position measures progress)."""
    import zstandard

    with open(archive, "rb") as raw:
        if compression == "zstd":
            stream = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True, closefd=False)
        else:
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        with stream:
            with tarfile.open(fileobj=stream, mode="r|") as tar:
                yield tar, raw
            while stream.read(1 << 20):  # to the end of the stream, so the zstd/gzip checksum is checked
                pass


def _checked_members(tar: tarfile.TarFile, raw: IO[bytes], root: str, asset: Asset,
                     progress: ProgressSink) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        reason = unsafe_reason(member, root)
        if reason is not None:
            raise InputError(
                f"{asset.name} holds {reason} ({member.name!r}); nothing was installed",
                f"this is not an Ollama release: check --version, {MIRROR_HINT}",
            )
        if not _DATA_FILTER:  # what the "data" filter does to modes: no setuid/setgid/sticky, no group/other write
            member.mode &= 0o755
        progress(Progress("unpack", raw.tell(), asset.size, member.name))
        yield member


def unpack(archive: Path, asset: Asset, into: Path, progress: ProgressSink = null_sink) -> None:
    """Stream ``archive`` into the existing empty folder ``into``, refusing unsafe members."""
    root = os.path.realpath(into)
    with _tar_stream(archive, asset.compression) as (tar, raw):
        members = _checked_members(tar, raw, root, asset, progress)
        if _DATA_FILTER:
            tar.extractall(root, members=members, filter="data")
        else:  # pragma: no cover - Python before 3.10.12 / 3.11.4: _checked_members did the same checks
            tar.extractall(root, members=members)
        progress(Progress("unpack", asset.size, asset.size, ""))


def _unpack_error(exc: Exception, asset: Asset, where: Path) -> Exception:
    """The one-line error for a failure while unpacking (the staging folder is already gone)."""
    if isinstance(exc, DslocalError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return DiskError(f"the disk holding {where} filled up while unpacking {asset.name}; nothing was installed",
                         "free some space there (an Ollama bundle unpacks to several GB) and run the command again")
    if isinstance(exc, getattr(tarfile, "FilterError", ())):
        return InputError(f"{asset.name} holds an unsafe member ({exc}); nothing was installed", MIRROR_HINT)
    import zstandard

    if isinstance(exc, (tarfile.TarError, zstandard.ZstdError, EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(f"{asset.name} is a damaged or incomplete archive ({exc}); nothing was installed",
                          f"run the command again to download it anew, {MIRROR_HINT}")
    return exc


def _unpack_to_staging(archive: Path, asset: Asset, dest: Path, progress: ProgressSink) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the install is not
        unpack(archive, asset, staging, progress)
        binary = staging / "bin" / "ollama"
        if not binary.is_file() or not os.access(binary, os.X_OK):
            raise InputError(f"{asset.name} has no executable bin/ollama", f"this is not an Ollama release, {MIRROR_HINT}")
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, Exception):
            raise _unpack_error(exc, asset, dest.parent) from None
        raise
    return staging


# --------------------------------------------------------------------------- the install


def _old(dest: Path) -> Path:
    return dest.parent / f".{dest.name}.old"


def recover(dest: Path) -> None:
    """Undo what a crash can leave: a staging folder, or the previous install set aside mid-swap."""
    for stale in dest.parent.glob(f".{dest.name}.new-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if _old(dest).is_dir():
        if dest.exists():
            shutil.rmtree(_old(dest), ignore_errors=True)
        else:
            os.replace(_old(dest), dest)


def _swap_in(staging: Path, dest: Path) -> None:
    """Put the finished tree at ``dest``; until the second rename the old install waits in .old."""
    if dest.exists():
        os.replace(dest, _old(dest))
    os.replace(staging, dest)
    fsync_dir(dest.parent)
    shutil.rmtree(_old(dest), ignore_errors=True)


def _fetch(asset: Asset, downloads: Path, session: requests.Session, progress: ProgressSink, notify) -> Path:
    """Download (resumably) and check the archive; a bad checksum discards it."""
    remote = RemoteFile(asset.name, asset.size, asset.sha256, asset.url)
    try:
        download([remote], downloads, source=asset.url.rsplit("/", 1)[0], session=session, progress=progress,
                 notify=notify)
    except ChecksumError:
        shutil.rmtree(downloads, ignore_errors=True)
        raise ChecksumError(
            f"{asset.name} does not match the sha256 in the release's {SUMS} (expected {asset.sha256}, checked twice);"
            " nothing was installed",
            f"the server sends a damaged file: try again later, {MIRROR_HINT}",
        ) from None
    except DiskError as exc:
        raise DiskError(exc.message, "free some space in dslocal's data folder (or set DSLOCAL_HOME elsewhere)") from None
    except NetworkError as exc:
        raise NetworkError(exc.message, f"run the command again to resume the download, {MIRROR_HINT}") from None
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise DiskError(f"the disk holding {downloads} filled up while downloading {asset.name}",
                            "free some space and run the command again; the download resumes") from None
        raise
    return downloads / asset.name


@contextlib.contextmanager
def _install_lock(dest: Path) -> Iterator[None]:
    """One install at a time per folder: another one would clear this one's staging folder."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(dest.parent / f".{dest.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DslocalError(f"another 'dslocal ollama install' is installing into {dest}",
                           "wait for it to finish, or stop that process") from None
    try:
        yield
    finally:
        lock.release()


def install(dest: Path, *, version: str = DEFAULT_VERSION, base: str = RELEASE_BASE,
            session: requests.Session | None = None, progress: ProgressSink = null_sink,
            notify=lambda message: None) -> Path:
    """Download, verify and unpack Ollama ``version`` into ``dest``; returns the binary."""
    from dslocal.sources.http import make_session

    session = session or make_session()
    arch = linux_arch()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _install_lock(dest):
        recover(dest)
        asset = find_asset(session, base, version, arch)
        check = "its sha256 from the release's sha256sum.txt" if asset.sha256 else f"size only: the release serves no {SUMS}"
        notify(f"Ollama {version.lstrip('v')}: {asset.name} ({format_bytes(asset.size)}), checked by {check}")
        downloads = dest.parent / f".{dest.name}-downloads"
        archive = _fetch(asset, downloads, session, progress, notify)
        try:
            staging = _unpack_to_staging(archive, asset, dest, progress)
        finally:
            shutil.rmtree(downloads, ignore_errors=True)
        _swap_in(staging, dest)
    return dest / "bin" / "ollama"
