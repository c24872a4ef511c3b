"""``dslocal ollama install``: the official Ollama release for this OS and CPU, checked and unpacked
under dslocal's data folder. The release base URL is a setting, so users in China can point it at
a GitHub mirror or an intranet copy of the release assets.
"""

from __future__ import annotations

import os
import platform
import shutil
import tarfile
from pathlib import Path

import requests

from dslocal.errors import InputError, UsageError
from dslocal.sources.download import DownloadOptions, download
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, network_error, raise_for_status
from dslocal.sources.listing import RemoteFile
from dslocal.sources.local import parse_sums

DEFAULT_VERSION = "0.32.15"
RELEASE_BASE = "https://github.com/ollama/ollama/releases/download"


def asset_name(system: str | None = None, machine: str | None = None) -> str:
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    if system == "darwin":
        raise UsageError("on macOS Ollama comes as an app", "install it from https://ollama.com/download/mac")
    if system == "windows":
        raise UsageError("on Windows Ollama comes with an installer", "install it from https://ollama.com/download/windows")
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if system != "linux" or arch is None:
        raise UsageError(f"no Ollama release for {system}/{machine}", "see https://ollama.com/download")
    return f"ollama-linux-{arch}.tgz"


def _safe_extract(archive: Path, dest: Path) -> None:
    with tarfile.open(archive, "r:gz") as tar:
        root = dest.resolve()
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if root != target and root not in target.parents or member.issym() and os.path.isabs(member.linkname):
                raise InputError(f"the archive holds an unsafe path {member.name!r}", "the download is not an Ollama release")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without the tarfile filters
            tar.extractall(dest)


def install(dest: Path, *, version: str = DEFAULT_VERSION, base: str = RELEASE_BASE,
            session: requests.Session | None = None, progress=None, notify=lambda m: None) -> Path:
    """Download, verify (sha256sum.txt of the release) and unpack Ollama into ``dest``; returns the binary."""
    from dslocal.sources.http import make_session

    session = session or make_session()
    asset = asset_name()
    folder = f"{base.rstrip('/')}/v{version.lstrip('v')}"
    try:
        sums = session.get(f"{folder}/sha256sum.txt", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        raise_for_status(sums, f"{folder}/sha256sum.txt")
        head = session.head(f"{folder}/{asset}", allow_redirects=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        raise_for_status(head, f"{folder}/{asset}")
    except requests.RequestException as exc:
        raise network_error(exc, folder) from None
    expected = parse_sums(sums.text).get(asset)
    if expected is None:
        raise InputError(f"the release's sha256sum.txt has no entry for {asset}", "check --version and the mirror")
    remote = RemoteFile(asset, int(head.headers.get("Content-Length", 0)), expected, f"{folder}/{asset}")
    downloads = dest.parent / f".{dest.name}-downloads"
    download([remote], downloads, source=folder, session=session, options=DownloadOptions(),
             **({"progress": progress} if progress else {}), notify=notify)
    staging = dest.parent / f".{dest.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _safe_extract(downloads / asset, staging)
    binary = staging / "bin" / "ollama"
    if not binary.is_file():
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(f"{asset} has no bin/ollama", "the download is not an Ollama release")
    old = dest.parent / f".{dest.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(staging, dest)
    shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    return dest / "bin" / "ollama"
