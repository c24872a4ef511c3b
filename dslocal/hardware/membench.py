"""``dslocal hw --measure``: a few seconds of memory copying, and the result kept for later plans.

Each thread copies its own slice of two large buffers with ``ctypes.memmove`` (C's memmove, which
releases the GIL), so threads really run in parallel without numpy. What it measures is *copy*
bandwidth: bytes read plus bytes written per second, best over 1, 2, 4 ... threads. Buffers are
much larger than CPU caches and are written once before timing, so no page is the shared zero page.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import hashlib
import json
import os
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dslocal.fsutil import atomic_write_bytes

CACHE_NAME = "memory-bandwidth.json"
MIB = 1 << 20


@dataclass(frozen=True)
class Measurement:
    bytes_per_s: int  # read + written, best of the thread counts tried
    threads: int  # the thread count that gave it
    tried: tuple[tuple[int, int], ...]  # (threads, bytes/s) for each step
    buffer_bytes: int
    seconds: float
    date: str  # ISO date of the run
    machine: str = ""

    def source(self) -> str:
        return (f"measured {self.date}: copy bandwidth (bytes read + written), best of 1-{self.tried[-1][0]} "
                f"threads at {self.threads} (dslocal hw --measure)")


def _copy_rate(src: ctypes.Array, dst: ctypes.Array, threads: int, seconds: float) -> int:
    """Bytes read + written per second with ``threads`` threads each copying its own slice."""
    size = len(src) // threads
    copied = [0] * threads
    start = threading.Barrier(threads + 1)
    stop = threading.Event()
    base_src, base_dst = ctypes.addressof(src), ctypes.addressof(dst)

    def work(i: int) -> None:
        s, d = base_src + i * size, base_dst + i * size
        start.wait()
        while not stop.is_set():
            ctypes.memmove(d, s, size)
            copied[i] += 1

    pool = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    return int(sum(copied) * size * 2 / elapsed)


def thread_steps(cores: int) -> list[int]:
    """1, 2, 4 ... up to ``cores`` (which always comes last)."""
    steps, n = [], 1
    while n < cores:
        steps.append(n)
        n *= 2
    return [*steps, max(cores, 1)]


def measure(*, cores: int | None = None, seconds: float = 2.0, buffer_bytes: int | None = None) -> Measurement:
    """Copy bandwidth of this machine in about ``seconds`` (plus buffer setup)."""
    import psutil

    cores = cores or psutil.cpu_count(logical=False) or os.cpu_count() or 1
    if buffer_bytes is None:  # beyond the L3 (EPYC 9654: 384 MB in all), within 1/8 of the free RAM
        available = psutil.virtual_memory().available
        buffer_bytes = max(64 * MIB, min((1024 if cores >= 32 else 512) * MIB, available // 8 // MIB * MIB))
    steps = thread_steps(cores)
    began = time.perf_counter()
    src = (ctypes.c_char * buffer_bytes)()
    dst = (ctypes.c_char * buffer_bytes)()
    ctypes.memset(src, 0x5A, buffer_bytes)
    ctypes.memset(dst, 0xA5, buffer_bytes)
    per_step = max(0.05, seconds / len(steps))
    tried = tuple((n, _copy_rate(src, dst, n, per_step)) for n in steps)
    best_threads, best = max(tried, key=lambda item: item[1])
    return Measurement(
        bytes_per_s=best, threads=best_threads, tried=tried, buffer_bytes=buffer_bytes,
        seconds=round(time.perf_counter() - began, 2), date=dt.date.today().isoformat(), machine=machine_key(),
    )


# -- the cache -----------------------------------------------------------------------------------------

def machine_key() -> str:
    """This machine: host name, CPU model and RAM size (a new DIMM or CPU means a new measurement)."""
    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        model = platform.processor()
    ram_gib = round(psutil.virtual_memory().total / (1 << 30))
    text = f"{platform.node()}|{platform.machine()}|{model}|{ram_gib}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_cache() -> Path:
    from dslocal.paths import resolve_paths

    return resolve_paths().cache_dir / CACHE_NAME


def save(result: Measurement, path: Path | None = None) -> Path:
    """Keep ``result`` for this machine (other machines' entries stay)."""
    path = path or default_cache()
    entries = _read(path)
    entries[result.machine] = asdict(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(entries, indent=2, sort_keys=True) + "\n").encode())
    return path


def load(path: Path | None = None, machine: str | None = None) -> Measurement | None:
    """The kept measurement of this machine (or ``machine``), None when there is none or it is unreadable."""
    entry = _read(path or default_cache()).get(machine or machine_key())
    if not isinstance(entry, dict):
        return None
    try:
        value = Measurement(**{**entry, "tried": tuple(tuple(step) for step in entry["tried"])})
    except (TypeError, KeyError, ValueError):
        return None
    if not isinstance(value.bytes_per_s, int) or not 10**8 <= value.bytes_per_s <= 10**14:
        return None
    return value


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
