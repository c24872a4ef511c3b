"""A bandwidth model of decode speed and a compute model of prefill speed.

Decoding one token reads every active weight once (for MoE only the experts chosen:
37B of R1's 671B) plus the KV cache of the tokens so far; each device reads its share
at its memory bandwidth. Prefill is bound by arithmetic instead. These are estimates
for ranking and expectations, stated as such in every plan.
"""

from __future__ import annotations

from dslocal.hardware.profile import Gpu, HardwareProfile

# (name fragment, memory bandwidth GB/s, dense FP16 TFLOPS); the first fragment found wins.
GPU_SPECS: tuple[tuple[str, float, float], ...] = (
    ("H200", 4800, 989), ("H100 PCIe", 2000, 756), ("H100", 3350, 989), ("H800", 3350, 989), ("H20", 4000, 148),
    ("A100-SXM4-80GB", 2039, 312), ("A100 80GB", 2039, 312), ("A100", 1555, 312), ("A800", 2039, 312),
    ("L40S", 864, 362), ("L20", 864, 119), ("A6000", 768, 155), ("RTX 6000 Ada", 960, 364),
    ("RTX 5090", 1792, 419), ("RTX 4090", 1008, 165), ("RTX 4080", 717, 97), ("RTX 3090", 936, 71),
    ("RTX 3080", 760, 60), ("RTX 4070", 504, 58), ("RTX 3060", 360, 25),
    ("MI300X", 5300, 1307), ("MI250X", 3277, 383), ("RX 7900 XTX", 960, 123),
    ("M3 Ultra", 819, 28), ("M2 Ultra", 800, 27), ("M1 Ultra", 800, 21), ("M4 Max", 546, 17), ("M3 Max", 400, 14),
    ("M2 Max", 400, 13), ("M4 Pro", 273, 9), ("Ascend 910B", 1600, 313), ("MetaX C500", 1800, 280),
)
DEFAULT_GPU = (500.0, 50.0)
GPU_EFFICIENCY = 0.7  # dense models reach most of the bandwidth
CPU_EFFICIENCY = 0.6
# MoE decoding in llama.cpp is far from bandwidth-bound on GPUs (expert gathers, small kernels):
# calibrated so that R1 UD-IQ1_S on 2 x H100 80GB gives Unsloth's reported ~14 tok/s for one user.
GPU_EFFICIENCY_MOE = 0.055
CPU_EFFICIENCY_MOE = 0.5
DISK_BANDWIDTH = 2.0e9  # an NVMe SSD, for weights streamed from disk with mmap
FILLED_CONTEXT = 1024  # tokens of context assumed already in the cache when decoding


def gpu_spec(gpu: Gpu) -> tuple[float, float]:
    for fragment, bandwidth, tflops in GPU_SPECS:
        if fragment.lower() in gpu.name.lower():
            return bandwidth * 1e9, tflops * 1e12
    return DEFAULT_GPU[0] * 1e9, DEFAULT_GPU[1] * 1e12


def cpu_bandwidth(profile: HardwareProfile) -> float:
    """System memory bandwidth: unified memory on Apple, else a guess from the machine's class."""
    apple = [g for g in profile.gpus if g.vendor == "apple"]
    if apple:
        return gpu_spec(apple[0])[0]
    server = profile.cpu.physical_cores >= 32 or profile.memory.total_bytes >= 256 << 30
    return (200 if server else 60) * 1e9


def cpu_flops(profile: HardwareProfile) -> float:
    per_cycle = 64 if profile.cpu.has("avx512f") else 32 if profile.cpu.has("avx2") else 16
    return profile.cpu.physical_cores * 3.0e9 * per_cycle * 0.3


def decode_tokens_per_s(gpu_bytes_per_token: float, cpu_bytes_per_token: float, disk_bytes_per_token: float,
                        gpu_bandwidth: float, cpu_bw: float, moe: bool = False) -> float:
    gpu_eff = GPU_EFFICIENCY_MOE if moe else GPU_EFFICIENCY
    cpu_eff = CPU_EFFICIENCY_MOE if moe else CPU_EFFICIENCY
    seconds = (
        gpu_bytes_per_token / (gpu_bandwidth * gpu_eff) if gpu_bytes_per_token else 0.0
    ) + cpu_bytes_per_token / (cpu_bw * cpu_eff) + disk_bytes_per_token / DISK_BANDWIDTH
    return 1.0 / seconds if seconds > 0 else 0.0
