"""A bandwidth model of decode speed and a compute model of prefill speed.

Decoding one token reads every active weight once (for MoE only the experts chosen:
37B of R1's 671B) plus the KV cache of the tokens so far; each device reads its share
at its own memory bandwidth, one after the other (a layer split is a pipeline: the cards
take turns). What a device really reaches is a fraction of its bandwidth, and that fraction
depends on the kind of work (dense or MoE, GPU, Apple unified memory or CPU); the fractions
are fitted to published measurements (``calibration.toml``, written by
``benchmarks/planner_accuracy.py --fit``). Prefill is bound by arithmetic instead. These
are estimates for ranking and expectations, stated as such in every plan.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, fields
from importlib import resources

from dslocal.hardware.bandwidth import gpu_bandwidth
from dslocal.hardware.profile import Gpu, HardwareProfile

# Unknown accelerators: the planner's own assumption (GB/s, dense FP16 TFLOPS).
DEFAULT_GPU = (500.0, 50.0)
FILLED_CONTEXT = 1024  # tokens of context assumed already in the cache when decoding
# 'dslocal hw --measure' gives copy bandwidth a process reached, not the theoretical peak the efficiencies
# are fitted against: a multi-threaded copy reaches about this share of the peak (STREAM copy on common
# desktops and servers), so a measured figure is divided by it before the efficiencies apply.
MEASURED_SHARE = 0.75
GB = 1e9


@dataclass(frozen=True)
class Calibration:
    """Shares of each device's bandwidth that llama.cpp reaches when decoding, and the rest of the model."""

    gpu_dense: float = 0.7
    gpu_moe: float = 0.06
    apple_dense: float = 0.6
    apple_moe: float = 0.5
    cpu_dense: float = 0.6
    cpu_moe: float = 0.5
    per_core_gb_s: float = 12.0  # what one core streams through llama.cpp's dense matmuls
    per_core_moe_gb_s: float = 6.0  # ... and through its MoE expert matmuls (gathers, smaller rows)
    disk_gb_s: float = 2.0  # an NVMe SSD, for weights streamed from disk with mmap
    deepseek4: float = 1.0  # llama.cpp's deepseek4 kernels relative to deepseek2's, same bytes
    deepseek4_metal: float = 1.0  # ... on Apple's Metal, whose lightning-indexer kernel was missing (PR #25893)
    gpu_flops_share: float = 0.35
    cpu_flops_share: float = 0.3
    source: str = "defaults"


@functools.lru_cache(maxsize=1)
def calibration() -> Calibration:
    """The packaged fit (``dslocal/planner/calibration.toml``)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads((resources.files("dslocal.planner") / "calibration.toml").read_text(encoding="utf-8"))
    known = {f.name for f in fields(Calibration)}
    values = {k: v for section in ("decode", "architecture", "prefill") for k, v in data.get(section, {}).items()}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"calibration.toml: unknown keys {sorted(unknown)}")
    return Calibration(**values, source=str(data.get("source", "calibration.toml")))


def gpu_spec(gpu: Gpu) -> tuple[float, float]:
    """(memory bandwidth bytes/s, dense FP16 FLOP/s) from the accelerator table, else DEFAULT_GPU."""
    found = gpu_bandwidth(gpu.name, gpu.compute_capability)
    return found if found is not None else (DEFAULT_GPU[0] * 1e9, DEFAULT_GPU[1] * 1e12)


def cpu_bandwidth(profile: HardwareProfile) -> tuple[float, str]:
    """System memory bandwidth in bytes/s and where it comes from: the profile (measured, detected, set),
    Apple's unified memory, or a guess from the machine's class."""
    if profile.memory.bandwidth_bytes_per_s:
        source = profile.memory.bandwidth_source or "set"
        value = float(profile.memory.bandwidth_bytes_per_s)
        if source.startswith("measured"):
            return value / MEASURED_SHARE, f"{source}; counted as {value / MEASURED_SHARE / GB:.0f} GB/s of peak"
        return value, source
    apple = [g for g in profile.gpus if g.vendor == "apple"]
    if apple:
        return gpu_spec(apple[0])[0], f"{apple[0].name}'s unified memory"
    server = profile.cpu.physical_cores >= 32 or profile.memory.total_bytes >= 256 << 30
    return (200 if server else 60) * GB, "assumed (" + ("a server's" if server else "a desktop's") + " memory)"


def cpu_flops(profile: HardwareProfile, cal: Calibration | None = None) -> float:
    cal = cal or calibration()
    per_cycle = 64 if profile.cpu.has("avx512f") else 32 if profile.cpu.has("avx2") else 16
    return profile.cpu.physical_cores * 3.0e9 * per_cycle * cal.cpu_flops_share


@dataclass(frozen=True)
class Term:
    """One device's part of a token's decode time."""

    device: str  # "GPU 0 (NVIDIA ...)", "system memory", "disk"
    kind: str  # gpu | apple | cpu | disk
    bytes_per_token: float
    rate: float  # bytes/s reached
    seconds: float


@dataclass(frozen=True)
class Decode:
    tokens_per_s: float
    terms: tuple[Term, ...]

    @property
    def bound(self) -> Term | None:
        """The device that takes most of a token's time."""
        return max(self.terms, key=lambda t: t.seconds, default=None)


