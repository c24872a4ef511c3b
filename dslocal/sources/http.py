"""HTTP plumbing shared by everything that talks to hubs: one requests session with retries,
and the mapping of a hub's refusals to errors that name the next step.

TLS verification is always on (requests' default; a corporate CA is added with
``REQUESTS_CA_BUNDLE``). Proxies come from the environment. Tokens are sent only as
an ``Authorization`` header, which requests drops on redirects to another host.

A 429 is not retried by the session: the Hub's answer carries no ``Retry-After``, only
``RateLimit: "resolvers";r=0;t=<seconds>`` (hub-docs ``rate-limits.md``), so callers that
can wait (the downloader) read it with :func:`rate_limit_wait` and say that they wait.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dslocal import __version__
from dslocal.errors import AccessError, DslocalError, NetworkError, NotFoundError
from dslocal.sources.listing import Origin

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
RETRY_AFTER_CAP = 60.0  # the most the session sleeps on a 503's Retry-After
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
_RATELIMIT = re.compile(r'"\w+"\s*;\s*r\s*=\s*(?P<r>\d+)\s*;\s*t\s*=\s*(?P<t>\d+)')


class _Retry(Retry):
    """urllib3's Retry that leaves 429s to the caller and caps what a Retry-After may make it sleep
    (urllib3 1.26 has no ``retry_after_max``)."""

    RETRY_AFTER_STATUS_CODES = frozenset({503})

    def get_retry_after(self, response):  # type: ignore[no-untyped-def]
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, RETRY_AFTER_CAP)


def make_session(retries: int = 4) -> requests.Session:
    """A session that retries timeouts, resets and 5xx with backoff (429s are the caller's: see above)."""
    session = requests.Session()
    retry = _Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=16)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"dslocal/{__version__}"
    return session


def hf_token() -> str | None:
    """The Hugging Face token from HF_TOKEN or huggingface_hub's login; never printed or logged."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if token:
        return token
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return get_token()


def normalise_etag(value: str | None) -> str | None:
    """An ETag without ``W/`` and quotes (huggingface_hub ``_normalize_etag``); None when empty."""
    if value is None:
        return None
    value = value.strip().removeprefix("W/").strip('"')
    return value or None


def same_origin(a: str, b: str) -> bool:
    """Same scheme, host and port: where a token sent to ``a`` may also go."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


@dataclass(frozen=True)
class RateWait:
    seconds: float  # until the server's window resets (or its Retry-After)
    hub: bool  # said by the Hub's RateLimit header (rather than a plain Retry-After)


def rate_limit_wait(headers: Mapping[str, str]) -> RateWait | None:
    """How long a 429 asks to wait: ``RateLimit`` (r=0;t=N) first, then a numeric ``Retry-After``."""
    reset = _ratelimit_reset(headers)
    if reset is not None:
        return RateWait(float(reset), True)
    retry_after = (headers.get("Retry-After") or "").strip()
    if retry_after.isdigit():
        return RateWait(float(retry_after), False)
    return None


