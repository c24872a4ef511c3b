"""Air-gapped sources: a local folder (USB drive, NFS share) or a plain HTTP server on the intranet.

Both may carry a ``SHA256SUMS`` file (``sha256sum`` output) beside the model files;
files listed there are verified, others are checked for size only. For a plain HTTP
server the ``SHA256SUMS`` file is the listing (``sha256sum *.gguf > SHA256SUMS``, then
any static file server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests

from dslocal.errors import InputError, NotFoundError
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, network_error, raise_for_status
from dslocal.sources.listing import RemoteFile, check_remote_path

SUMS = "SHA256SUMS"


def parse_sums(text: str) -> dict[str, str]:
    """``sha256sum`` output: ``HEX  NAME`` or ``HEX *NAME`` per line."""
    sums = {}
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if len(parts) == 2 and len(parts[0]) == 64:
            sums[parts[1].lstrip("*").removeprefix("./")] = parts[0].lower()
    return sums


@dataclass(frozen=True)
class LocalSource:
    name: str
    root: Path

    def headers(self) -> dict[str, str]:
        return {}

    def folder_for(self, repo: str) -> Path:
        nested = self.root / repo
        return nested if nested.is_dir() else self.root

    def list_files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        folder = self.folder_for(repo)
        if not folder.is_dir():
            raise NotFoundError(f"{folder} is not a folder", "point --source at the folder holding the model files")
        sums_path = folder / SUMS
        sums = parse_sums(sums_path.read_text(encoding="utf-8", errors="replace")) if sums_path.is_file() else {}
        files = []
        for dirpath, _dirnames, filenames in os.walk(folder):
            for filename in filenames:
                full = Path(dirpath) / filename
                rel = full.relative_to(folder).as_posix()
                if rel == SUMS or filename.startswith("."):
                    continue
                files.append(RemoteFile(check_remote_path(rel, str(folder)), full.stat().st_size, sums.get(rel), str(full)))
        return files


@dataclass(frozen=True)
class PlainHttpSource:
    name: str
    base: str

    def headers(self) -> dict[str, str]:
        return {}

    def list_files(self, repo: str, revision: str | None = None, session: requests.Session | None = None) -> list[RemoteFile]:
        from dslocal.sources.http import make_session

        session = session or make_session()
        folder = f"{self.base.rstrip('/')}/{repo}"
        try:
            response = session.get(f"{folder}/{SUMS}", timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except requests.RequestException as exc:
            raise network_error(exc, folder) from None
        if response.status_code == 404:
            raise InputError(
                f"{folder} has no {SUMS} listing and is not a Hugging Face-compatible hub",
                f"on the server run 'sha256sum *.gguf > {SUMS}' in the model's folder",
            )
        raise_for_status(response, f"{folder}/{SUMS}")
        files = []
        for path, sha in sorted(parse_sums(response.text).items()):
            url = f"{folder}/{quote(check_remote_path(path, folder))}"
            try:
                head = session.head(url, allow_redirects=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
            except requests.RequestException as exc:
                raise network_error(exc, url) from None
            raise_for_status(head, url)
            files.append(RemoteFile(path, int(head.headers.get("Content-Length", 0)), sha, url))
        return files