def gpu_rate(gpu: Gpu, moe: bool, cal: Calibration) -> float:
    bandwidth = gpu_spec(gpu)[0]
    if gpu.vendor == "apple":
        return bandwidth * (cal.apple_moe if moe else cal.apple_dense)
    return bandwidth * (cal.gpu_moe if moe else cal.gpu_dense)


def cpu_rate(profile: HardwareProfile, moe: bool, cal: Calibration, bandwidth: float | None = None) -> float:
    """What llama.cpp's CPU threads read per second: a share of the RAM bandwidth, capped by the cores."""
    bw = bandwidth if bandwidth is not None else cpu_bandwidth(profile)[0]
    per_core = cal.per_core_moe_gb_s if moe else cal.per_core_gb_s
    return min(bw * (cal.cpu_moe if moe else cal.cpu_dense), profile.cpu.physical_cores * per_core * GB)


def decode(gpu_bytes: list[tuple[Gpu, float]], cpu_bytes: float, disk_bytes: float, profile: HardwareProfile, *,
           moe: bool, architecture: str = "", cpu_bw: float | None = None, cal: Calibration | None = None) -> Decode:
    """Decode speed from the bytes each device reads per token. A GPU is never slower than system memory
    for the same bytes: its share of the work is then counted at the CPU's rate."""
    cal = cal or calibration()
    slow = cal.deepseek4 if architecture == "deepseek4" else 1.0
    ram = cpu_rate(profile, moe, cal, cpu_bw) * slow
    terms = []
    for gpu, size in gpu_bytes:
        if size > 0:
            metal = cal.deepseek4_metal if architecture == "deepseek4" and gpu.vendor == "apple" else 1.0
            rate = max(gpu_rate(gpu, moe, cal) * slow * metal, ram)
            kind = "apple" if gpu.vendor == "apple" else "gpu"
            terms.append(Term(f"GPU {gpu.index} ({gpu.name})", kind, size, rate, size / rate))
    if cpu_bytes > 0:
        terms.append(Term("system memory", "cpu", cpu_bytes, ram, cpu_bytes / ram))
    if disk_bytes > 0:
        rate = cal.disk_gb_s * GB
        terms.append(Term("disk", "disk", disk_bytes, rate, disk_bytes / rate))
    seconds = sum(t.seconds for t in terms)
    return Decode(1.0 / seconds if seconds > 0 else 0.0, tuple(terms))


def what_would_help(result: Decode, *, legacy_kv: bool, experts_on_cpu: bool, has_gpu: bool) -> str:
    """One sentence: which device bounds the speed, and what would raise it."""
    bound = result.bound
    if bound is None:
        return ""
    share = bound.seconds / sum(t.seconds for t in result.terms)
    head = f"{bound.device} bounds the speed ({share:.0%} of each token's time, {bound.rate / GB:.0f} GB/s reached)"
    if bound.kind == "disk":
        advice = "more RAM (so the weights stay cached) or a smaller quant"
    elif bound.kind == "cpu":
        advice = ("more memory bandwidth (more channels, faster DIMMs)"
                  + ("; more experts on the GPU (more VRAM)" if experts_on_cpu else "; a GPU for the attention and KV cache"
                     if not has_gpu else "; more layers on the GPU")
                  + "; or a smaller quant")
    else:
        advice = "a faster GPU, or a smaller quant"
    if legacy_kv:
        advice += "; an MLA re-quant reads a far smaller KV cache"
    return f"{head}; what would raise it: {advice}"
