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
    def from_dict(cls, data: dict[str, Any]) -> HardwareProfile:
        """Rebuild a profile from :meth:`to_dict` output; raises KeyError/TypeError/ValueError if malformed."""
        if data.get("profile_version", PROFILE_VERSION) != PROFILE_VERSION:
            raise ValueError(f"profile_version {data.get('profile_version')} is not {PROFILE_VERSION}")
        cpu = dict(data["cpu"])
        cpu["flags"] = tuple(cpu.get("flags", ()))
        return cls(
            os=str(data["os"]),
            arch=str(data["arch"]),
            cpu=Cpu(**cpu),
            memory=Memory(**data["memory"]),
            disk=Disk(**data.get("disk", {})),
            gpus=tuple(Gpu(**g) for g in data.get("gpus", ())),
            notes=tuple(data.get("notes", ())),
            origin=str(data.get("origin", "file")),
        )
