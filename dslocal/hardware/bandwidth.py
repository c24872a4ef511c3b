"""Memory bandwidth and compute from specifications: RAM by type and channels, Apple chips, GPUs.

Pure functions over tables; nothing here probes the machine (``memory_spec`` does that). All
figures are the vendors' theoretical peaks: what a program really reads is a share of them,
which the planner's efficiencies account for.

Sources (checked 2026-12):
- DDR/LPDDR peak = transfers/s x bus bytes (JEDEC; a DDR4/DDR5 DIMM channel is 64 data bits;
  DDR5 splits it in two 32-bit subchannels, which together still carry 8 bytes per transfer).
- Apple: the "memory bandwidth" line of each chip's newsroom announcement and Mac tech specs
  (support.apple.com/en-us/docs/mac, apple.com/newsroom, e.g. "M4 Pro ... 273GB/s",
  "M3 Ultra ... over 800GB/s" = 819.2 GB/s, "M5 ... 153GB/s").
- GPUs: the vendors' datasheets (NVIDIA H100/H200/H20/B200/L40S/L20/A100 datasheets, the Ada
  and Blackwell GeForce whitepapers, AMD Instinct and Radeon spec pages, Huawei Ascend 910B,
  MetaX C500 and Moore Threads MTT S4000 product pages).
"""

from __future__ import annotations

import re

GB = 1e9
TFLOPS = 1e12

# -- system RAM --------------------------------------------------------------------------------------------

_RAM_TYPE = re.compile(r"^\s*(?P<kind>LPDDR\d+X?|DDR\d+|HBM\d*E?)\s*[- _]?\s*(?P<rate>\d{3,5})?", re.IGNORECASE)
# Bits per channel as vendors count channels: a DDR DIMM channel is 64 bits; an LPDDR "channel" is
# 16 bits (LPDDR4/4X/5/5X), so soldered memory is better described by its total bus width.
DIMM_CHANNEL_BITS = 64
LPDDR_CHANNEL_BITS = 16
# A single process on a multi-socket machine whose NUMA nodes the OS exposes (llama.cpp without
# --numa, Ollama): its pages land mostly on one node and the other sockets' memory is reached over
# the socket link, so it gets about one socket's bandwidth plus a share of each other socket's.
CROSS_SOCKET_SHARE = 0.3


def parse_ram_type(ram_type: str) -> tuple[str, int | None]:
    """``"DDR5-4800"``, ``"DDR5 6400"``, ``"lpddr5x-8533"`` -> ``("DDR5", 4800)``; the rate is MT/s or None.

    Raises ValueError for text that names no RAM type.
    """
    match = _RAM_TYPE.match(ram_type or "")
    if not match:
        raise ValueError(f"{ram_type!r} is not a RAM type such as DDR5-4800 or LPDDR5X-8533")
    kind = match["kind"].upper()
    return kind, int(match["rate"]) if match["rate"] else None


def single_process_share(sockets: int, numa_nodes: int | None = None, *, numa_aware: bool = False) -> float:
    """How many sockets' worth of bandwidth one process gets.

    One socket: 1. Several sockets with the NUMA nodes exposed (``numa_nodes`` > 1, or unknown):
    1 + 0.3 per extra socket, unless the engine is NUMA-aware (llama.cpp ``--numa distribute``,
    ktransformers), which spreads its threads and pages and gets about the sum. Several sockets
    shown as one NUMA node (the firmware interleaves memory across sockets): about the sum.
    """
    sockets = max(1, sockets)
    if sockets == 1 or numa_aware or numa_nodes == 1:
        return float(sockets)
    return 1.0 + CROSS_SOCKET_SHARE * (sockets - 1)


def from_memory_spec(ram_type: str, channels: int, sockets: int = 1, numa_nodes: int | None = None, *,
                     channel_bits: int | None = None, numa_aware: bool = False) -> float:
    """Theoretical peak bytes/s one process reads from RAM.

    ``channels``: populated memory channels per socket (64-bit DIMM channels as vendors count them,
    12 on an EPYC 9004, 2 on a desktop); ``channel_bits`` overrides the width per channel (16 for
    LPDDR channels, or pass ``channels=1, channel_bits=<total bus bits>`` for soldered memory).
    Sockets beyond the first count as :func:`single_process_share` says.
    """
    kind, rate = parse_ram_type(ram_type)
    if rate is None:
        raise ValueError(f"{ram_type!r} has no transfer rate (write it as {kind}-4800)")
    if channels < 1:
        raise ValueError(f"channels must be at least 1, not {channels}")
    bits = channel_bits or (LPDDR_CHANNEL_BITS if kind.startswith("LPDDR") else DIMM_CHANNEL_BITS)
    per_socket = channels * rate * 1e6 * bits / 8
    return per_socket * single_process_share(sockets, numa_nodes, numa_aware=numa_aware)


# -- Apple silicon (unified memory) ------------------------------------------------------------------------

