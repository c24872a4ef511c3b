"""Can Ollama use this device? And if not, what works instead.

Ollama runs on NVIDIA (CUDA, compute capability 5.0 and newer), AMD (ROCm, for the
gfx targets its builds include), Apple Silicon (Metal), and some other GPUs through
its experimental Vulkan backend (``OLLAMA_VULKAN=1``). The Chinese accelerators
need their vendors' stacks; dslocal says which, instead of a silent CPU fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

from dslocal.hardware.profile import Gpu

# gfx targets in Ollama's ROCm builds (docs/gpu.mdx); others may work via HSA_OVERRIDE_GFX_VERSION or Vulkan.
OLLAMA_ROCM_TARGETS = frozenset({
    "gfx900", "gfx906", "gfx908", "gfx90a", "gfx940", "gfx941", "gfx942", "gfx950", "gfx1010", "gfx1012",
    "gfx1030", "gfx1100", "gfx1101", "gfx1102", "gfx1150", "gfx1151", "gfx1200", "gfx1201",
})
# Close relatives that run with an override (the value users set in HSA_OVERRIDE_GFX_VERSION).
ROCM_OVERRIDES = {"gfx1031": "10.3.0", "gfx1032": "10.3.0", "gfx1034": "10.3.0", "gfx1035": "10.3.0",
                  "gfx1036": "10.3.0", "gfx1103": "11.0.0"}


@dataclass(frozen=True)
class Verdict:
    ollama: bool  # Ollama can use the device for inference
    backend: str  # cuda, rocm, metal, vulkan, or the vendor stack's name
    reason: str
    advisory: str | None = None  # the path that works when Ollama does not
    equivalence: str | None = None  # what users plan with ("about an A100 at FP16")


_VENDOR_STACKS = {
    "huawei": Verdict(
        False, "cann", "Ollama has no Ascend (CANN) backend",
        "use llama.cpp built with -DGGML_CANN=on for GGUF models, or Huawei's MindIE / vLLM-Ascend "
        "for the full DeepSeek-R1 (W8A8) across NPUs",
        "Ascend 910B is about an NVIDIA A100 at FP16",
    ),
    "hygon": Verdict(
        False, "dtk", "Ollama's ROCm builds do not include Hygon DCU targets",
        "use Hygon's DTK (its ROCm-compatible stack) with a HIP build of llama.cpp, or vLLM for DCU",
        "a Hygon DCU (K100_AI) is about an NVIDIA A100 at BF16",
    ),
    "metax": Verdict(
        False, "maca", "Ollama has no MetaX (MACA) backend",
        "use MetaX's MACA SDK with its vLLM or llama.cpp builds",
        "MetaX MXN is about an RTX 3090 and can run the 70B distill at BF16",
    ),
    "moorethreads": Verdict(
        False, "musa", "Ollama has no Moore Threads (MUSA) backend",
        "use llama.cpp built with -DGGML_MUSA=on, or try Ollama's Vulkan backend (OLLAMA_VULKAN=1)",
    ),
    "kunlunxin": Verdict(
        False, "xpu", "Ollama has no Kunlunxin XPU backend",
        "use Kunlunxin's XPU runtime with its vLLM or PaddlePaddle builds",
    ),
    "cambricon": Verdict(
        False, "neuware", "Ollama has no Cambricon MLU backend",
        "use Cambricon's Neuware stack with vLLM-MLU",
    ),
    "iluvatar": Verdict(
        False, "corex", "Ollama has no Iluvatar CoreX backend",
        "use Iluvatar's CoreX SDK (CUDA-compatible) with its vLLM or llama.cpp builds",
    ),
    "biren": Verdict(
        False, "supa", "Ollama has no Biren (BIRENSUPA) backend", "use Biren's SUPA stack with its vLLM build",
    ),
}


def verdict(gpu: Gpu) -> Verdict:
    if gpu.vendor == "nvidia":
        cc = gpu.compute_capability
        try:
            major = float(cc) if cc else None
        except ValueError:
            major = None
        if major is not None and major < 5.0:
            return Verdict(False, "cuda", f"compute capability {cc} is older than the 5.0 Ollama needs",
                           "run on the CPU, or use a newer GPU")
        if gpu.mig == "enabled":
            return Verdict(True, "cuda", "CUDA; MIG is on, so a process sees one MIG instance, not the whole GPU")
        return Verdict(True, "cuda", "CUDA" + (f", compute capability {cc}" if cc else ""))
    if gpu.vendor == "amd":
        target = gpu.gfx_target
        if target in OLLAMA_ROCM_TARGETS:
            return Verdict(True, "rocm", f"ROCm ({target})")
        if target in ROCM_OVERRIDES:
            return Verdict(True, "rocm", f"ROCm with HSA_OVERRIDE_GFX_VERSION={ROCM_OVERRIDES[target]} ({target})",
                           f"set HSA_OVERRIDE_GFX_VERSION={ROCM_OVERRIDES[target]} in Ollama's environment")
        return Verdict(False, "vulkan", f"{target or 'this GPU'} is not in Ollama's ROCm builds",
                       "try Ollama's Vulkan backend (OLLAMA_VULKAN=1) or a llama.cpp Vulkan build")
    if gpu.vendor == "apple":
        return Verdict(True, "metal", "Metal on Apple Silicon (unified memory)")
    if gpu.vendor == "intel":
        return Verdict(False, "vulkan", "Ollama supports Intel GPUs only through its experimental Vulkan backend",
                       "set OLLAMA_VULKAN=1 for Ollama, or use IPEX-LLM's Ollama build or llama.cpp with SYCL")
    return _VENDOR_STACKS.get(gpu.vendor, Verdict(False, "unknown", f"dslocal does not know {gpu.vendor} devices"))
