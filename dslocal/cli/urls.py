"""Checking the server URLs people type, before anything is sent to them."""

from __future__ import annotations

from urllib.parse import urlsplit


def http_url(text: str, *, bare_host: bool = True) -> str:
    """``text`` as an http(s) URL with a host (and a valid port), or ValueError naming what is wrong.
    With ``bare_host``, ``host:port`` alone (as OLLAMA_HOST is written) means ``http://host:port``."""
    value = text.strip()
    shown = value if "://" in value or not bare_host else f"http://{value}"
    try:
        parts = urlsplit(shown)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL with a host")
    return value
