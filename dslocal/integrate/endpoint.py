"""The server a client talks to: Ollama, ``dslocal serve`` (llama.cpp's server) or the DeepSeek API.

Each has a base URL, a place its key comes from (never the key), and a field reasoning arrives in:
Ollama's native ``/api/chat`` puts it in ``message.thinking``, Ollama's ``/v1`` in ``reasoning``
(openai/openai.go; not ``reasoning_content``), llama-server and the DeepSeek API in ``reasoning_content``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from dslocal.errors import UsageError

ENGINES = ("ollama", "serve", "deepseek")
DEEPSEEK_URL = "https://api.deepseek.com"
DEEPSEEK_KEYS_PAGE = "https://platform.deepseek.com/api_keys"
SERVE_KEY_ENV = "DSLOCAL_SERVE_API_KEY"  # as dslocal/cli/serve_cmd.py reads it
SERVE_URL = "http://127.0.0.1:8080"  # dslocal serve's default --host and --port


@dataclass(frozen=True)
class Endpoint:
    engine: str
    url: str  # as this machine reaches it, no trailing slash
    key_env: str | None  # the variable the key comes from; None: the server takes no key
    key_placeholder: str | None  # what outputs show instead of a key
    key_help: str | None  # where to get or set the key
    reasoning_native: str | None  # the field of Ollama's /api/chat (None: no native API)
    reasoning_openai: str  # the field of the OpenAI-compatible API

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def local(self) -> bool:
        return self.engine != "deepseek"

    @property
    def openai_base(self) -> str:
        return self.url if self.engine == "deepseek" else f"{self.url}/v1"

    def at(self, host: str) -> str:
        """This endpoint's URL with another host name (what a container or another machine uses)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{host}:{self.port}"

    def as_dict(self) -> dict[str, object]:
        return {"engine": self.engine, "url": self.url, "key_env": self.key_env, "key": self.key_placeholder,
                "reasoning_native": self.reasoning_native, "reasoning_openai": self.reasoning_openai}


def ollama_endpoint(ollama_host: str) -> Endpoint:
    from dslocal.ollama.client import base_url

    return Endpoint("ollama", base_url(ollama_host), None, None, None, "message.thinking", "reasoning")


def serve_endpoint(url: str | None = None) -> Endpoint:
    url = (url or SERVE_URL).rstrip("/").removesuffix("/v1")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
        raise UsageError(f"{url!r} is not an http(s) URL", "e.g. --url http://127.0.0.1:8080")
    return Endpoint("serve", url, SERVE_KEY_ENV, f"${SERVE_KEY_ENV}",
                    f"the key 'dslocal serve' was started with (--api-key or {SERVE_KEY_ENV}); "
                    "on loopback it needs none unless one was given", None, "reasoning_content")


def deepseek_endpoint(url: str | None = None) -> Endpoint:
    return Endpoint("deepseek", (url or DEEPSEEK_URL).rstrip("/"), "DEEPSEEK_API_KEY", "$DEEPSEEK_API_KEY",
                    f"create one at {DEEPSEEK_KEYS_PAGE}; keep it in DEEPSEEK_API_KEY or 'dslocal key set deepseek'",
                    None, "reasoning_content")


def resolve(engine: str | None, ollama_host: str, url: str | None = None, probe=None) -> Endpoint:  # noqa: ANN001
    """The endpoint for ``engine``; None: Ollama when it answers, else a ``dslocal serve`` that answers, else Ollama."""
    if engine == "deepseek":
        return deepseek_endpoint(url)
    if engine == "serve":
        return serve_endpoint(url)
    if engine == "ollama":
        return ollama_endpoint(url or ollama_host)
    if engine is not None:
        raise UsageError(f"unknown engine {engine!r}", f"one of {', '.join(ENGINES)}")
    ollama = ollama_endpoint(ollama_host)
    probe = probe or _answers
    if probe(ollama.url + "/api/version"):
        return ollama
    serve = serve_endpoint(url)
    return serve if probe(serve.url + "/health") else ollama


def _answers(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False
