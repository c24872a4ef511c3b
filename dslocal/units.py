"""Byte sizes for people: parsing ``48G`` / ``4000M`` / ``40GiB`` and printing ``212.3 GiB``."""

from __future__ import annotations

import re

from dslocal.errors import UsageError

_DECIMAL = {"": 1, "B": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY = {"KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?)?B?\s*$", re.I)


def parse_size(text: str) -> int:
    """``48G`` is 48e9 bytes (decimal, as llama-gguf-split reads it); ``48GiB`` is 48 * 2**30."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not a size", "write it like 48G, 4000M or 40GiB")
    number, unit = float(match[1]), (match[2] or "").upper()
    factor = _BINARY.get(unit) or _DECIMAL[unit]
    value = int(number * factor)
    if value <= 0:
        raise UsageError(f"size {text!r} must be more than zero", "write it like 48G, 4000M or 40GiB")
    return value


def format_bytes(n: int | float) -> str:
    """Binary units, one decimal: ``1.5 KiB``, ``212.3 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_rate(value: float | None) -> str:
    """A speed as people read it, never in scientific notation: 0, 0.29, 5.1, 35.8, 4,719."""
    if value is None:
        return "?"
    if value == 0:
        return "0"
    if value < 1:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"