# GB/s by chip; binned chips as {CPU cores: GB/s}. Apple newsroom / tech specs:
# M1 68.25, M1 Pro 200, M1 Max 400, M1 Ultra 800; M2 100, M2 Pro 200, M2 Max 400, M2 Ultra 800;
# M3 100, M3 Pro 150, M3 Max 300 (14-core CPU) / 400 (16-core CPU), M3 Ultra 819;
# M4 120, M4 Pro 273, M4 Max 410 (14-core CPU) / 546 (16-core CPU); M5 153, M5 Max 614.
# Checked against reports of Apple's announcements: macmegasite.com/2024/10/30/m4-max-chip-has-16-core-cpu-40-core-gpu-
# and-35-increase-in-memory-bandwidth (M4 Max 546, M3 Max 400), notebookcheck.net (M4 Max bins), dig.watch/updates/
# apple-launches-m5-with-bigger-ai-gains (M5 153), thedailyscout.com (M5 Max 614).
APPLE_BANDWIDTH_GBS: dict[str, float | dict[int, float]] = {
    "M1": 68.25, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": {14: 300, 16: 400}, "M3 Ultra": 819,
    "M4": 120, "M4 Pro": 273, "M4 Max": {14: 410, 16: 546},
    "M5": 153, "M5 Max": 614,  # M5 Max: "up to 614GB/s" as reported at its launch; M5 Pro not yet verified
}
# Dense FP16 TFLOPS of the GPU at the shader rate (GPU cores x 128 lanes x 2 x clock; Apple states M1 2.6,
# M1 Ultra 21, M2 3.6, M2 Ultra 27.2), top bins. M5's GPU neural accelerators (Apple: 4x M4's peak AI
# compute) are not counted: the M5 figures are shader-rate estimates, so prefill there is underestimated.
APPLE_TFLOPS: dict[str, float] = {
    "M1": 2.6, "M1 Pro": 5.2, "M1 Max": 10.4, "M1 Ultra": 21, "M2": 3.6, "M2 Pro": 6.8, "M2 Max": 13.6,
    "M2 Ultra": 27, "M3": 4.1, "M3 Pro": 7.4, "M3 Max": 14, "M3 Ultra": 28, "M4": 4.3, "M4 Pro": 9.2,
    "M4 Max": 17, "M5": 4.1, "M5 Max": 16.4,
}
_APPLE_CHIP = re.compile(r"\bM(\d+)(?:\s+(Pro|Max|Ultra))?\b", re.IGNORECASE)


def apple_chip(text: str) -> str | None:
    """``"Apple M3 Max"`` / ``"Apple M4 Pro (14-core)"`` -> ``"M3 Max"``; None when no M-series chip is named."""
    match = _APPLE_CHIP.search(text or "")
    if not match:
        return None
    return f"M{match[1]}" + (f" {match[2].capitalize()}" if match[2] else "")


def apple_bandwidth(chip: str, cpu_cores: int | None = None) -> float | None:
    """Unified-memory bandwidth in bytes/s of an Apple chip, None when the chip is not in the table.

    Binned chips (M3 Max, M4 Max) differ by CPU cores: without ``cpu_cores`` the top bin is assumed
    (M3 Max 400 GB/s, M4 Max 546 GB/s).
    """
    name = apple_chip(chip)
    entry = APPLE_BANDWIDTH_GBS.get(name or "")
    if entry is None:
        return None
    if isinstance(entry, dict):
        bins = sorted(entry)
        chosen = next((entry[c] for c in bins if cpu_cores is not None and cpu_cores <= c), entry[bins[-1]])
        return chosen * GB
    return entry * GB


# -- GPUs and accelerators ---------------------------------------------------------------------------------