def _ratelimit_reset(headers: Mapping[str, str]) -> int | None:
    """``t`` of a ``RateLimit`` header whose ``r`` is 0, parsed by huggingface_hub (>= 1.2)."""
    try:
        from huggingface_hub.utils import parse_ratelimit_headers
    except ImportError:  # an older huggingface_hub: the same reading of the same header
        match = _RATELIMIT.search(headers.get("RateLimit") or "")
        return int(match["t"]) if match and int(match["r"]) == 0 else None
    info = parse_ratelimit_headers(headers)
    return info.reset_in_seconds if info is not None and info.remaining == 0 else None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def hub_error(
    status: int, headers: Mapping[str, str], what: str, origin: Origin | None = None, token_sent: bool = False,
) -> DslocalError | None:
    """The error for a hub's answer, read as huggingface_hub's ``hf_raise_for_status`` reads it
    (``X-Error-Code`` first, then the status); None for a success."""
    if status < 400:
        return None
    code = headers.get("X-Error-Code", "")
    said = _one_line(headers.get("X-Error-Message", ""))
    suffix = f" (the server says: {said})" if said else ""
    repo = origin.repo if origin else what
    if status == 401 and "invalid credentials" in said.lower():
        return AccessError(f"{what}: the token was refused (invalid credentials)",
                           f"check HF_TOKEN, or make a new read token at {TOKENS_PAGE}")
    if code == "GatedRepo":
        return _gated(repo, origin, token_sent, suffix)
    if code == "RepoNotFound" or (status == 401 and origin is not None):
        private = ("or it is private and the token's account cannot see it" if token_sent
                   else "or it is private: that needs HF_TOKEN")
        return NotFoundError(f"{repo} was not found ({private}){suffix}",
                             "check the repository name (ORG/NAME as on the model page)")
    if code == "RevisionNotFound":
        revision = origin.revision if origin else "the revision"
        return NotFoundError(f"revision {revision!r} of {repo} does not exist{suffix}",
                             "check --revision: a branch, a tag or a full commit sha")
    if code == "EntryNotFound":
        where = f"{origin.repo}@{origin.revision}" if origin else "the repository"
        return NotFoundError(f"{what} is not in {where}{suffix}", "check the file path and the revision")
    return _by_status(status, headers, what, token_sent, suffix)


def _gated(repo: str, origin: Origin | None, token_sent: bool, suffix: str) -> AccessError:
    page = origin.page if origin else f"https://huggingface.co/{repo}"
    if token_sent:
        return AccessError(
            f"{repo} is gated and the token sent has not been granted access yet: request access on the model page"
            f" {page}{suffix}",
            "approval is per account and may take a while; rerun once the page says you have access",
        )
    return AccessError(
        f"{repo} is gated: request access on the model page {page}, then set HF_TOKEN{suffix}",
        f"make a read token at {TOKENS_PAGE}; the token goes only to --source hf, never to a mirror",
    )


def _by_status(status: int, headers: Mapping[str, str], what: str, token_sent: bool, suffix: str) -> DslocalError:
    if status == 404:
        return NotFoundError(f"{what}: not found (HTTP 404){suffix}", "check the repository, the file path and the revision")
    if status in (401, 403):
        if token_sent:
            return AccessError(f"{what}: access denied with the token sent (HTTP {status}){suffix}",
                               "the token may lack read access to this repository; check it on the model page")
        return AccessError(
            f"{what}: access denied (HTTP {status}){suffix}",
            "a gated or private repository needs a token: set HF_TOKEN or run 'hf auth login'",
        )
    if status == 429:
        wait = rate_limit_wait(headers)
        when = f"; the limit resets in {wait.seconds:.0f} s" if wait else ""
        return NetworkError(f"{what}: rate limited (HTTP 429){when}{suffix}",
                            "wait a while, set HF_TOKEN (a larger quota), or use a mirror (--source hf-mirror)")
    return NetworkError(f"{what}: the server answered HTTP {status}{suffix}", "try again later, or use a mirror")


def raise_for_status(
    response: requests.Response, what: str, *, origin: Origin | None = None, token_sent: bool = False,
) -> None:
    """Turn an HTTP failure into a DslocalError with the next step."""
    error = hub_error(response.status_code, response.headers, what, origin, token_sent)
    if error is not None:
        raise error


def network_error(exc: requests.RequestException, what: str) -> NetworkError:
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError(
            f"{what}: the TLS certificate could not be verified",
            "behind a proxy that re-signs TLS, point REQUESTS_CA_BUNDLE at its CA certificate",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return NetworkError(f"{what}: timed out", "check the network, or use a mirror (--source hf-mirror)")
    return NetworkError(f"{what}: cannot connect ({type(exc).__name__})", "check the network and any proxy settings")
