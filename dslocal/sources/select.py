"""``--source hf|hf-mirror|modelscope|URL|PATH|auto``: where the bytes come from, and why.

``auto`` lists the repository on every public hub in parallel, times a small ranged
read from each that has it, and picks the fastest, saying which and why. The Hugging
Face token is sent only to the configured ``hf_endpoint``, never to a third-party mirror.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dslocal.config import Settings
from dslocal.errors import DslocalError, NetworkError, UsageError
from dslocal.sources.http import hf_token, raise_for_status
from dslocal.sources.hub import HubSource, ModelScopeSource
from dslocal.sources.listing import RemoteFile
from dslocal.sources.local import LocalSource, PlainHttpSource
from dslocal.units import format_bytes

PROBE_BYTES = 1 << 20  # read, then the connection is closed, whatever the server sends
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Chosen:
    source: Any  # HubSource | ModelScopeSource | LocalSource | PlainHttpSource
    files: list[RemoteFile]
    reason: str

    @property
    def local(self) -> bool:
        return isinstance(self.source, LocalSource)


def named_source(name: str, settings: Settings) -> Any:
    if name == "hf":
        return HubSource("hf", str(settings["hf_endpoint"]), hf_token())
    if name == "hf-mirror":
        return HubSource("hf-mirror", str(settings["hf_mirror_endpoint"]))
    if name == "modelscope":
        return ModelScopeSource("modelscope", str(settings["modelscope_endpoint"]))
    if name.startswith(("http://", "https://")):
        same_as_hf = name.rstrip("/") == str(settings["hf_endpoint"]).rstrip("/")
        return HubSource(name, name, hf_token() if same_as_hf else None)
    path = Path(name).expanduser()
    if path.is_dir():
        return LocalSource(str(path), path)
    raise UsageError(
        f"--source {name!r} is not hf, hf-mirror, modelscope, auto, a URL or an existing folder",
        "e.g. --source hf-mirror, --source /media/usb/models, --source http://intranet:8000",
    )


def _list(source: Any, repo: str, revision: str | None, session: requests.Session) -> list[RemoteFile]:
    if isinstance(source, (ModelScopeSource,)):
        return source.list_files(repo, revision, session=session)
    if isinstance(source, HubSource) and source.name.startswith(("http://", "https://")):
        try:
            return source.list_files(repo, revision)
        except DslocalError as hub_error:  # not a hub? then a plain file server with a SHA256SUMS listing
            try:
                return PlainHttpSource(source.name, source.endpoint).list_files(repo, revision, session=session)
            except DslocalError:
                raise hub_error from None
    return source.list_files(repo, revision)


def _probe_speed(source: Any, files: list[RemoteFile], session: requests.Session) -> float:
    """Bytes per second for a read of at most PROBE_BYTES of the largest file, then the connection is
    closed: a server that ignores Range (200 and the whole file) is not read to its end."""
    largest = max(files, key=lambda f: f.size)
    headers = {**source.headers(), "Range": f"bytes=0-{max(min(PROBE_BYTES, largest.size), 1) - 1}",
               "Accept-Encoding": "identity"}
    received = 0
    start = time.perf_counter()
    with session.get(largest.url, headers=headers, stream=True, timeout=(PROBE_TIMEOUT, PROBE_TIMEOUT)) as response:
        raise_for_status(response, largest.path, origin=largest.origin, token_sent=bool(source.headers()))
        for block in response.iter_content(1 << 16):
            received += len(block)
            if received >= PROBE_BYTES or time.perf_counter() - start > 2 * PROBE_TIMEOUT:
                break
    return min(received, PROBE_BYTES) / max(time.perf_counter() - start, 1e-6)


def choose(
    spec: str, repo: str, revision: str | None, settings: Settings, session: requests.Session,
    notify: Callable[[str], None] = lambda message: None,
) -> Chosen:
    """Resolve ``--source`` for ``repo`` and list its files there."""
    if spec != "auto":
        source = named_source(spec, settings)
        files = _list(source, repo, revision, session)
        return Chosen(source, files, f"--source {spec}")
    candidates = [named_source(name, settings) for name in ("hf", "hf-mirror", "modelscope")]

    def reachable(source: Any) -> bool:
        url = getattr(source, "endpoint", "")
        try:
            requests.head(url, timeout=PROBE_TIMEOUT, allow_redirects=False)
            return True
        except requests.RequestException:
            return False

    def attempt(source: Any) -> tuple[Any, list[RemoteFile] | None, float, str]:
        if not reachable(source):
            return source, None, 0.0, f"{source.endpoint} is unreachable"
        try:
            files = _list(source, repo, revision, session)
            if not files:
                return source, None, 0.0, "has no files"
            speed = _probe_speed(source, files, session)
            return source, files, speed, f"{speed / 1e6:.1f} MB/s"
        except (DslocalError, requests.RequestException) as exc:
            return source, None, 0.0, str(getattr(exc, "message", None) or type(exc).__name__)

    with ThreadPoolExecutor(max_workers=len(candidates)) as pool:
        results = list(pool.map(attempt, candidates))
    summary = "; ".join(f"{s.name}: {why}" for s, _, _, why in results)
    usable = [(s, f, speed) for s, f, speed, _ in results if f]
    if not usable:
        raise NetworkError(
            f"no source could serve {repo} ({summary})",
            "check the network or proxy, or pass --source with a reachable mirror or a local folder",
        )
    source, files, _ = max(usable, key=lambda item: item[2])
    reason = f"auto chose {source.name}, the fastest in a {format_bytes(PROBE_BYTES)} probe ({summary})"
    notify(reason)
    return Chosen(source, files, reason)
