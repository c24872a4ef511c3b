"""HTTP plumbing shared by everything that talks to hubs: one requests session with retries.

TLS verification is always on (requests' default; a corporate CA is added with
``REQUESTS_CA_BUNDLE``). Proxies come from the environment. Tokens are sent only as
an ``Authorization`` header, which requests drops on redirects to another host.
"""

from __future__ import annotations

import os

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from dslocal import __version__
from dslocal.errors import NetworkError, NotFoundError

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0


def make_session(retries: int = 4) -> requests.Session:
    """A session that retries timeouts, resets, 429 (honouring Retry-After) and 5xx with backoff."""
    session = requests.Session()
    retry = Retry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
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


def raise_for_status(response: requests.Response, what: str) -> None:
    """Turn an HTTP failure into a DslocalError with the next step."""
    code = response.status_code
    if code < 400:
        return
    if code == 404:
        raise NotFoundError(f"{what}: not found (HTTP 404)", "check the repository, the file path and the revision")
    if code in (401, 403):
        raise NetworkError(
            f"{what}: access denied (HTTP {code})",
            "a gated or private repository needs a token: set HF_TOKEN or run 'hf auth login'",
        )
    if code == 429:
        raise NetworkError(f"{what}: rate limited (HTTP 429)", "wait a while, or use a mirror (--source hf-mirror)")
    raise NetworkError(f"{what}: the server answered HTTP {code}", "try again later, or use a mirror")


def network_error(exc: requests.RequestException, what: str) -> NetworkError:
    if isinstance(exc, requests.exceptions.SSLError):
        return NetworkError(
            f"{what}: the TLS certificate could not be verified",
            "behind a proxy that re-signs TLS, point REQUESTS_CA_BUNDLE at its CA certificate",
        )
    if isinstance(exc, requests.exceptions.Timeout):
        return NetworkError(f"{what}: timed out", "check the network, or use a mirror (--source hf-mirror)")
    return NetworkError(f"{what}: cannot connect ({type(exc).__name__})", "check the network and any proxy settings")