# (name pattern, memory bandwidth GB/s, dense FP16 tensor TFLOPS); the first pattern that matches the
# device name wins, so specific names come before their families. FP16 is dense (no sparsity) with FP32
# accumulate where NVIDIA publishes both (GeForce cards run FP32-accumulate at half the FP16 rate).
GPU_SPECS: tuple[tuple[str, float, float], ...] = (
    # NVIDIA datacentre
    (r"\bB300\b", 8000, 2250), (r"\bGB200\b", 8000, 2500), (r"\bB200\b", 8000, 2250), (r"\bB100\b", 8000, 1750),
    (r"\bGH200\b", 4000, 989), (r"\bH200 NVL\b", 4800, 835), (r"\bH200\b", 4800, 989),
    (r"\bH100 NVL\b", 3900, 835), (r"\bH100 PCIe\b", 2000, 756), (r"\bH100\b", 3350, 989),
    (r"\bH800 PCIe\b", 2000, 756), (r"\bH800\b", 3350, 989), (r"\bH20\b", 4000, 148),
    (r"\bA100.*PCIE.*40GB|\bA100-PCIE-40GB", 1555, 312), (r"\bA100.*80GB.*PCIe", 1935, 312),
    (r"\bA100.*80GB", 2039, 312), (r"\bA100\b", 1555, 312),
    (r"\bA800.*PCIe", 1935, 312), (r"\bA800\b", 2039, 312),
    (r"\bL40S\b", 864, 362), (r"\bL40\b", 864, 181), (r"\bL20\b", 864, 119.5), (r"\bL4\b", 300, 121),
    (r"\bA40\b", 696, 150), (r"\bA30\b", 933, 165), (r"\bA10\b", 600, 125), (r"\bT4\b", 320, 65),
    (r"\bV100S\b", 1134, 130), (r"\bV100\b", 900, 125),
    (r"\bGB10\b", 273, 125),  # DGX Spark: LPDDR5X unified memory
    # NVIDIA workstation
    (r"RTX PRO 6000", 1792, 500), (r"RTX 6000 Ada", 960, 364), (r"RTX A6000|\bA6000\b", 768, 155),
    (r"RTX A5000|\bA5000\b", 768, 111), (r"RTX A4000|\bA4000\b", 448, 77),
    # NVIDIA GeForce
    (r"RTX 5090", 1792, 209.5), (r"RTX 5080", 960, 112.6), (r"RTX 5070 Ti", 896, 87.9), (r"RTX 5070", 672, 61.7),
    (r"RTX 5060 Ti", 448, 47.4), (r"RTX 5060", 448, 38.4),
    (r"RTX 4090", 1008, 165.2), (r"RTX 4080 SUPER", 736, 104.4), (r"RTX 4080", 717, 97.5),
    (r"RTX 4070 Ti SUPER", 672, 88.2), (r"RTX 4070 Ti", 504, 80.2), (r"RTX 4070 SUPER", 504, 71),
    (r"RTX 4070", 504, 58.3), (r"RTX 4060 Ti", 288, 44.2), (r"RTX 4060", 272, 30.1),
    (r"RTX 3090 Ti", 1008, 80), (r"RTX 3090", 936, 71), (r"RTX 3080 Ti", 912, 68.2), (r"RTX 3080", 760, 59.5),
    (r"RTX 3070 Ti", 608, 43.5), (r"RTX 3070", 448, 40.6), (r"RTX 3060 Ti", 448, 32.4), (r"RTX 3060", 360, 25.6),
    (r"RTX 2080 Ti", 616, 53.8),
    # AMD
    (r"MI355X", 8000, 2516), (r"MI325X", 6000, 1307), (r"MI300X", 5300, 1307), (r"MI300A", 5300, 981),
    (r"MI250X", 3277, 383), (r"MI250", 3277, 362), (r"MI210", 1638, 181), (r"MI100", 1229, 185),
    (r"RX 7900 XTX", 960, 123), (r"RX 7900 XT\b", 800, 103), (r"RX 7900 GRE", 576, 92), (r"PRO W7900", 864, 123),
    # Chinese accelerators (published datasheet figures)
    (r"\b910B", 1600, 313),  # Ascend 910B (910B1-B4 differ a little; 910B3 figures)
    (r"MetaX C500|\bC500\b", 1800, 280),
    (r"MTT S4000|\bS4000\b", 768, 100),
    (r"MLU370-X8", 614, 96),  # Cambricon MLU370-X8: LPDDR5
    # Intel
    (r"Arc\(TM\) A770|Arc A770", 560, 138),
)
# Not in the table for want of published figures: Hygon DCU (hy-smi names no model), Kunlunxin P800,
# Ascend 310P, Iluvatar BI-V150; the planner assumes a figure for them.
# NVIDIA compute capabilities that name one datacentre generation when the device name is unknown
# ("NVIDIA Graphics Device" on new drivers): its most common part.
_CC_FALLBACK: dict[str, tuple[float, float]] = {"10.0": (8000, 2250), "10.3": (8000, 2250), "12.1": (273, 125)}


def gpu_bandwidth(name: str, compute_capability: str | None = None) -> tuple[float, float] | None:
    """(memory bandwidth bytes/s, dense FP16 FLOP/s) of an accelerator by its detected name, None when unknown.

    Apple GPUs (named by chip) use :func:`apple_bandwidth`; a name not in the table falls back on the
    NVIDIA compute capability when that names a single datacentre generation (10.0: B200).
    """
    text = name or ""
    chip = apple_chip(text) if "apple" in text.lower() or text.strip().upper().startswith("M") else None
    if chip and chip in APPLE_TFLOPS:
        bandwidth = apple_bandwidth(chip)
        return (bandwidth, APPLE_TFLOPS[chip] * TFLOPS) if bandwidth else None
    for pattern, bandwidth_gbs, tflops in GPU_SPECS:
        if re.search(pattern, text, re.IGNORECASE):
            return bandwidth_gbs * GB, tflops * TFLOPS
    fallback = _CC_FALLBACK.get((compute_capability or "").strip())
    if fallback:
        return fallback[0] * GB, fallback[1] * TFLOPS
    return None
