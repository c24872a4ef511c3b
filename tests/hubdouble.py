"""A double of the Hugging Face and ModelScope endpoints dslocal uses, on loopback, with faults.

This is a test double, not a hub. It serves a folder laid out as ``ROOT/ORG/NAME/...``:

Hugging Face (as huggingface_hub and hf-mirror speak it):
* ``GET /api/models/ORG/NAME/tree/REV[/PATH]?recursive=&expand=`` - JSON entries
  ``{type, oid, size, path, lfs: {oid: sha256, size, pointerSize}}``, paginated by a
  ``Link: <...&cursor=N>; rel="next"`` header; 404 with ``X-Error-Code: RepoNotFound``.
* ``GET|HEAD /ORG/NAME/resolve/REV/PATH`` - for LFS files a 302 to ``/cdn/...`` carrying
  ``X-Linked-Size`` and ``X-Linked-Etag``, as the Hub redirects to its CDN.
* ``GET|HEAD /cdn/ORG/NAME/PATH`` - the bytes, honouring ``Range`` (206 + Content-Range), with ETag.

ModelScope:
* ``GET /api/v1/models/ORG/NAME/repo/files?Revision=master&Recursive=true`` -
  ``{"Code": 200, "Data": {"Files": [{Name, Path, Size, Sha256, Type}]}}``.
* ``GET|HEAD /models/ORG/NAME/resolve/REV/PATH`` - the bytes, directly.

Plain file server: ``GET|HEAD /plain/ORG/NAME/PATH``.

Faults (:class:`Faults`) are consumed per file-body response: connections cut
mid-body, 500s, 429 with Retry-After, stalls, a wrong byte, random mixes of them,
a throttle, and a hostile listing with ``../`` paths.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Faults:
    cut: int = 0  # the next N file bodies are cut halfway (connection closed)
    error_500: int = 0
    error_429: int = 0  # answered with Retry-After: 1
    stall: int = 0  # the next N bodies stop for stall_seconds halfway
    stall_seconds: float = 3.0
    wrong_byte: int = 0  # the next N bodies that cover wrong_byte_offset get that byte flipped
    wrong_byte_offset: int = 0
    wrong_byte_always: bool = False
    random_rate: float = 0.0  # probability of a random cut/500/429/stall per body
    throttle_bps: float = 0.0  # bytes per second per response (0 = unlimited)
    hostile_listing: bool = False
    seed: int = 0
    rng: random.Random = field(default_factory=random.Random)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, name: str) -> bool:
        with self.lock:
            value = getattr(self, name)
            if value > 0:
                setattr(self, name, value - 1)
                return True
            return False

    def random_fault(self) -> str | None:
        with self.lock:
            if self.random_rate and self.rng.random() < self.random_rate:
                return self.rng.choice(["cut", "error_500", "error_429", "stall"])
        return None


@dataclass
class Stats:
    body_bytes: int = 0
    file_requests: int = 0
    listing_requests: int = 0
    authorized_paths: list[str] = field(default_factory=list)  # requests that carried an Authorization header
    lock: threading.Lock = field(default_factory=threading.Lock)


class HubDouble:
    def __init__(self, root: Path, *, page_size: int = 3) -> None:
        self.root = root
        self.page_size = page_size
        self.faults = Faults()
        self.stats = Stats()
        self._sha: dict[Path, str] = {}
        self.url = ""

    def sha256(self, path: Path) -> str:
        if path not in self._sha:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._sha[path] = digest.hexdigest()
        return self._sha[path]

    def repo_dir(self, org: str, name: str) -> Path | None:
        folder = self.root / org / name
        return folder if folder.is_dir() else None

    def entries(self, repo: Path) -> list[dict]:
        """Files and folders of a repository, in sorted path order."""
        out = []
        for path in sorted(repo.rglob("*")):
            rel = path.relative_to(repo).as_posix()
            if path.is_dir():
                out.append({"type": "directory", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": 0, "path": rel})
                continue
            size = path.stat().st_size
            entry = {"type": "file", "oid": hashlib.sha1(rel.encode()).hexdigest(), "size": size, "path": rel}
            if path.suffix == ".gguf":
                entry["lfs"] = {"oid": self.sha256(path), "size": size, "pointerSize": 134}
            out.append(entry)
        if self.faults.hostile_listing:
            out.append({"type": "file", "oid": "0" * 40, "size": 5, "path": "../../etc/evil.gguf",
                        "lfs": {"oid": "0" * 64, "size": 5, "pointerSize": 134}})
        return out


def _handler(hub: HubDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        # -- helpers
        def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _empty(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _not_found(self) -> None:
            self._json(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})

        # -- routes
        def _route(self) -> None:
            if self.headers.get("Authorization"):
                with hub.stats.lock:
                    hub.stats.authorized_paths.append(self.path)
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            query = parse_qs(parts.query)
            m = re.match(r"^/api/models/([^/]+)/([^/]+)/tree/([^/]+)(?:/(.*))?$", path)
            if m:
                return self._hf_tree(m[1], m[2], m[4] or "", query)
            m = re.match(r"^/api/v1/models/([^/]+)/([^/]+)/repo/files$", path)
            if m:
                return self._ms_files(m[1], m[2])
            m = re.match(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$", path)
            if m and not path.startswith("/models/"):
                return self._hf_resolve(m[1], m[2], m[4])
            m = re.match(r"^/(?:cdn|plain)/([^/]+)/([^/]+)/(.+)$", path)
            if m:
                return self._serve(m[1], m[2], m[3])
            m = re.match(r"^/models/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$", path)
            if m:
                return self._serve(m[1], m[2], m[4])
            self._not_found()

        def _hf_tree(self, org: str, name: str, sub: str, query: dict[str, list[str]]) -> None:
            with hub.stats.lock:
                hub.stats.listing_requests += 1
            repo = hub.repo_dir(org, name)
            if repo is None:
                return self._not_found()
            entries = [e for e in hub.entries(repo) if not sub or e["path"].startswith(sub.rstrip("/") + "/")]
            if query.get("recursive", ["false"])[0].lower() not in ("true", "1"):
                depth = sub.count("/") + (1 if sub else 0)
                entries = [e for e in entries if e["path"].count("/") == depth]
            cursor = int(query.get("cursor", ["0"])[0])
            page = entries[cursor : cursor + hub.page_size]
            headers = {}
            if cursor + hub.page_size < len(entries):
                base = f"{hub.url}/api/models/{org}/{name}/tree/main" + (f"/{quote(sub)}" if sub else "")
                headers["Link"] = f'<{base}?recursive=true&expand=false&cursor={cursor + hub.page_size}>; rel="next"'
            self._json(200, page, headers)

        def _ms_files(self, org: str, name: str) -> None:
            with hub.stats.lock:
                hub.stats.listing_requests += 1
            repo = hub.repo_dir(org, name)
            if repo is None:
                return self._json(200, {"Code": 10010205001, "Message": "model not found", "Data": None})
            files = [
                {"Name": e["path"].rsplit("/", 1)[-1], "Path": e["path"], "Size": e["size"],
                 "Sha256": (e.get("lfs") or {}).get("oid", ""), "Type": "tree" if e["type"] == "directory" else "blob",
                 "Revision": "abc"}
                for e in hub.entries(repo)
            ]
            self._json(200, {"Code": 200, "Data": {"Files": files}, "Success": True})

        def _file(self, org: str, name: str, rel: str) -> Path | None:
            repo = hub.repo_dir(org, name)
            if repo is None:
                return None
            target = (repo / rel).resolve()
            return target if repo.resolve() in target.parents and target.is_file() else None

        def _hf_resolve(self, org: str, name: str, rel: str) -> None:
            target = self._file(org, name, rel)
            if target is None:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            if target.suffix != ".gguf":
                return self._serve(org, name, rel)
            self._empty(302, {
                "Location": f"{hub.url}/cdn/{org}/{name}/{quote(rel)}",
                "X-Linked-Size": str(target.stat().st_size),
                "X-Linked-Etag": f'"{hub.sha256(target)}"',
                "ETag": f'"{hub.sha256(target)}"',
            })

        def _serve(self, org: str, name: str, rel: str) -> None:
            target = self._file(org, name, rel)
            if target is None:
                return self._json(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"})
            size = target.stat().st_size
            etag = f'"{hub.sha256(target)}"'
            start, end, status = 0, size - 1, 200
            match = _RANGE.match(self.headers.get("Range") or "")
            if match:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else size - 1, size - 1)
                if start >= size:
                    return self._empty(416, {"Content-Range": f"bytes */{size}"})
                status = 206
            body = self.command != "HEAD"
            fault = None
            if body:
                with hub.stats.lock:
                    hub.stats.file_requests += 1
                for name_ in ("error_500", "error_429", "cut", "stall"):
                    if hub.faults.take(name_):
                        fault = name_
                        break
                fault = fault or hub.faults.random_fault()
            if fault == "error_500":
                return self._json(500, {"error": "Internal Error"})
            if fault == "error_429":
                return self._json(429, {"error": "Too Many Requests"}, {"Retry-After": "1"})
            self.send_response(status)
            self.send_header("ETag", etag)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not body:
                return
            flip = hub.faults.wrong_byte_offset if start <= hub.faults.wrong_byte_offset <= end else None
            if flip is not None and not (hub.faults.wrong_byte_always or hub.faults.take("wrong_byte")):
                flip = None
            self._send_body(target, start, end, fault, flip)

        def _send_body(self, target: Path, start: int, end: int, fault: str | None, flip: int | None) -> None:
            length = end - start + 1
            half = start + length // 2
            throttle = hub.faults.throttle_bps
            try:
                with open(target, "rb") as handle:
                    if fault is None and flip is None and not throttle:
                        sent = self.connection.sendfile(handle, start, length)
                        with hub.stats.lock:
                            hub.stats.body_bytes += sent
                        return
                    position = start
                    handle.seek(start)
                    began = time.monotonic()
                    while position <= end:
                        block = bytearray(handle.read(min(1 << 16, end + 1 - position)))
                        if fault in ("cut", "stall") and position + len(block) > half:
                            block = block[: max(half - position, 0)]
                            self.wfile.write(bytes(block))
                            self.wfile.flush()
                            with hub.stats.lock:
                                hub.stats.body_bytes += len(block)
                            if fault == "stall":
                                time.sleep(hub.faults.stall_seconds)
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if flip is not None and position <= flip < position + len(block):
                            block[flip - position] ^= 0xFF
                        self.wfile.write(bytes(block))
                        position += len(block)
                        with hub.stats.lock:
                            hub.stats.body_bytes += len(block)
                        if throttle:
                            ahead = (position - start) / throttle - (time.monotonic() - began)
                            if ahead > 0:
                                time.sleep(ahead)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True

        def do_GET(self) -> None:  # noqa: N802
            self._route()

        def do_HEAD(self) -> None:  # noqa: N802
            self._route()

    return Handler


@contextmanager
def run_hub(root: Path, **options: object) -> Iterator[HubDouble]:
    hub = HubDouble(root, **options)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub))
    server.daemon_threads = True
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hub
    finally:
        server.shutdown()
        server.server_close()
