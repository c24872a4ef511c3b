"""A real HTTP file server on loopback that honours Range, HEAD and ETag, for tests.

It serves a folder the way a hub's ``resolve`` endpoint serves files: ``206`` with
``Content-Range`` for a range, ``ETag`` on every answer, optional redirects to a
"CDN" path, and switches to misbehave (ignore Range). It counts the body bytes it
sends so tests can prove how little was read.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class ServerState:
    root: Path
    prefix: str = "/files/"
    ignore_range: bool = False
    redirect: bool = False  # answer /files/... with a 302 to /cdn/...
    etag_salt: str = ""
    body_bytes_sent: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, range)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def etag(self, path: Path) -> str:
        stat = path.stat()
        return '"' + hashlib.sha1(f"{path.name}{stat.st_size}{stat.st_mtime_ns}{self.etag_salt}".encode()).hexdigest() + '"'


def _handler(state: ServerState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _resolve(self) -> Path | None:
            path = unquote(urlsplit(self.path).path)
            for prefix in (state.prefix, "/cdn/"):
                if path.startswith(prefix):
                    target = (state.root / path[len(prefix):]).resolve()
                    if state.root.resolve() in target.parents and target.is_file():
                        return target
            return None

        def _serve(self, with_body: bool) -> None:
            range_header = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.command, self.path, range_header))
            if state.redirect and self.path.startswith(state.prefix):
                self.send_response(302)
                self.send_header("Location", "/cdn/" + self.path[len(state.prefix):])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            target = self._resolve()
            if target is None:
                body = b"Entry not found"
                self.send_response(404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if with_body:
                    self.wfile.write(body)
                return
            size = target.stat().st_size
            start, end, status = 0, size - 1, 200
            match = _RANGE.match(range_header or "")
            if match and not state.ignore_range:
                start = int(match[1])
                end = min(int(match[2]) if match[2] else size - 1, size - 1)
                if start >= size:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            self.send_response(status)
            self.send_header("ETag", state.etag(target))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if not with_body:
                return
            with open(target, "rb") as handle:
                handle.seek(start)
                left = end - start + 1
                try:
                    while left > 0:
                        chunk = handle.read(min(left, 1 << 16))
                        self.wfile.write(chunk)
                        left -= len(chunk)
                        with state.lock:
                            state.body_bytes_sent += len(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return

        def do_GET(self) -> None:  # noqa: N802
            self._serve(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve(False)

    return Handler


@contextmanager
def serve_folder(root: Path, **options: object) -> Iterator[tuple[str, ServerState]]:
    """Serve ``root`` on 127.0.0.1; yields (base URL of /files/, state)."""
    state = ServerState(root=root, **options)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{state.prefix}", state
    finally:
        server.shutdown()
        server.server_close()
