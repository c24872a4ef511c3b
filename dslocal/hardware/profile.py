"""The hardware profile: what the planner knows about a machine (frozen dataclasses).

A profile comes from detection, from a saved JSON file (``dslocal hw --save``), or
from a preset (``--hw rtx4090-64gb``), so plans can be made for machines the user
does not sit at.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PROFILE_VERSION = 1


@dataclass(frozen=True)
class Cpu:
    vendor: str | None = None
    model: str | None = None
    sockets: int | None = None
    physical_cores: int = 1
    threads: int = 1
    numa_nodes: int = 1
    flags: tuple[str, ...] = ()  # ISA features of interest, normalised (avx2, avx512f, amx_bf16, neon, sve, ...)

    def has(self, flag: str) -> bool:
        return flag in self.flags


@dataclass(frozen=True)
class Memory:
    total_bytes: int = 0
    available_bytes: int = 0
    swap_total_bytes: int = 0
    swap_free_bytes: int = 0
    # What one process really reads from RAM, in bytes/s (all sockets it spans), and how dslocal knows:
    # "measured ...", "detected ...", "set ..." (an --hw file or preset), or None (the planner assumes one).
    bandwidth_bytes_per_s: int | None = None
    bandwidth_source: str | None = None


@dataclass(frozen=True)
class Disk:
    path: str = ""
    total_bytes: int | None = None
    free_bytes: int | None = None
    filesystem: str | None = None


@dataclass(frozen=True)
class Gpu:
    vendor: str  # nvidia, amd, apple, intel, huawei, hygon, metax, moorethreads, kunlunxin, cambricon, iluvatar, biren
    name: str
    index: int = 0
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    driver_version: str | None = None
    runtime_version: str | None = None  # CUDA / ROCm / CANN / MACA ... when the tool says
    compute_capability: str | None = None  # NVIDIA
    gfx_target: str | None = None  # AMD and Hygon (gfx942, gfx1100, gfx928)
    unified_memory: bool = False  # Apple, GB10, APUs: shares system RAM
    pci_bus_id: str | None = None
    uuid: str | None = None
    mig: str | None = None  # NVIDIA: "enabled" when the GPU is partitioned into MIG instances
    source: str = ""  # which probe found it


@dataclass(frozen=True)
class HardwareProfile:
    os: str
    arch: str
    cpu: Cpu
    memory: Memory
    disk: Disk = field(default_factory=Disk)
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = ()
    origin: str = "detected"  # detected | file:PATH | preset:NAME

    @property
    def vram_total_bytes(self) -> int:
        return sum(g.memory_total_bytes or 0 for g in self.gpus if not g.unified_memory)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["profile_version"] = PROFILE_VERSION
        return data

    @classmethod
    def from_dict(cls, data: Any) -> HardwareProfile:
        """Rebuild a profile from :meth:`to_dict` output.

        Raises ValueError naming the first field that is missing, of the wrong type or out of
        range (no RAM, negative cores, 10^30 bytes of VRAM), so a hand-edited file cannot
        reach the planner with values it would divide by or trust.
        """
        data = _section(data, "profile")
        if data.get("profile_version", PROFILE_VERSION) != PROFILE_VERSION:
            raise ValueError(f"profile_version {data.get('profile_version')!r} is not {PROFILE_VERSION}")
        gpus = data.get("gpus", ())
        if not isinstance(gpus, (list, tuple)):
            raise ValueError(f"gpus must be a list, not {_kind(gpus)}")
        notes = data.get("notes", ())
        if not isinstance(notes, (list, tuple)) or not all(isinstance(n, str) for n in notes):
            raise ValueError("notes must be a list of strings")
        return cls(
            os=_text(data, "os"), arch=_text(data, "arch"), cpu=_cpu(_section(data.get("cpu"), "cpu")),
            memory=_memory(_section(data.get("memory"), "memory")), disk=_disk(_section(data.get("disk", {}), "disk")),
            gpus=tuple(_gpu(_section(g, f"gpus[{i}]"), f"gpus[{i}]") for i, g in enumerate(gpus)),
            notes=tuple(notes), origin=str(data.get("origin", "file")),
        )


# -- checking a profile read from a file ----------------------------------------------------------------------

MAX_BYTES = 1 << 50  # 1 PiB: more memory than any one machine has
MAX_DISK_BYTES = 1 << 60
MAX_CORES = 1 << 16


def _kind(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _section(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a JSON object, not {_kind(value)}")
    return value


def _text(data: dict[str, Any], key: str, where: str = "", *, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where}{key} must be a string, not {_kind(value)}")
    return value


def _count(data: dict[str, Any], key: str, where: str, *, low: int, high: int, optional: bool = False,
           default: int | None = None) -> Any:
    """A whole number in ``low..high`` (``None`` allowed when ``optional``)."""
    value = data.get(key, default)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}{key} must be a whole number, not {_kind(value)} {value!r}"[:200])
    if not low <= value <= high:
        raise ValueError(f"{where}{key} = {value} is out of range {low}..{high}"[:200])
    return value


def _fields(data: dict[str, Any], known: type, where: str) -> None:
    names = {f.name for f in dataclasses.fields(known)} | {"support"}  # 'support': what `hw --json` adds
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{where} has unknown field {unknown[0]!r}")


def _cpu(data: dict[str, Any]) -> Cpu:
    _fields(data, Cpu, "cpu")
    flags = data.get("flags", ())
    if not isinstance(flags, (list, tuple)) or not all(isinstance(f, str) for f in flags):
        raise ValueError("cpu.flags must be a list of strings")
    return Cpu(
        vendor=_text(data, "vendor", "cpu.", optional=True), model=_text(data, "model", "cpu.", optional=True),
        sockets=_count(data, "sockets", "cpu.", low=1, high=1024, optional=True),
        physical_cores=_count(data, "physical_cores", "cpu.", low=1, high=MAX_CORES, default=1),
        threads=_count(data, "threads", "cpu.", low=1, high=MAX_CORES * 8, default=1),
        numa_nodes=_count(data, "numa_nodes", "cpu.", low=1, high=1024, default=1),
        flags=tuple(flags),
    )


def _memory(data: dict[str, Any]) -> Memory:
    _fields(data, Memory, "memory")
    total = _count(data, "total_bytes", "memory.", low=1, high=MAX_BYTES)
    return Memory(
        total_bytes=total, available_bytes=_count(data, "available_bytes", "memory.", low=0, high=MAX_BYTES, default=0),
        swap_total_bytes=_count(data, "swap_total_bytes", "memory.", low=0, high=MAX_BYTES, default=0),
        swap_free_bytes=_count(data, "swap_free_bytes", "memory.", low=0, high=MAX_BYTES, default=0),
        bandwidth_bytes_per_s=_count(data, "bandwidth_bytes_per_s", "memory.", low=10**8, high=10**14, optional=True),
        bandwidth_source=_text(data, "bandwidth_source", "memory.", optional=True),
    )


def _disk(data: dict[str, Any]) -> Disk:
    _fields(data, Disk, "disk")
    return Disk(
        path=_text(data, "path", "disk.", optional=True) or "",
        total_bytes=_count(data, "total_bytes", "disk.", low=0, high=MAX_DISK_BYTES, optional=True),
        free_bytes=_count(data, "free_bytes", "disk.", low=0, high=MAX_DISK_BYTES, optional=True),
        filesystem=_text(data, "filesystem", "disk.", optional=True),
    )


def _gpu(data: dict[str, Any], where: str) -> Gpu:
    _fields(data, Gpu, where)
    strings = {key: _text(data, key, f"{where}.", optional=True) for key in (
        "driver_version", "runtime_version", "compute_capability", "gfx_target", "pci_bus_id", "uuid", "mig")}
    unified = data.get("unified_memory", False)
    if not isinstance(unified, bool):
        raise ValueError(f"{where}.unified_memory must be true or false, not {_kind(unified)}")
    total = _count(data, "memory_total_bytes", f"{where}.", low=0, high=MAX_BYTES, optional=True)  # 0: unknown
    return Gpu(
        vendor=_text(data, "vendor", f"{where}."), name=_text(data, "name", f"{where}."),
        index=_count(data, "index", f"{where}.", low=0, high=4096, default=0), memory_total_bytes=total,
        memory_free_bytes=_count(data, "memory_free_bytes", f"{where}.", low=0, high=MAX_BYTES, optional=True),
        unified_memory=unified, source=str(data.get("source", "")), **strings,
    )
