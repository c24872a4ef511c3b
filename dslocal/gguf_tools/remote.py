"""Read GGUF headers over HTTP with Range requests, with a cache keyed by URL and ETag.

Only the header is fetched (in chunks that start at 1 MiB and double), so inspecting
a 50 GB shard costs a few MB. A cached header is reused when a HEAD request shows the
same identity (the hub's ``X-Linked-Etag`` where it redirects, else the ETag), and then no
header bytes are read at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import requests

from dslocal.errors import NetworkError
from dslocal.fsutil import atomic_write_bytes
from dslocal.gguf_tools.header import BytesSource, GGUFFormatError, GGUFHeader, read_header
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, network_error, normalise_etag, raise_for_status

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class HttpSource:
    """A ByteSource over one URL; counts the body bytes it receives in ``bytes_read``."""

    def __init__(self, url: str, session: requests.Session, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.name = url
        self.session = session
        self.headers = dict(headers or {})
        self.size: int | None = None
        self.etag: str | None = None
        self.bytes_read = 0

    def read_at(self, offset: int, length: int) -> bytes:
        if length <= 0 or (self.size is not None and offset >= self.size):
            return b""
        headers = {**self.headers, "Range": f"bytes={offset}-{offset + length - 1}", "Accept-Encoding": "identity"}
        try:
            with self.session.get(
                self.url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            ) as response:
                if response.status_code == 416:
                    return b""
                raise_for_status(response, self.url)
                self.etag = self.etag or _etag(response)
                if response.status_code == 206:
                    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                    if match is None or int(match[1]) != offset:
                        raise NetworkError(
                            f"{self.url}: asked for bytes from {offset}, the server answered"
                            f" {response.headers.get('Content-Range') or 'no Content-Range'}",
                            "the server mishandles Range requests: try another source or mirror",
                        )
                    if match[3] != "*":
                        self.size = int(match[3])
                    data = response.raw.read(length, decode_content=True)
                    self.bytes_read += len(data)
                    return data
                # 200: the server ignored Range; read up to what we need and stop.
                length_header = response.headers.get("Content-Length")
                if length_header and length_header.isdigit():
                    self.size = int(length_header)
                data = response.raw.read(offset + length, decode_content=True)
                self.bytes_read += len(data)
                return data[offset:]
        except requests.RequestException as exc:
            raise network_error(exc, self.url) from None


def _etag(response: requests.Response) -> str | None:
    """The file's identity, normalised: the hub hop's ``X-Linked-Etag`` (huggingface_hub reads it from
    the redirect, not from the CDN, whose ETag may differ per node or be absent), else the hops'
    own ETag, and the final answer's ETag only when nothing before it had one."""
    answers = [*response.history, response]
    for name in ("X-Linked-Etag", "ETag"):
        for answer in answers:
            value = normalise_etag(answer.headers.get(name))
            if value:
                return value
    return None


@dataclass(frozen=True)
class RemoteHeader:
    header: GGUFHeader
    bytes_read: int
    from_cache: bool


class HeaderCache:
    """Header bytes on disk, keyed by URL and validated by ETag."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        return self.folder / f"{key}.json", self.folder / f"{key}.bin"

    def load(self, url: str) -> tuple[dict, bytes] | None:
        meta_path, data_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            data = data_path.read_bytes()
        except (OSError, ValueError):
            return None
        if meta.get("url") != url or len(data) != meta.get("header_bytes"):
            return None
        return meta, data

    def store(self, url: str, etag: str, size: int, data: bytes) -> None:
        meta_path, data_path = self._paths(url)
        atomic_write_bytes(data_path, data)
        meta = {"url": url, "etag": etag, "size": size, "header_bytes": len(data)}
        atomic_write_bytes(meta_path, json.dumps(meta).encode())


def _head_etag(url: str, session: requests.Session, headers: dict[str, str]) -> str | None:
    try:
        response = session.head(url, headers=headers, allow_redirects=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    except requests.RequestException as exc:
        raise network_error(exc, url) from None
    raise_for_status(response, url)
    return _etag(response)


def read_remote_header(
    url: str,
    session: requests.Session,
    *,
    headers: dict[str, str] | None = None,
    cache: HeaderCache | None = None,
) -> RemoteHeader:
    """The header of the GGUF at ``url``, from the cache when its ETag still matches."""
    headers = dict(headers or {})
    if cache is not None:
        cached = cache.load(url)
        if cached is not None:
            meta, data = cached
            if _head_etag(url, session, headers) == meta["etag"]:
                header = read_header(BytesSource(data, name=url, size=meta["size"]))
                return RemoteHeader(header, 0, True)
    source = HttpSource(url, session, headers)
    header = read_header(source)
    if source.size is None:
        raise GGUFFormatError(f"{url}: the server did not say how large the file is", "try another source or mirror")
    if cache is not None and source.etag:
        cache.store(url, source.etag, source.size, header.raw)
    return RemoteHeader(header, source.bytes_read, False)
