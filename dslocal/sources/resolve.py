"""Asking a file's URL where its bytes are, and the waits and retries every request of a download shares.

One resolve per file, as huggingface_hub does it (``file_download.py`` ``get_hf_file_metadata``):
the URL is asked once with redirects not followed; a redirect to another host (the CDN) gives
the identity (``X-Linked-Etag``, normalised), the commit (``X-Repo-Commit``), the size
(``X-Linked-Size``) and the ``Location`` that ranged reads then use, without the token. A 429
that says when the window resets (``RateLimit: "resolvers";r=0;t=N``, or ``Retry-After``) is
waited out per origin, within a budget, and reported once; other failures are retried with
backoff a fixed number of times.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, urljoin, urlsplit

import requests

from dslocal.errors import NetworkError
from dslocal.sources.http import (
    CONNECT_TIMEOUT, RateWait, network_error, normalise_etag, raise_for_status, rate_limit_wait, same_origin,
)
from dslocal.sources.listing import RemoteFile

if TYPE_CHECKING:
    from dslocal.sources.download import DownloadOptions

MAX_HOPS = 5  # redirects followed on the hub itself (a renamed repository) before the CDN's
SMALL_FILE = 1 << 20  # files up to this size are asked for whole by the resolve itself
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_QUERY = re.compile(r"\?[^\s'\"()]*")
T = TypeVar("T")


class RetryRequest(Exception):
    """A failed request worth another attempt (``counted`` ones use up the attempts)."""

    def __init__(self, reason: str, counted: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.counted = counted


class RateLimited(Exception):
    """A 429 that says when the window resets."""

    def __init__(self, url: str, wait: RateWait) -> None:
        super().__init__(f"HTTP 429, wait {wait.seconds:g} s")
        self.key = origin_key(url)
        self.wait = wait


class LinkExpired(Exception):
    """The CDN refused a link that worked before (403/410): it expired."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def origin_key(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class RateGate:
    """Per origin: after a 429 that says when its window resets, no connection asks that origin
    again before then, and the wait is reported once."""

    def __init__(self, status: Callable[[str], None]) -> None:
        self.status = status
        self.lock = threading.Lock()
        self.until: dict[str, float] = {}

    def hold(self, key: str, seconds: float, hub: bool) -> None:
        now = time.monotonic()
        with self.lock:
            before = self.until.get(key, 0.0)
            self.until[key] = max(before, now + seconds)
            news = now + seconds > max(before, now) + 1.0
        if news:
            who = "the Hub's rate limit" if hub else f"{urlsplit(key).hostname}'s rate limit"
            self.status(f"waiting for {who} ({math.ceil(seconds)}s)")

    def wait(self, key: str) -> float:
        """Sleep until ``key``'s window opens; returns the seconds slept."""
        slept = 0.0
        while True:
            with self.lock:
                left = self.until.get(key, 0.0) - time.monotonic()
            if left <= 0:
                return slept
            time.sleep(min(left, 0.5))
            slept += min(left, 0.5)


