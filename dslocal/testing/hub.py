"""A loopback test double of Hugging Face, hf-mirror and ModelScope, as dslocal uses them, with faults.

It lives in the package so that ``dslocal demo`` can publish its tiny model on loopback and run the
real download path against it, offline; the tests import it as ``hubdouble`` (``tests/hubdouble.py``).

This is a test double, not a hub: two small HTTP servers on 127.0.0.x that answer the way
the real services do on the points dslocal depends on (huggingface_hub ``file_download.py``,
``utils/_http.py``, ``utils/_pagination.py``; hub-docs ``rate-limits.md``, ``models-gated.md``;
modelscope ``hub/api.py``, ``hub/file_download.py``, ``hub/errors.py``). It serves a folder laid
out as ``ROOT/ORG/NAME/...`` as the first commit of every repository; :meth:`HubDouble.push`
adds commits and moves a branch.

The hub (``hub.url``):
* ``GET /api/models/ORG/NAME/revision/REV`` - ``{id, sha, gated, private, siblings}`` (``model_info``;
  without ``sha`` when ``info_has_sha`` is off).
* ``GET /api/models/ORG/NAME/tree/REV[/PATH]?recursive=&expand=`` - JSON entries
  ``{type, oid, size, path, lfs: {oid: sha256, size, pointerSize}}``, paginated by a
  ``Link: <...&cursor=N>; rel="next"`` header built from the revision asked for.
* ``GET|HEAD /ORG/NAME/resolve/REV/PATH`` - for LFS (``*.gguf``) files a 302 whose ``Location`` is
  on the CDN, carrying ``X-Linked-Etag`` (the sha256, quoted), ``X-Linked-Size`` and
  ``X-Repo-Commit`` and no ``ETag``, as the Hub answers; other files are served directly with
  ``ETag`` and ``X-Repo-Commit``. Every answer carries ``RateLimit``/``RateLimit-Policy``.
* Errors as the Hub sends them, with ``X-Error-Code`` and ``X-Error-Message``: a missing repository
  is 401 ``RepoNotFound`` to anonymous callers and 404 with a token; a missing revision 404
  ``RevisionNotFound``; a missing file 404 ``EntryNotFound``; a token not in ``valid_tokens`` 401
  "Invalid credentials in Authorization header"; a gated repository (:meth:`HubDouble.gate`) lists
  and shows its info to anyone, but its files answer 401 ``GatedRepo`` without a token and 403
  ``GatedRepo`` with a token that was not granted access.
* Rate limit (``rate_limit``): resolver calls counted in fixed windows; over the quota a 429 with
  ``RateLimit: "resolvers";r=0;t=<seconds>`` and ``RateLimit-Policy``, and no ``Retry-After``.

The CDN (``hub.cdn_url``, another loopback address, or at least another port):
* ``GET|HEAD /cdn/COMMIT/ORG/NAME/PATH?gen=N`` - the bytes of that commit, honouring ``Range``
  (206 + Content-Range, 416 past the end), with an ``ETag`` that differs on every answer or none at
  all (``cdn_etag``), like ``cas-bridge.xethub.hf.co``. :meth:`HubDouble.expire_links` makes every
  link handed out so far answer ``expired_status`` (403, or 410), and ``link_uses`` makes each link
  expire after that many requests, as signed URLs expire after a while.

ModelScope (on the hub's address):
* ``GET /api/v1/models/ORG/NAME/repo/files?Revision=master&Recursive=True`` -
  ``{"Code": 200, "Data": {"Files": [{Name, Path, Size, Sha256, Type}]}}``; a missing model is
  HTTP 404 with ``Code`` 10010205001 (or, with ``ms_missing_as_200``, HTTP 200 with that Code).
* ``GET|HEAD /api/v1/models/ORG/NAME/repo?Revision=REV&FilePath=PATH`` - the bytes, honouring Range.

Plain file server: ``GET|HEAD /plain/ORG/NAME/PATH``.

Faults (:class:`Faults`) are consumed per file-body response: connections cut mid-body, 500s,
429s (with ``RateLimit`` t=1), stalls, a wrong byte, a wrong range (with a Content-Range that
says so), random mixes of them, a throttle, and a hostile listing with ``../`` paths;
``ignore_range`` makes every file server answer 200 with the whole file.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")
MS_MISSING = 10010205001


@dataclass
class Faults:
    cut: int = 0  # the next N file bodies are cut halfway (connection closed)
    error_500: int = 0
    error_429: int = 0  # answered with RateLimit: "resolvers";r=0;t=1 (no Retry-After)
    stall: int = 0  # the next N bodies stop for stall_seconds halfway
    stall_seconds: float = 3.0
    wrong_byte: int = 0  # the next N bodies that cover wrong_byte_offset get that byte flipped
    wrong_byte_offset: int = 0
    wrong_byte_always: bool = False
    wrong_range: int = 0  # the next N ranged bodies start 4096 bytes later than asked (Content-Range says so)
    wrong_range_always: bool = False
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
class RateLimit:
    """The Hub's resolver quota: ``limit`` calls per fixed window of ``window`` seconds."""

    limit: int
    window: float
    started: float = field(default_factory=time.monotonic)
    used: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining, whole seconds to the reset) for one resolver call."""
        with self.lock:
            now = time.monotonic()
            if now - self.started >= self.window:
                self.started += (now - self.started) // self.window * self.window
                self.used = 0
            reset = max(1, math.ceil(self.started + self.window - now))
            if self.used >= self.limit:
                self.refused += 1
                return False, 0, reset
            self.used += 1
            return True, self.limit - self.used, reset

    def headers(self, remaining: int, reset: int) -> dict[str, str]:
        return {
            "RateLimit": f'"resolvers";r={remaining};t={reset}',
            "RateLimit-Policy": f'"fixed window";"resolvers";q={self.limit};w={math.ceil(self.window)}',
        }


@dataclass
class Stats:
    body_bytes: int = 0
    file_requests: int = 0  # file bodies answered (CDN, ModelScope, plain, direct resolves)
    listing_requests: int = 0  # tree pages, model_info and ModelScope listings
    resolve_requests: int = 0  # GET|HEAD on /resolve/ (what the Hub's "resolvers" quota counts)
    resolves: list[tuple[str, str]] = field(default_factory=list)  # (revision as asked, path)
    tree_revisions: list[str] = field(default_factory=list)  # the revision of every tree page asked for
    cdn_commits: list[str] = field(default_factory=list)  # the commit of every CDN body served
    ms_queries: list[dict[str, list[str]]] = field(default_factory=list)  # ModelScope query strings
    authorized_paths: list[str] = field(default_factory=list)  # hub requests that carried Authorization
    cdn_authorized: list[str] = field(default_factory=list)  # CDN requests that carried Authorization
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class HubDouble:
    def __init__(self, root: Path, *, page_size: int = 3) -> None:
        self.root = root
        self.page_size = page_size
        self.faults = Faults()
        self.stats = Stats()
        self.url = ""
        self.cdn_url = ""
        first = _sha1(f"initial commit of {root}")
        self.commits: dict[str, Path] = {first: root}
        self.refs: dict[str, str] = {"main": first, "master": first}
        self.gated: dict[str, set[str]] = {}  # repo -> tokens granted access
        self.valid_tokens: set[str] | None = None  # None: any token is a valid account
        self.rate_limit: RateLimit | None = None
        self.ignore_range = False
        self.cdn_etag = "varying"  # or "absent"
        self.expired_status = 403
        self.link_generation = 0
        self.link_uses: int | None = None  # requests each CDN link answers before it expires
        self._uses: dict[str, int] = {}
        self.ms_missing_as_200 = False
        self.info_has_sha = True  # False: model_info without "sha", as a mirror might answer
        self._sha: dict[Path, str] = {}
        self._counter = itertools.count()

    # -- the test's levers
    def push(self, folder: Path, ref: str = "main") -> str:
        """A new commit whose tree is ``folder`` (laid out as ROOT/ORG/NAME/...); ``ref`` moves to it."""
        commit = _sha1(f"commit {len(self.commits)} of {folder}")
        # New dicts, not updates: handler threads may be iterating over the old ones.
        self.commits = {**self.commits, commit: folder}
        self.refs = {**self.refs, ref: commit}
        return commit

    def gate(self, repo: str, granted: tuple[str, ...] = ()) -> None:
        self.gated[repo] = set(granted)

    def expire_links(self) -> None:
        """Every CDN link handed out so far answers ``expired_status`` from now on."""
        self.link_generation += 1

    # -- what the handlers read
    def commit_for(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None

    def repo_exists(self, org: str, name: str) -> bool:
        return any((root / org / name).is_dir() for root in self.commits.values())

    def sha256(self, path: Path) -> str:
        if path not in self._sha:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            self._sha[path] = digest.hexdigest()
        return self._sha[path]

    def file(self, commit: str, org: str, name: str, rel: str) -> Path | None:
        repo = self.commits[commit] / org / name
        target = (repo / rel).resolve()
        return target if repo.resolve() in target.parents and target.is_file() else None

    def entries(self, repo: Path) -> list[dict]:
        """Files and folders of a repository, in sorted path order."""
        out = []
        for path in sorted(repo.rglob("*")):
            rel = path.relative_to(repo).as_posix()
            if path.is_dir():
                out.append({"type": "directory", "oid": _sha1(rel), "size": 0, "path": rel})
                continue
            size = path.stat().st_size
            entry = {"type": "file", "oid": _sha1(rel), "size": size, "path": rel}
            if path.suffix == ".gguf":
                entry["lfs"] = {"oid": self.sha256(path), "size": size, "pointerSize": 134}
            out.append(entry)
        if self.faults.hostile_listing:
            out.append({"type": "file", "oid": "0" * 40, "size": 5, "path": "../../etc/evil.gguf",
                        "lfs": {"oid": "0" * 64, "size": 5, "pointerSize": 134}})
        return out

    def link_expired(self, generation: int, link: str) -> bool:
        with self.stats.lock:
            used = self._uses[link] = self._uses.get(link, 0) + 1
        return generation < self.link_generation or (self.link_uses is not None and used > self.link_uses)

    def cdn_etag_value(self) -> str | None:
        return None if self.cdn_etag == "absent" else f'"cdn-{next(self._counter)}-{random.getrandbits(32):08x}"'


class _Handler(BaseHTTPRequestHandler):
    """What the hub and the CDN share: JSON answers, bodies with Range and faults."""

    protocol_version = "HTTP/1.1"
    hub: HubDouble

    def log_message(self, *args: object) -> None:
        pass

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

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        coded = {"X-Error-Code": code} if code else {}
        self._json(status, {"error": message}, {**coded, "X-Error-Message": message, **(headers or {})})

    def _serve(self, target: Path, headers: dict[str, str]) -> None:
        """The bytes of ``target``, honouring Range unless told not to, with the faults."""
        hub = self.hub
        size = target.stat().st_size
        start, end, status = 0, size - 1, 200
        match = _RANGE.match(self.headers.get("Range") or "")
        if match and not hub.ignore_range:
            start = int(match[1])
            end = min(int(match[2]) if match[2] else size - 1, size - 1)
            if start >= size:
                return self._empty(416, {"Content-Range": f"bytes */{size}"})
            status = 206
        body = self.command != "HEAD"
        fault = self._take_fault() if body else None
        if fault == "error_500":
            return self._json(500, {"error": "Internal Error"})
        if fault == "error_429":
            return self._json(429, {"error": "Too Many Requests"}, RateLimit(1, 1.0).headers(0, 1))
        if status == 206 and end + 1 < size and (hub.faults.wrong_range_always or hub.faults.take("wrong_range")):
            start, end = start + 4096, min(end + 4096, size - 1)  # a different range, said truthfully
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not body:
            return
        with hub.stats.lock:
            hub.stats.file_requests += 1
        flip = hub.faults.wrong_byte_offset if start <= hub.faults.wrong_byte_offset <= end else None
        if flip is not None and not (hub.faults.wrong_byte_always or hub.faults.take("wrong_byte")):
            flip = None
        self._send_body(target, start, end, fault, flip)

    def _take_fault(self) -> str | None:
        for name in ("error_500", "error_429", "cut", "stall"):
            if self.hub.faults.take(name):
                return name
        return self.hub.faults.random_fault()

    def _send_body(self, target: Path, start: int, end: int, fault: str | None, flip: int | None) -> None:
        hub = self.hub
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

    def _route(self) -> None:  # pragma: no cover - each server has its own
        raise NotImplementedError


class _HubHandler(_Handler):
    def _token(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        return value.removeprefix("Bearer ").strip() or None

    def _route(self) -> None:
        hub = self.hub
        if self.headers.get("Authorization"):
            with hub.stats.lock:
                hub.stats.authorized_paths.append(self.path)
        token = self._token()
        if token is not None and hub.valid_tokens is not None and token not in hub.valid_tokens:
            return self._error(401, "", "Invalid credentials in Authorization header")
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        m = re.match(r"^/api/models/([^/]+)/([^/]+)/revision/([^/]+)$", path)
        if m:
            return self._model_info(m[1], m[2], m[3])
        m = re.match(r"^/api/models/([^/]+)/([^/]+)/tree/([^/]+)(?:/(.*))?$", path)
        if m:
            return self._hf_tree(m[1], m[2], m[3], m[4] or "", query)
        m = re.match(r"^/api/v1/models/([^/]+)/([^/]+)/repo/files$", path)
        if m:
            return self._ms_files(m[1], m[2], query)
        m = re.match(r"^/api/v1/models/([^/]+)/([^/]+)/repo$", path)
        if m:
            return self._ms_file(m[1], m[2], query)
        m = re.match(r"^/plain/([^/]+)/([^/]+)/(.+)$", path)
        if m:
            target = hub.file(hub.refs["main"], m[1], m[2], m[3])
            if target is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            return self._serve(target, {"ETag": f'"{hub.sha256(target)}"'})
        m = re.match(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._hf_resolve(m[1], m[2], m[3], m[4])
        self._error(404, "RepoNotFound", "Repository not found")

    # -- Hugging Face
    def _repo_or_error(self, org: str, name: str, revision: str) -> str | None:
        """The commit of ``revision``, or None after answering as the Hub does."""
        if not self.hub.repo_exists(org, name):
            status = 404 if self._token() else 401  # anonymous callers cannot tell missing from private
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        commit = self.hub.commit_for(revision)
        if commit is None or not (self.hub.commits[commit] / org / name).is_dir():
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return commit

    def _model_info(self, org: str, name: str, revision: str) -> None:
        with self.hub.stats.lock:
            self.hub.stats.listing_requests += 1
        commit = self._repo_or_error(org, name, revision)
        if commit is None:
            return
        repo = self.hub.commits[commit] / org / name
        siblings = [{"rfilename": e["path"]} for e in self.hub.entries(repo) if e["type"] == "file"]
        gated = "manual" if f"{org}/{name}" in self.hub.gated else False
        info = {"id": f"{org}/{name}", "sha": commit, "private": False, "gated": gated, "siblings": siblings}
        if not self.hub.info_has_sha:
            del info["sha"]
        self._json(200, info)

    def _hf_tree(self, org: str, name: str, revision: str, sub: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        with hub.stats.lock:
            hub.stats.listing_requests += 1
            hub.stats.tree_revisions.append(revision)
        commit = self._repo_or_error(org, name, revision)
        if commit is None:
            return
        repo = hub.commits[commit] / org / name
        entries = [e for e in hub.entries(repo) if not sub or e["path"].startswith(sub.rstrip("/") + "/")]
        if query.get("recursive", ["false"])[0].lower() not in ("true", "1"):
            depth = sub.count("/") + (1 if sub else 0)
            entries = [e for e in entries if e["path"].count("/") == depth]
        cursor = int(query.get("cursor", ["0"])[0])
        page = entries[cursor : cursor + hub.page_size]
        headers = {}
        if cursor + hub.page_size < len(entries):
            base = f"{hub.url}/api/models/{org}/{name}/tree/{quote(revision, safe='')}" + (f"/{quote(sub)}" if sub else "")
            headers["Link"] = f'<{base}?recursive=true&expand=false&cursor={cursor + hub.page_size}>; rel="next"'
        self._json(200, page, headers)

    def _hf_resolve(self, org: str, name: str, revision: str, rel: str) -> None:
        hub = self.hub
        with hub.stats.lock:
            hub.stats.resolve_requests += 1
            hub.stats.resolves.append((revision, rel))
        limit = {}
        if hub.rate_limit is not None:
            allowed, remaining, reset = hub.rate_limit.take()
            limit = hub.rate_limit.headers(remaining, reset)
            if not allowed:
                return self._json(429, {"error": "Too Many Requests"}, limit)
        commit = self._repo_or_error(org, name, revision)
        if commit is None:
            return
        granted = hub.gated.get(f"{org}/{name}")
        if granted is not None and self._token() not in granted:
            if self._token() is None:
                message = (f"Access to model {org}/{name} is restricted. You must have access to it and be authenticated"
                           " to access it. Please log in.")
                return self._error(401, "GatedRepo", message, limit)
            message = (f"Access to model {org}/{name} is restricted and you are not in the authorized list. "
                       f"Visit https://huggingface.co/{org}/{name} to ask for access.")
            return self._error(403, "GatedRepo", message, limit)
        target = hub.file(commit, org, name, rel)
        if target is None:
            return self._error(404, "EntryNotFound", f"{rel} does not exist on \"{revision}\"", limit)
        if target.suffix != ".gguf":
            return self._serve(target, {"ETag": f'"{_sha1(hub.sha256(target))}"', "X-Repo-Commit": commit, **limit})
        link = f"{hub.cdn_url}/cdn/{commit}/{org}/{name}/{quote(rel)}?gen={hub.link_generation}&id={next(hub._counter)}"
        self._empty(302, {
            "Location": link,
            "X-Linked-Size": str(target.stat().st_size),
            "X-Linked-Etag": f'"{hub.sha256(target)}"',
            "X-Repo-Commit": commit,
            **limit,
        })

    # -- ModelScope
    def _ms_missing(self, org: str, name: str) -> None:
        body = {"Code": MS_MISSING, "Message": f"The request model: {org}/{name} does not exist!", "Success": False}
        self._json(200 if self.hub.ms_missing_as_200 else 404, body)

    def _ms_files(self, org: str, name: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        with hub.stats.lock:
            hub.stats.listing_requests += 1
            hub.stats.ms_queries.append(query)
        commit = hub.commit_for(query.get("Revision", ["master"])[0])
        if commit is None or not (hub.commits[commit] / org / name).is_dir():
            return self._ms_missing(org, name)
        entries = hub.entries(hub.commits[commit] / org / name)
        if query.get("Recursive", ["False"])[0] != "True":
            entries = [e for e in entries if "/" not in e["path"]]
        files = [
            {"Name": e["path"].rsplit("/", 1)[-1], "Path": e["path"], "Size": e["size"],
             "Sha256": (e.get("lfs") or {}).get("oid", ""), "Type": "tree" if e["type"] == "directory" else "blob",
             "Revision": commit}
            for e in entries
        ]
        self._json(200, {"Code": 200, "Data": {"Files": files}, "Success": True})

    def _ms_file(self, org: str, name: str, query: dict[str, list[str]]) -> None:
        hub = self.hub
        with hub.stats.lock:
            hub.stats.ms_queries.append(query)
        commit = hub.commit_for(query.get("Revision", ["master"])[0])
        if commit is None or not (hub.commits[commit] / org / name).is_dir():
            return self._ms_missing(org, name)
        target = hub.file(commit, org, name, query.get("FilePath", [""])[0])
        if target is None:
            return self._json(404, {"Code": 10010205002, "Message": "file not found", "Success": False})
        self._serve(target, {"ETag": f'"{hub.sha256(target)}"'})


class _CdnHandler(_Handler):
    def _route(self) -> None:
        hub = self.hub
        if self.headers.get("Authorization"):
            with hub.stats.lock:
                hub.stats.cdn_authorized.append(self.path)
        parts = urlsplit(self.path)
        m = re.match(r"^/cdn/([0-9a-f]{40})/([^/]+)/([^/]+)/(.+)$", unquote(parts.path))
        query = parse_qs(parts.query)
        if m is None or m[1] not in hub.commits:
            return self._json(404, {"error": "NoSuchKey"})
        if hub.link_expired(int(query.get("gen", ["-1"])[0]), query.get("id", [""])[0]):
            return self._json(hub.expired_status, {"error": "AccessDenied", "message": "Request has expired"})
        target = hub.file(m[1], m[2], m[3], m[4])
        if target is None:
            return self._json(404, {"error": "NoSuchKey"})
        if self.command != "HEAD":
            with hub.stats.lock:
                hub.stats.cdn_commits.append(m[1])
        etag = hub.cdn_etag_value()
        self._serve(target, {"ETag": etag} if etag else {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """Clients that close a connection early (a probe, a cut) are normal here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _server(handler: type[_Handler], hub: HubDouble, hosts: tuple[str, ...]) -> ThreadingHTTPServer:
    bound = type(handler.__name__, (handler,), {"hub": hub})
    for host in hosts:
        try:
            server = _Server((host, 0), bound)
        except OSError:  # 127.0.0.2 is not on every system's loopback (macOS)
            continue
        return server
    raise OSError(f"cannot bind any of {hosts}")


@contextmanager
def run_hub(root: Path, **options: object) -> Iterator[HubDouble]:
    hub = HubDouble(root, **options)  # type: ignore[arg-type]
    servers = [_server(_HubHandler, hub, ("127.0.0.1",)), _server(_CdnHandler, hub, ("127.0.0.2", "127.0.0.1"))]
    hub.url, hub.cdn_url = (f"http://{s.server_address[0]}:{s.server_address[1]}" for s in servers)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield hub
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
