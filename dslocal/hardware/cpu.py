"""CPU, memory and disk: psutil and /proc for detection; ``lscpu`` text (any locale) as a parser."""

from __future__ import annotations

import os
import platform
import re
import shutil
from pathlib import Path

from dslocal.hardware.profile import Cpu, Disk, Memory

# lscpu keys in English and Chinese (zh_CN), normalised.
_LSCPU_KEYS = {
    "architecture": "arch", "架构": "arch",
    "cpu(s)": "threads", "cpu": "threads",
    "thread(s) per core": "threads_per_core", "每个核的线程数": "threads_per_core",
    "core(s) per socket": "cores_per_socket", "core(s) per cluster": "cores_per_socket", "每个座的核数": "cores_per_socket",
    "socket(s)": "sockets", "座": "sockets",
    "numa node(s)": "numa_nodes", "numa 节点": "numa_nodes",
    "vendor id": "vendor", "厂商 id": "vendor",
    "model name": "model", "型号名称": "model",
    "flags": "flags", "标记": "flags",
}
# ISA features the planner cares about, from x86 flags or ARM features.
_FLAG_MAP = {
    "avx2": "avx2", "avx512f": "avx512f", "avx512_bf16": "avx512_bf16", "avx512_vnni": "avx512_vnni",
    "avx512vnni": "avx512_vnni", "amx_bf16": "amx_bf16", "amx_int8": "amx_int8", "amx_tile": "amx_tile",
    "f16c": "f16c", "fma": "fma", "asimd": "neon", "neon": "neon", "sve": "sve", "sve2": "sve2",
    "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16",
}


def isa_flags(raw: str) -> tuple[str, ...]:
    found = {_FLAG_MAP[f] for f in raw.split() if f in _FLAG_MAP}
    return tuple(sorted(found))


def parse_lscpu(text: str) -> Cpu:
    """Parse ``lscpu`` output in English or Chinese (full-width colons, translated keys)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([^:：]+?)\s*[:：]\s*(.*)$", line)
        if match:
            key = _LSCPU_KEYS.get(match[1].strip().lower())
            if key and key not in values:
                values[key] = match[2].strip()

    def number(key: str) -> int | None:
        value = values.get(key, "")
        return int(value) if value.isdigit() else None

    threads = number("threads") or 1
    sockets = number("sockets")
    per_socket = number("cores_per_socket")
    physical = per_socket * (sockets or 1) if per_socket else threads // (number("threads_per_core") or 1)
    return Cpu(
        vendor=values.get("vendor"),
        model=values.get("model"),
        sockets=sockets,
        physical_cores=max(physical, 1),
        threads=threads,
        numa_nodes=number("numa_nodes") or 1,
        flags=isa_flags(values.get("flags", "")),
    )


def parse_cpuinfo(text: str) -> tuple[str | None, str | None, tuple[str, ...]]:
    """``/proc/cpuinfo``: vendor, model name and ISA flags (x86 ``flags`` or ARM ``Features``)."""
    vendor = model = None
    flags = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if not sep:
            continue
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key in ("model name", "cpu model") and model is None:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value
        elif key == "cpu implementer" and vendor is None:
            vendor = {"0x41": "ARM", "0x48": "HiSilicon", "0x61": "Apple", "0x51": "Qualcomm"}.get(value.strip(), value.strip())
    return vendor, model, isa_flags(flags)


def _numa_nodes(root: Path = Path("/sys/devices/system/node")) -> int:
    try:
        return max(1, sum(1 for p in root.glob("node[0-9]*")))
    except OSError:
        return 1


def detect_cpu() -> Cpu:
    import psutil

    threads = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or threads
    vendor = model = None
    flags: tuple[str, ...] = ()
    try:
        vendor, model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        model = platform.processor() or None
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        flags = tuple(sorted({*flags, "neon", "dotprod"}))
    return Cpu(
        vendor=vendor, model=model, sockets=None, physical_cores=physical, threads=threads,
        numa_nodes=_numa_nodes(), flags=flags,
    )


def detect_memory() -> Memory:
    import psutil

    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return Memory(
        total_bytes=int(vm.total), available_bytes=int(vm.available),
        swap_total_bytes=int(swap.total), swap_free_bytes=int(swap.free),
    )


def detect_disk(path: Path) -> Disk:
    """Free space and filesystem at ``path`` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    filesystem = None
    try:
        import psutil

        best = ""
        for part in psutil.disk_partitions(all=True):
            if str(probe).startswith(part.mountpoint) and len(part.mountpoint) > len(best):
                best, filesystem = part.mountpoint, part.fstype
    except (OSError, ImportError):
        pass
    return Disk(path=str(path), total_bytes=usage.total, free_bytes=usage.free, filesystem=filesystem)