class Pins:
    """Commits learnt from ``X-Repo-Commit`` for files listed where the hub named none (a mirror
    without ``model_info``): the first resolve pins the rest of the download to its commit."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.commits: dict[tuple[str, str], str] = {}

    def apply(self, remote: RemoteFile) -> RemoteFile:
        """``remote`` at the pinned commit, when one was learnt and it was not pinned already."""
        origin = remote.origin
        if origin is None or origin.commit:
            return remote
        with self.lock:
            commit = self.commits.get((origin.repo, origin.revision))
        marker = f"/resolve/{quote(origin.revision, safe='')}/"
        if commit is None or marker not in remote.url:
            return remote
        url = remote.url.replace(marker, f"/resolve/{commit}/", 1)
        return replace(remote, url=url, origin=replace(origin, commit=commit))

    def learn(self, remote: RemoteFile, commit: str | None) -> str | None:
        """The commit the download is pinned to after this resolve said ``commit``."""
        origin = remote.origin
        if origin is None or origin.commit or not commit:
            return origin.commit if origin else None
        with self.lock:
            return self.commits.setdefault((origin.repo, origin.revision), commit)


@dataclass(frozen=True)
class Net:
    """What every request of one download shares."""

    session: requests.Session
    headers: dict[str, str]  # for the hub only (the token)
    options: DownloadOptions
    gate: RateGate
    status: Callable[[str], None]
    pins: Pins = field(default_factory=Pins)

    def retrying(self, what: str, url: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it succeeds: rate limits waited out (within the budget), other failures
        retried ``max_attempts`` times with backoff; a DslocalError ends it at once."""
        options, tries, waited, last = self.options, 0, 0.0, "no attempt"
        while True:
            waited += self.gate.wait(origin_key(url))
            try:
                return attempt()
            except RateLimited as exc:
                seconds = min(exc.wait.seconds + 1.0, options.rate_limit_cap)  # +1: t is whole seconds
                if waited + seconds > options.rate_limit_budget:
                    took = f"{waited:.0f} s" if waited < 120 else f"{waited / 60:.0f} min"
                    raise NetworkError(
                        f"{what}: still rate limited (HTTP 429) after waiting {took}",
                        "set HF_TOKEN (a logged-in account has a larger quota), wait a while, or use a mirror",
                    ) from None
                self.gate.hold(exc.key, seconds, exc.wait.hub)
                waited += max(self.gate.wait(exc.key), seconds)
                continue
            except RetryRequest as exc:
                last = exc.reason
                if not exc.counted:
                    continue
            except requests.exceptions.SSLError as exc:  # a proxy that re-signs TLS: retrying cannot help
                raise network_error(exc, what) from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                last = _QUERY.sub("?…", str(exc))[:200] or type(exc).__name__  # a signed link's query stays out
            except requests.RequestException as exc:  # too many redirects, a bad Location: not worth retrying
                raise network_error(exc, what) from None
            tries += 1
            if tries >= options.max_attempts:
                raise NetworkError(f"{what} failed {tries} times ({last})",
                                   "rerun the same command to resume, or try another --source")
            time.sleep(min(options.backoff * (2 ** (tries - 1)), 30))

    @property
    def token_sent(self) -> bool:
        return any(k.lower() == "authorization" for k in self.headers)

    def headers_for(self, url: str, hub_url: str) -> dict[str, str]:
        """The hub's headers (the token) only for the hub's own origin, never for a CDN."""
        if same_origin(url, hub_url):
            return dict(self.headers)
        return {k: v for k, v in self.headers.items() if k.lower() != "authorization"}


def raise_transient(response: requests.Response) -> None:
    """Raise what makes a request worth another attempt: 429, 5xx."""
    code = response.status_code
    if code == 429:
        wait = rate_limit_wait(response.headers)
        if wait is not None:
            raise RateLimited(response.url, wait)
        raise RetryRequest("HTTP 429")
    if code in (500, 502, 503, 504):
        raise RetryRequest(f"HTTP {code}")


@dataclass(frozen=True)
class Resolved:
    """What one resolve said about a file: where its bytes are, and what they are."""

    data_url: str  # the redirect's Location (a CDN), or the URL itself when the server serves the bytes
    identity: str | None  # X-Linked-Etag of the hub's redirect, else the ETag of what serves the bytes
    commit: str | None  # X-Repo-Commit
    size: int | None  # X-Linked-Size, or the Content-Range total
    ranged: bool  # what serves the bytes honours Range
    foreign: bool  # data_url is another origin than the hub: no token goes there, and its links expire
    whole: bytes | None = field(default=None, repr=False)  # a small file, read whole by the same request


def content_total(response: requests.Response) -> int | None:
    match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if match and match[3] != "*":
        return int(match[3])
    length = response.headers.get("Content-Length", "")
    return int(length) if response.status_code == 200 and length.isdigit() else None


