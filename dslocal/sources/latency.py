"""How quickly each download source answers from here (one HEAD each, in parallel): for choosing a mirror."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

from dslocal.config import Settings

SOURCES = ("hf", "hf-mirror", "modelscope")
TIMEOUT = 3.0


@dataclass(frozen=True)
class SourceLatency:
    name: str
    endpoint: str
    latency_ms: float | None  # None: unreachable
    error: str | None = None


def _one(name: str, endpoint: str, timeout: float) -> SourceLatency:
    started = time.perf_counter()
    try:
        requests.head(endpoint, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        return SourceLatency(name, endpoint, None, type(exc).__name__)
    return SourceLatency(name, endpoint, (time.perf_counter() - started) * 1000)


def measure(settings: Settings, names: tuple[str, ...] = SOURCES, timeout: float = TIMEOUT) -> list[SourceLatency]:
    from dslocal.sources.select import named_source

    endpoints = [(name, str(getattr(named_source(name, settings), "endpoint", ""))) for name in names]
    with ThreadPoolExecutor(max_workers=len(endpoints)) as pool:
        return list(pool.map(lambda item: _one(item[0], item[1], timeout), endpoints))
