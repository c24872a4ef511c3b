"""AMD GPUs: ``amd-smi`` (ROCm 6.1+), ``rocm-smi --json``, then sysfs (amdgpu's mem_info_vram_total)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dslocal.hardware.profile import Gpu
from dslocal.hardware.runner import run_tool

MIB = 1 << 20
_UNITS = {"B": 1, "KB": 1 << 10, "MB": MIB, "GB": 1 << 30, "KIB": 1 << 10, "MIB": MIB, "GIB": 1 << 30}


def _gpu_list(data: Any) -> list[dict[str, Any]]:
    """amd-smi prints a list; amd-smi 26 (ROCm 7) wraps it as {"gpu_data": [...]}."""
    if isinstance(data, dict):
        data = data.get("gpu_data", [])
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _size(value: Any) -> int | None:
    """``{"value": 24560, "unit": "MB"}`` (amd-smi's MB are MiB) or a bare number of MB."""
    if isinstance(value, dict):
        number, unit = value.get("value"), str(value.get("unit", "MB")).upper()
    else:
        number, unit = value, "MB"
    if isinstance(number, (int, float)) and not isinstance(number, bool):
        return int(number * _UNITS.get(unit, MIB))
    return None


def _text(value: Any) -> str | None:
    return None if value in (None, "", "N/A") else str(value)


def parse_amd_smi(static_json: str, metric_json: str | None = None) -> list[Gpu]:
    """``amd-smi static --json`` plus, when available, ``amd-smi metric --mem-usage --json``."""
    static = _gpu_list(json.loads(static_json))
    usage = {item.get("gpu"): item.get("mem_usage", {}) for item in _gpu_list(json.loads(metric_json))} if metric_json else {}
    gpus = []
    for position, item in enumerate(static):
        index = item.get("gpu", position)
        asic, vram = item.get("asic", {}), item.get("vram", {})
        total = _size(vram.get("size"))
        mem = usage.get(index, {})
        gpus.append(
            Gpu(
                vendor="amd",
                name=_text(asic.get("market_name")) or "AMD GPU",
                index=int(index),
                memory_total_bytes=_size(mem.get("total_vram")) or total,
                memory_free_bytes=_size(mem.get("free_vram")),
                driver_version=_text(item.get("driver", {}).get("version")),
                gfx_target=_text(asic.get("target_graphics_version")),
                pci_bus_id=_text(item.get("bus", {}).get("bdf")),
                source="amd-smi",
            )
        )
    return gpus


def parse_rocm_smi_json(text: str) -> list[Gpu]:
    """``rocm-smi --showmeminfo vram --showproductname --showdriverversion --json``."""
    data = json.loads(text)
    if not isinstance(data, dict):
        return []
    driver = _text(data.get("system", {}).get("Driver version"))
    gpus = []
    cards = sorted((k for k in data if k.startswith("card") and k[4:].isdigit()), key=lambda k: int(k[4:]))
    for key in cards:
        card = {k.lower(): v for k, v in data[key].items()}
        total = int(card["vram total memory (b)"]) if str(card.get("vram total memory (b)", "")).isdigit() else None
        used = int(card["vram total used memory (b)"]) if str(card.get("vram total used memory (b)", "")).isdigit() else None
        gpus.append(
            Gpu(
                vendor="amd",
                name=_text(card.get("card series")) or "AMD GPU",
                index=int(key[4:]),
                memory_total_bytes=total,
                memory_free_bytes=total - used if total is not None and used is not None else None,
                driver_version=driver,
                gfx_target=_text(card.get("gfx version")),
                source="rocm-smi",
            )
        )
    return gpus


def sysfs_gpus(root: Path = Path("/sys/class/drm")) -> list[Gpu]:
    """amdgpu cards from sysfs when no ROCm tool is installed (Vulkan users)."""
    gpus = []
    for index, card in enumerate(sorted(root.glob("card[0-9]*"))):
        device = card / "device"
        try:
            if (device / "vendor").read_text().strip() != "0x1002":
                continue
            total = int((device / "mem_info_vram_total").read_text())
            used = int((device / "mem_info_vram_used").read_text())
        except (OSError, ValueError):
            continue
        gpus.append(
            Gpu(
                vendor="amd", name="AMD GPU", index=index, memory_total_bytes=total,
                memory_free_bytes=total - used, unified_memory=total < 2 << 30, source="sysfs",
            )
        )
    return gpus


def probe() -> tuple[list[Gpu], list[str]]:
    notes: list[str] = []
    static = run_tool(["amd-smi", "static", "--json"])
    if static.ok:
        metric = run_tool(["amd-smi", "metric", "--mem-usage", "--json"])
        try:
            gpus = parse_amd_smi(static.stdout, metric.stdout if metric.ok else None)
            if gpus:
                return gpus, notes
        except (ValueError, TypeError, AttributeError) as exc:
            notes.append(f"amd-smi printed output dslocal cannot read ({type(exc).__name__})")
    elif static.note:
        notes.append(static.note)
    rocm = run_tool(["rocm-smi", "--showmeminfo", "vram", "--showproductname", "--showdriverversion", "--json"])
    if rocm.ok:
        try:
            gpus = parse_rocm_smi_json(rocm.stdout)
            if gpus:
                return gpus, notes
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            notes.append(f"rocm-smi printed output dslocal cannot read ({type(exc).__name__})")
    elif rocm.found:
        notes.append(rocm.note or "rocm-smi found no GPU")
    return sysfs_gpus(), notes