class Resolver:
    """Asks a file's URL once where its bytes are, redirects not followed. The request asks for one
    byte, or for a small file (up to SMALL_FILE) whole, so that its answer, when it is the bytes
    rather than a redirect, is the file itself and no second request is needed."""

    def __init__(self, net: Net, remote: RemoteFile) -> None:
        self.net = net
        self.remote = remote
        self.token_sent = net.token_sent
        self.small = 0 < remote.size <= SMALL_FILE

    def resolve(self) -> Resolved:
        host = urlsplit(self.remote.url).hostname
        return self.net.retrying(f"{self.remote.path}: asking {host} for it", self.remote.url, self._once)

    def _get(self, url: str, follow: bool) -> requests.Response:
        last = self.remote.size - 1 if self.small else 0
        headers = {**self.net.headers_for(url, self.remote.url), "Range": f"bytes=0-{last}", "Accept-Encoding": "identity"}
        return self.net.session.get(url, headers=headers, stream=True, allow_redirects=follow,
                                    timeout=(CONNECT_TIMEOUT, self.net.options.read_timeout))

    def _once(self) -> Resolved:
        url = self.remote.url
        for _ in range(MAX_HOPS):
            with self._get(url, follow=False) as response:
                location = response.headers.get("Location") if response.is_redirect else None
                if location is None:
                    self._refused(response, url)
                    return Resolved(url, normalise_etag(response.headers.get("ETag")),
                                    response.headers.get("X-Repo-Commit"), content_total(response),
                                    response.status_code == 206, False, self._whole(response))
                target, hop = urljoin(url, location), response.headers
                _drain(response)
            if same_origin(target, url):  # still the hub (a renamed repository): follow it
                url = target
                continue
            ranged, size, whole = self._probe(target)
            linked = hop.get("X-Linked-Size", "")
            return Resolved(target, normalise_etag(hop.get("X-Linked-Etag") or hop.get("ETag")),
                            hop.get("X-Repo-Commit"), int(linked) if linked.isdigit() else size, ranged, True, whole)
        raise NetworkError(f"{self.remote.path}: more than {MAX_HOPS} redirects on {url}", "try another --source")

    def _probe(self, url: str) -> tuple[bool, int | None, bytes | None]:
        """Whether the CDN honours Range and the size it says (without the token)."""

        def once() -> tuple[bool, int | None, bytes | None]:
            with self._get(url, follow=True) as response:
                self._refused(response, url)
                return response.status_code == 206, content_total(response), self._whole(response)

        return self.net.retrying(f"{self.remote.path}: reading from {urlsplit(url).hostname}", url, once)

    def _whole(self, response: requests.Response) -> bytes | None:
        """The body when it is the whole (small) file; None otherwise (the answer is closed unread)."""
        size = self.remote.size
        if not self.small or content_total(response) != size:
            if response.status_code == 206:
                _drain(response)
            return None
        if response.status_code == 206 and not response.headers.get("Content-Range", "").startswith(f"bytes 0-{size - 1}/"):
            return None
        data = b"".join(response.iter_content(1 << 16))
        if len(data) != size:
            raise RetryRequest(f"short read ({len(data)} of {size} bytes)")
        return data

    def _refused(self, response: requests.Response, url: str) -> None:
        raise_transient(response)
        if response.status_code >= 300:
            hub = same_origin(url, self.remote.url)
            raise_for_status(response, self.remote.path, origin=self.remote.origin if hub else None,
                             token_sent=self.token_sent and hub)
        if response.status_code not in (200, 206):
            raise RetryRequest(f"HTTP {response.status_code}")


def _drain(response: requests.Response, limit: int = 64 << 10) -> None:
    """Read a short body (a redirect's, one byte) so that the connection can be used again."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) <= limit:
        with contextlib.suppress(requests.RequestException):
            response.content  # noqa: B018
