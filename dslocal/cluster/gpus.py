"""The accelerators a cluster plan knows: memory, vendor and the number formats they compute in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuKind:
    name: str
    memory_gb: int
    vendor: str  # nvidia, amd, ascend
    fp8: bool  # FP8 tensor cores (Hopper, Ada, Blackwell, CDNA3)
    fp4: bool  # FP4 tensor cores (Blackwell)


GPUS = {g.name: g for g in (
    GpuKind("H20", 96, "nvidia", True, False),
    GpuKind("H200", 141, "nvidia", True, False),
    GpuKind("H100", 80, "nvidia", True, False),
    GpuKind("H800", 80, "nvidia", True, False),
    GpuKind("A100", 80, "nvidia", False, False),
    GpuKind("A800", 80, "nvidia", False, False),
    GpuKind("L40S", 48, "nvidia", True, False),
    GpuKind("B200", 192, "nvidia", True, True),
    GpuKind("MI300X", 192, "amd", True, False),
    GpuKind("910B", 64, "ascend", False, False),
)}

ENGINES = {"nvidia": ("sglang", "vllm"), "amd": ("sglang", "vllm"), "ascend": ("vllm-ascend", "mindie")}
