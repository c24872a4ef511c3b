"""Apple Silicon: ``sysctl`` and ``system_profiler`` (Metal's usable share of unified memory)."""

from __future__ import annotations

import json
import re

from dslocal.hardware.profile import Gpu
from dslocal.hardware.runner import run_tool

SYSCTL_KEYS = ["hw.memsize", "hw.physicalcpu", "hw.logicalcpu", "machdep.cpu.brand_string", "hw.optional.arm64",
               "iogpu.wired_limit_mb"]


def parse_sysctl(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()
    return values


def parse_sp_displays(text: str) -> dict[str, object]:
    """``system_profiler SPDisplaysDataType -json``: the GPU's name, core count and Metal family."""
    for item in json.loads(text).get("SPDisplaysDataType", []):
        family = str(item.get("spdisplays_mtlgpufamilysupport", ""))
        cores = str(item.get("sppci_cores", ""))
        return {
            "chip": item.get("sppci_model") or item.get("_name"),
            "gpu_cores": int(cores) if cores.isdigit() else None,
            "metal": family.removeprefix("spdisplays_") or None,
        }
    return {}


def parse_sp_hardware(text: str) -> dict[str, object]:
    """``system_profiler SPHardwareDataType -json``: chip, memory, performance/efficiency cores."""
    for item in json.loads(text).get("SPHardwareDataType", []):
        memory = re.match(r"(\d+)\s*GB", str(item.get("physical_memory", "")))
        procs = re.match(r"proc (\d+):(\d+):(\d+)", str(item.get("number_processors", "")))
        return {
            "chip": item.get("chip_type"),
            "memory_total_bytes": int(memory[1]) << 30 if memory else None,
            "physical_cores": int(procs[1]) if procs else None,
            "performance_cores": int(procs[2]) if procs else None,
            "efficiency_cores": int(procs[3]) if procs else None,
        }
    return {}


def metal_budget(total_bytes: int, wired_limit_mb: int = 0) -> int:
    """What Metal lets the GPU wire: ``iogpu.wired_limit_mb`` when set, else macOS's default share
    (about 2/3 of RAM up to 36 GB, 3/4 above), as llama.cpp reports recommendedMaxWorkingSetSize."""
    if wired_limit_mb > 0:
        return wired_limit_mb << 20
    share = 0.75 if total_bytes > 36 << 30 else 2 / 3
    return int(total_bytes * share)


def apple_gpu(sysctl: dict[str, str], displays: dict[str, object]) -> Gpu | None:
    if sysctl.get("hw.optional.arm64") != "1":
        return None
    total = int(sysctl.get("hw.memsize", "0") or 0)
    limit = sysctl.get("iogpu.wired_limit_mb", "0")
    budget = metal_budget(total, int(limit) if limit.isdigit() else 0)
    chip = str(displays.get("chip") or sysctl.get("machdep.cpu.brand_string") or "Apple GPU")
    return Gpu(
        vendor="apple", name=chip, index=0, memory_total_bytes=budget, memory_free_bytes=budget,
        runtime_version=str(displays.get("metal") or "") or None, unified_memory=True, source="sysctl",
    )


def probe() -> tuple[list[Gpu], list[str]]:
    run = run_tool(["sysctl", *SYSCTL_KEYS])
    if not run.found or "hw.optional.arm64: 1" not in run.stdout:
        return [], []
    displays: dict[str, object] = {}
    sp = run_tool(["system_profiler", "SPDisplaysDataType", "-json"])
    if sp.ok:
        try:
            displays = parse_sp_displays(sp.stdout)
        except (ValueError, AttributeError):
            pass
    gpu = apple_gpu(parse_sysctl(run.stdout), displays)
    return ([gpu] if gpu else []), []
