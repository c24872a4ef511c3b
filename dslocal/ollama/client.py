"""A small client of the Ollama REST API as it is today (create with blobs, NDJSON streams, thinking).

requests, not ollama-python: create needs ``HEAD /api/blobs`` before uploading (the
library uploads unconditionally), and every failure must become an :class:`OllamaError`
with the next step.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
import requests

from dslocal.errors import NotFoundError, OllamaError

DEFAULT_PORT = 11434
CONNECT_TIMEOUT = 2.0  # a local server connects at once; a silent address must not hold a command for long
QUICK_TIMEOUT = 3.0  # reading the answer to a small metadata call (version, tags, ps)
PROBE_TIMEOUT = 2.0  # "is anything serving here?"


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``: ``h:p`` or ``[v6]:p``; None where Go returns an error."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0 or not hostport[end + 1 :].startswith(":"):
            return None
        return hostport[1:end], hostport[end + 2 :]
    if hostport.count(":") != 1:
        return None
    host, _, port = hostport.partition(":")
    return host, port


def base_url(host: str, *, connectable: bool = True) -> str:
    """``OLLAMA_HOST`` as Ollama's ``envconfig.ConnectableHost`` reads it (``Host`` with ``connectable=False``).

    ``h`` and ``h:p`` default to http and port 11434, ``http://h`` to port 80 and
    ``https://h`` to 443; IPv6 may be bare (``::1``) or bracketed (``[::1]:11434``); an
    invalid port falls back to the default; the unspecified bind addresses ``0.0.0.0``
    and ``::`` connect to the loopback of their family.
    """
    text = host.strip()
    scheme, found, hostport = text.partition("://")
    default_port = str(DEFAULT_PORT)
    if not found:
        scheme, hostport = "http", text
    elif scheme in ("http", "https"):
        default_port = "80" if scheme == "http" else "443"
    hostport = hostport.partition("/")[0]
    split = _split_host_port(hostport)
    if split is None:
        name, port = "127.0.0.1", default_port
        bare = hostport.strip("[]")
        with contextlib.suppress(ValueError):
            bare = str(ipaddress.ip_address(bare))
        name = bare or name
    else:
        name, port = split
    if not port.isdigit() or int(port) > 65535:
        port = default_port
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(name)
        if connectable and address.is_unspecified:
            name = "127.0.0.1" if address.version == 4 else "::1"
    name = name or "127.0.0.1"
    shown = f"[{name}]" if ":" in name else name
    return f"{scheme}://{shown}:{int(port)}"


def file_digest(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            digest.update(block)
            if progress:
                progress(len(block))
    return "sha256:" + digest.hexdigest()


class _Reporting:
    """A file wrapper that reports bytes read (requests still sees the file's size through fileno)."""

    def __init__(self, handle: Any, progress: Callable[[int], None]) -> None:
        self.handle = handle
        self.progress = progress

    @property
    def mode(self) -> str:
        return self.handle.mode

    @property
    def name(self) -> str:
        return self.handle.name

    def fileno(self) -> int:
        return self.handle.fileno()

    def tell(self) -> int:
        return self.handle.tell()

    def seek(self, *args: Any) -> int:
        return self.handle.seek(*args)

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.progress(len(data))
        return data


class OllamaClient:
    """``timeout`` bounds reading an answer; connecting takes at most :data:`CONNECT_TIMEOUT`."""

    def __init__(self, host: str, timeout: float = 10.0) -> None:
        self.url = base_url(host)
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # a proxy must never sit between us and a local daemon

    # -- plumbing
    def _timeout(self, timeout: Any = None) -> Any:
        """(connect, read): a plain number is the read timeout."""
        if isinstance(timeout, tuple):
            return timeout
        read = self.timeout if timeout is None else timeout
        return (min(CONNECT_TIMEOUT, read), read)

    def silent_error(self, waited: float) -> OllamaError:
        return OllamaError(
            f"Ollama at {self.url} accepts connections but does not answer (nothing in {waited:g} s)",
            "it may be busy loading a large model: see 'dslocal ollama logs', or retry in a while",
        )

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        timeout = self._timeout(kw.pop("timeout", None))
        try:
            return self.session.request(method, self.url + path, timeout=timeout, **kw)
        except requests.ConnectionError:
            raise OllamaError(
                f"no Ollama server answers at {self.url}", "start one with 'dslocal ollama start' (or 'ollama serve')"
            ) from None
        except requests.Timeout:
            raise self.silent_error(timeout[1] or 0) from None

    @staticmethod
    def _error(response: requests.Response) -> str:
        try:
            return str(response.json().get("error", response.text))
        except ValueError:
            return response.text.strip() or f"HTTP {response.status_code}"

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._request(method, path, **kw)
        if response.status_code == 404:
            raise NotFoundError(f"Ollama: {self._error(response)}", "see 'dslocal ls' for the models Ollama has")
        if response.status_code >= 400:
            raise OllamaError(f"Ollama refused {method} {path}: {self._error(response)}", "see 'dslocal ollama logs'")
        return response.json()

    def _stream(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """NDJSON lines; an error is an HTTP status before streaming starts, or an ``error`` line after it."""
        response = self._request("POST", path, json=body, stream=True, timeout=(self.timeout, timeout))
        with response:
            if response.status_code == 404:
                raise NotFoundError(f"Ollama: {self._error(response)}", "see 'dslocal ls' for the models Ollama has")
            if response.status_code >= 400:
                raise OllamaError(f"Ollama refused {path}: {self._error(response)}", "see 'dslocal ollama logs'")
            try:
                for line in response.iter_lines():
                    if not line:
                        continue
                    event = json.loads(line)
                    if "error" in event:
                        raise OllamaError(f"Ollama: {event['error']}", "see 'dslocal ollama logs'")
                    yield event
            except requests.Timeout:
                raise OllamaError(f"the Ollama server at {self.url} stopped answering", "check 'dslocal ollama logs'") from None
            except requests.RequestException as exc:
                raise OllamaError(f"the connection to {self.url} broke: {type(exc).__name__}",
                                  "check 'dslocal ollama logs'") from None

    # -- API
    def is_running(self) -> bool:
        return self.probe() == "answers"

    def probe(self, timeout: float = PROBE_TIMEOUT) -> str:
        """``answers`` (an HTTP 200 at /), ``silent`` (it accepts connections but sends nothing in
        ``timeout`` seconds, e.g. busy loading a model) or ``down``."""
        try:
            response = self.session.get(self.url + "/", timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
        except requests.ConnectionError:  # ConnectTimeout included
            return "down"
        except requests.Timeout:
            return "silent"
        except requests.RequestException:
            return "down"
        return "answers" if response.status_code == 200 else "down"

    def version(self) -> str:
        return str(self._json("GET", "/api/version", timeout=min(self.timeout, QUICK_TIMEOUT))["version"])

    def blob_exists(self, digest: str) -> bool:
        return self._request("HEAD", f"/api/blobs/{digest}").status_code == 200

    def push_blob(self, path: Path, digest: str, progress: Callable[[int], None] | None = None) -> bool:
        """Upload ``path`` unless the server has it; returns whether bytes were sent."""
        if self.blob_exists(digest):
            return False

        with open(path, "rb") as handle:  # a real file: requests streams it with its Content-Length
            body = _Reporting(handle, progress) if progress else handle
            response = self._request("POST", f"/api/blobs/{digest}", data=body, timeout=(self.timeout, None))
        if response.status_code >= 400:
            raise OllamaError(f"uploading {path.name} failed: {self._error(response)}", "check the file and retry")
        return True

    def create(self, model: str, *, files: dict[str, str] | None = None, from_: str | None = None,
               template: str | None = None, system: str | None = None, parameters: dict[str, Any] | None = None,
               license_text: str | None = None, progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        """Create (or re-create) ``model``; ``progress`` gets every status event the server streams."""
        body: dict[str, Any] = {"model": model, "stream": True}
        for key, value in (("files", files), ("from", from_), ("template", template), ("system", system),
                           ("parameters", parameters), ("license", license_text)):
            if value:
                body[key] = value
        for event in self._stream("/api/create", body):
            if progress and "status" in event:
                progress(event)

    def tags(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/tags", timeout=min(self.timeout, QUICK_TIMEOUT)).get("models", []))

    def show(self, model: str) -> dict[str, Any]:
        return dict(self._json("POST", "/api/show", json={"model": model}))

    def delete(self, model: str) -> None:
        response = self._request("DELETE", "/api/delete", json={"model": model})
        if response.status_code == 404:
            raise NotFoundError(f"Ollama has no model {model!r}", "see 'dslocal ls'")
        if response.status_code >= 400:
            raise OllamaError(f"deleting {model} failed: {self._error(response)}", "see 'dslocal ollama logs'")

    def ps(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/api/ps", timeout=min(self.timeout, QUICK_TIMEOUT)).get("models", []))

    def load(self, model: str, keep_alive: str | int = "30m") -> None:
        """Load ``model`` and keep it (``/api/generate`` without a prompt, as routes.go GenerateHandler
        answers: one JSON object once the model is in memory); no read timeout, a large model takes minutes."""
        self._json("POST", "/api/generate", json={"model": model, "keep_alive": keep_alive},
                   timeout=(CONNECT_TIMEOUT, None))

    def chat_stream(self, body: dict[str, Any], timeout: float | None = 600) -> Iterator[dict[str, Any]]:
        """``POST /api/chat`` with a body built by the caller (dslocal.chat.backends.ollama)."""
        return self._stream("/api/chat", body, timeout=timeout)

    def chat(self, model: str, messages: list[dict[str, Any]], *, think: bool | None = None,
             options: dict[str, Any] | None = None, timeout: float | None = 600) -> Iterator[dict[str, Any]]:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if think is not None:
            body["think"] = think
        if options:
            body["options"] = options
        return self._stream("/api/chat", body, timeout=timeout)
