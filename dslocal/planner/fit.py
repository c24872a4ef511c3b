"""Fit and offload: where a model runs on a machine, with which settings, and how fast.

Placement follows llama.cpp's rules: ``-ngl N`` puts the output layer first, then the
last N-1 blocks, on the GPUs (Ollama's ``num_gpu`` counts the same way: 61 blocks + 1
output = 62 for DeepSeek). For MoE models the better split (llama.cpp ``-ot``, and what
llama-server's fit does inside Ollama >= 0.30) keeps attention, shared experts and the
KV cache on the GPU and moves routed experts to system memory.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from dslocal.hardware.profile import Gpu, HardwareProfile
from dslocal.hardware.support import verdict
from dslocal.planner import speed
from dslocal.planner.facts import ModelFacts
from dslocal.planner.memory import (
    GIB,
    MIB,
    RUNTIME_OVERHEAD,
    compute_buffer_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    kv_cache_bytes,
    padded_ctx,
)

OLLAMA_AUTO_FIT = (0, 30, 0)
LATEST_OLLAMA = (0, 32, 15)


def parse_version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.strip().lstrip("v").split("-")[0].split(".")[:3] if p.isdigit()]
    return tuple((parts + [0, 0, 0])[:3])  # type: ignore[return-value]


@dataclass(frozen=True)
class GpuShare:
    index: int
    name: str
    budget_bytes: int
    used_bytes: int
    layers: int


@dataclass(frozen=True)
class Plan:
    variant: str
    model: str
    engine: str
    ollama_version: str | None
    fits: bool
    placement: str  # gpu | partial | cpu | mmap | none
    num_gpu: int | None
    num_gpu_reason: str
    gpu_layers: int  # output + blocks on GPUs (Ollama's count)
    total_layers: int
    num_ctx: int
    num_thread: int
    kv_cache_type: str
    flash_attention: bool
    weights_bytes: int
    gpu_bytes: int
    ram_bytes: int
    kv_cache_bytes: int
    kv_bytes_per_token: int
    compute_bytes: int
    decode_tokens_per_s: float
    prefill_tokens_per_s: float
    override_tensors: str | None  # llama.cpp -ot for MoE expert placement
    llama_cpp_args: str
    gpus: tuple[GpuShare, ...]
    unsloth_offload: int | None
    exact: bool
    facts_source: str
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpus"] = [asdict(g) for g in self.gpus]
        data["notes"] = list(self.notes)
        return data


@dataclass
class _Layout:
    placement: str
    gpu_weights: int
    gpu_kv: int
    gpu_layers: int
    gpu_used: list[int]
    gpu_layer_counts: list[int]
    cpu_weights: int
    cpu_kv: int
    compute: int
    experts_on_cpu_from: int | None  # MoE: routed experts of blocks >= this stay in RAM
    ram_needed: int
    ram_fits: bool
    notes: list[str]


def _usable(profile: HardwareProfile, engine: str) -> list[Gpu]:
    usable = []
    for gpu in profile.gpus:
        v = verdict(gpu)
        if gpu.memory_total_bytes and (v.ollama or engine == "llama.cpp" and v.backend in ("vulkan", "cann", "musa")):
            usable.append(gpu)
    return usable


def _budgets(gpus: list[Gpu], compute: int) -> list[int]:
    budgets = []
    for i, gpu in enumerate(gpus):
        free = gpu.memory_free_bytes if gpu.memory_free_bytes is not None else gpu.memory_total_bytes or 0
        overhead = RUNTIME_OVERHEAD.get(verdict(gpu).backend, 457 * MIB)
        budgets.append(max(free - overhead - (compute if i == 0 else 0), 0))
    return budgets


def _ram_available(profile: HardwareProfile, gpu_weights_on_unified: int) -> int:
    reserve = max(GIB, int(profile.memory.total_bytes * 0.05))  # the OS and everything else
    return max(profile.memory.available_bytes - reserve - gpu_weights_on_unified, 0)


def _split(n: int, budgets: list[int]) -> list[int]:
    """How llama.cpp splits ``n`` layers over GPUs: in proportion to their free memory (tensor_split)."""
    total = sum(budgets) or 1
    bounds = [round(n * sum(budgets[: i + 1]) / total) for i in range(len(budgets))]
    return [b - (bounds[i - 1] if i else 0) for i, b in enumerate(bounds)]


def _layers_layout(facts: ModelFacts, gpus: list[Gpu], ctx: int, kv_type: str, parallel: int,
                   flash: bool, profile: HardwareProfile, max_layers: int | None = None) -> _Layout:
    """The output layer and the last blocks on the GPUs, split across them in proportion to their memory,
    as many as fit (or ``max_layers``, a pinned num_gpu)."""
    kv_layer = int(kv_bytes_per_token_layer(facts, kv_type) * padded_ctx(ctx) * parallel)
    compute = compute_buffer_bytes(facts, ctx, flash)
    budgets = _budgets(gpus, compute)
    items = [(facts.output_bytes, 0)] + [(facts.block_bytes[i], kv_layer) for i in reversed(range(facts.block_count))]
    limit = len(items) if max_layers is None else min(max_layers, len(items))
    counts, used = [0] * len(gpus), [0] * len(gpus)
    for n in range(limit if gpus else 0, 0, -1):
        counts, used, start = _split(n, budgets), [0] * len(gpus), 0
        for g, count in enumerate(counts):
            used[g] = sum(w + kv for w, kv in items[start:start + count])
            start += count
        if all(u <= b for u, b in zip(used, budgets)):
            break
    else:
        counts, used = [0] * len(gpus), [0] * len(gpus)
    placed = sum(counts)
    gpu_weights = sum(w for w, _ in items[:placed])
    gpu_kv = sum(kv for _, kv in items[:placed])
    n_blocks_gpu = max(placed - 1, 0)
    cpu_weights = facts.weight_bytes - gpu_weights
    cpu_kv = kv_layer * (facts.block_count - n_blocks_gpu)
    cpu_compute = compute if placed == 0 else compute // 4
    unified = sum(used[i] for i, gpu in enumerate(gpus) if gpu.unified_memory)
    ram_needed = cpu_weights + cpu_kv + cpu_compute
    placement = "gpu" if placed == facts.block_count + 1 else "partial" if placed else "cpu"
    return _Layout(
        placement, gpu_weights, gpu_kv, placed,
        [u + (compute if i == 0 else 0) for i, u in enumerate(used) if counts[i]],
        counts, cpu_weights, cpu_kv, compute, None, ram_needed,
        ram_needed <= _ram_available(profile, unified), [],
    )


def _experts_layout(facts: ModelFacts, gpus: list[Gpu], ctx: int, kv_type: str, parallel: int,
                    flash: bool, profile: HardwareProfile) -> _Layout | None:
    """All layers on the GPUs with routed experts in RAM (and early blocks' experts back on spare VRAM)."""
    if not facts.expert_count or not gpus:
        return None
    kv_total = kv_cache_bytes(facts, ctx, kv_type, parallel)
    compute = compute_buffer_bytes(facts, ctx, flash)
    budget = sum(_budgets(gpus, compute))
    non_expert = facts.weight_bytes - facts.embed_bytes - facts.expert_bytes
    spare = budget - non_expert - kv_total
    if spare < 0:
        return None
    first_cpu = 0
    for i in range(facts.block_count):
        if facts.block_expert_bytes[i] > spare:
            break
        spare -= facts.block_expert_bytes[i]
        first_cpu = i + 1
    experts_gpu = sum(facts.block_expert_bytes[:first_cpu])
    gpu_weights = non_expert + experts_gpu
    cpu_weights = facts.weight_bytes - gpu_weights
    ram_needed = cpu_weights + compute // 4
    unified = gpu_weights + kv_total if any(g.unified_memory for g in gpus) else 0
    placement = "gpu" if first_cpu >= facts.block_count else "partial"
    budgets = _budgets(gpus, compute)
    counts = _split(facts.block_count + 1, budgets)
    on_gpus = gpu_weights + kv_total
    total = sum(budgets) or 1
    used = [on_gpus * b // total + (compute if i == 0 else 0) for i, b in enumerate(budgets)]
    return _Layout(
        placement, gpu_weights, kv_total, facts.block_count + 1, [u for u, c in zip(used, counts) if c],
        counts, cpu_weights, 0, compute, first_cpu if first_cpu < facts.block_count else None,
        ram_needed, ram_needed <= _ram_available(profile, unified), [],
    )


def _finalize(layout: _Layout, facts: ModelFacts, profile: HardwareProfile, mmap_ok: bool, swap_counts: bool) -> _Layout:
    """Decide whether the CPU share fits RAM, or must stream from disk (mmap), or cannot run."""
    if layout.ram_fits:
        return layout
    available = _ram_available(profile, 0) + (profile.memory.swap_free_bytes if swap_counts else 0)
    if swap_counts and layout.ram_needed <= available:
        layout.ram_fits = True
        layout.notes.append("the CPU share fits only with swap: expect heavy paging")
        return layout
    non_weight = layout.ram_needed - layout.cpu_weights
    if mmap_ok and non_weight <= _ram_available(profile, 0):
        layout.placement = "mmap"
        return layout
    layout.placement = "none"
    return layout


def _layout(facts: ModelFacts, gpus: list[Gpu], ctx: int, kv_type: str, parallel: int, flash: bool,
            profile: HardwareProfile, engine: str, version: tuple[int, int, int], num_gpu: int | None = None) -> _Layout:
    old_ollama = engine == "ollama" and version < OLLAMA_AUTO_FIT
    layers = _layers_layout(facts, gpus, ctx, kv_type, parallel, flash, profile, max_layers=num_gpu)
    if old_ollama or num_gpu is not None:  # whole layers: old Ollama's own rule, or a pinned num_gpu (-ngl N)
        return _finalize(layers, facts, profile, mmap_ok=not old_ollama, swap_counts=old_ollama)
    experts = _experts_layout(facts, gpus, ctx, kv_type, parallel, flash, profile)
    # MoE: attention + KV on the GPUs and routed experts in RAM reads far fewer bytes from RAM per token.
    best = experts if layers.placement != "gpu" and experts is not None else layers
    return _finalize(best, facts, profile, mmap_ok=True, swap_counts=False)


def _unsloth_offload(facts: ModelFacts, gpus: list[Gpu]) -> int | None:
    """Unsloth's rule of thumb: floor(VRAM_GB / FileSize_GB x n_layers - 4), sizes in GiB."""
    if facts.architecture != "deepseek2" or not gpus:
        return None
    vram = sum(g.memory_total_bytes or 0 for g in gpus) / GIB
    size = facts.weight_bytes / GIB
    return max(int(vram / size * facts.block_count - 4), 0)


def _digits(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def number_range_regex(first: int, last: int) -> str:
    """An alternation matching exactly the whole numbers first..last (both >= 0), decade by decade:
    9..60 -> ``9|[1-5][0-9]|60``."""
    parts, n = [], first
    while n <= last:
        tens, unit = divmod(n, 10)
        if unit or n + 9 > last:  # part of a decade
            stop = min(tens * 10 + 9, last)
            parts.append((str(tens) if tens else "") + _digits(unit, stop % 10))
            n = stop + 1
        elif 1 <= tens <= 9:  # whole two-digit decades: one class for their tens
            top = min(9, (last + 1) // 10 - 1)
            parts.append(_digits(tens, top) + "[0-9]")
            n = (top + 1) * 10
        else:  # 0-9, or a whole decade of a larger number
            parts.append((str(tens) if tens else "") + "[0-9]")
            n += 10
    return "|".join(parts)


def _ot_pattern(first_cpu: int | None, n_layer: int) -> str:
    if first_cpu is None or first_cpu <= 0:
        return r".ffn_.*_exps.=CPU"
    return rf"blk\.({number_range_regex(first_cpu, n_layer - 1)})\.ffn_.*_exps\.=CPU"


DEFAULT_CONTEXTS = (1024, 2048, 4096, 8192, 16384)  # what a default num_ctx may be; R1 reasoning wants ~8K+
SPEED_KEPT = 0.95  # a longer default context must keep the placement and this share of the speed
KV_SHARE = 0.25  # ... and its KV cache may take at most this share of the machine's memory


def plan(facts: ModelFacts, profile: HardwareProfile, *, ctx: int | str | None = None, **options: Any) -> Plan:
    """The plan at ``ctx`` (a number, ``"max"`` for the largest that keeps the placement, or None for the
    default context), with the Apple wired-memory limit raised when that makes the model fit on the GPU,
    and a note when another engine would decode much faster here."""
    result = _plan_ctx(facts, profile, ctx, options)
    raised = _raised_wired_limit(profile)
    if raised is not None and result.placement != "gpu":
        better = _plan_ctx(facts, raised[0], ctx, options)
        if better.placement == "gpu" or better.fits and not result.fits:
            result = replace(better, notes=(*better.notes, _wired_note(raised[1], profile)))
    return replace(result, notes=(*result.notes, *_engine_note(facts, profile, ctx, options, result)))


WIRED_RESERVE = 16 * GIB  # what macOS and the apps keep when the GPU's wired limit is raised


def _raised_wired_limit(profile: HardwareProfile) -> tuple[HardwareProfile, int] | None:
    """The profile with the Apple GPU allowed all but WIRED_RESERVE (or 8%) of memory, and that limit in MiB;
    None when there is no Apple GPU or its budget is already that high."""
    apple = [g for g in profile.gpus if g.vendor == "apple" and g.unified_memory]
    if not apple:
        return None
    limit = profile.memory.total_bytes - max(WIRED_RESERVE, int(profile.memory.total_bytes * 0.08))
    if limit <= (apple[0].memory_total_bytes or 0):
        return None
    gpu = replace(apple[0], memory_total_bytes=limit, memory_free_bytes=limit)
    return replace(profile, gpus=tuple(gpu if g is apple[0] else g for g in profile.gpus)), limit // MIB


def _wired_note(limit_mib: int, profile: HardwareProfile) -> str:
    keep = (profile.memory.total_bytes - (limit_mib * MIB)) / GIB
    return (f"planned with macOS's GPU wired-memory limit raised (the default lets Metal use 75%): run "
            f"'sudo sysctl iogpu.wired_limit_mb={limit_mib}' before loading (it lasts until a reboot; "
            f"'sudo sysctl iogpu.wired_limit_mb=0' undoes it). Risk: macOS and every other app then share "
            f"{keep:.0f} GiB; if they need more the Mac swaps hard or freezes, so close other apps first")


def _engine_note(facts: ModelFacts, profile: HardwareProfile, ctx: int | str | None, options: dict[str, Any],
                 result: Plan) -> list[str]:
    """Old Ollama places whole layers; llama-server's -ot (or Ollama >= 0.30) may decode far faster here."""
    version = parse_version(options["ollama_version"]) if options.get("ollama_version") else LATEST_OLLAMA
    if options.get("engine", "ollama") != "ollama" or version >= OLLAMA_AUTO_FIT or not facts.expert_count:
        return []
    other = _plan_ctx(facts, profile, ctx, {**options, "engine": "llama.cpp", "ollama_version": None})
    if other.placement == "none" or other.decode_tokens_per_s < 1.2 * result.decode_tokens_per_s:
        return []
    how = "get it with Ollama >= 0.30 ('dslocal ollama install') or 'dslocal serve MODEL --engine embedded'"
    if result.placement == "none":
        return [f"Ollama {'.'.join(map(str, version))} cannot load it here, but llama-server with the routed experts "
                f"in RAM (-ot) can, at about {other.decode_tokens_per_s:.1f} tok/s; {how}"]
    return [f"the fastest engine here is llama-server with the routed experts in RAM (-ot): about "
            f"{other.decode_tokens_per_s:.1f} tok/s against {result.decode_tokens_per_s:.1f}; {how}"]


def _plan_ctx(facts: ModelFacts, profile: HardwareProfile, ctx: int | str | None, options: dict[str, Any]) -> Plan:
    """The plan at a given context, at the largest that keeps the placement (``"max"``), or at the default.

    The default is the longest of 4096, 8192 and 16384 tokens (capped at the model's own
    context) whose plan keeps the placement, the GPU layers and the speed reached at 4096,
    with a KV cache of at most a quarter of the machine's memory; below 4096 only when 4096
    cannot run. Memory that a longer context would take is not worth a slower or
    worse placement (newcomer trial A3, C1); how far the context can go is said in a note.
    A machine that streams weights from disk keeps 4096: every byte of KV cache there is a
    byte of weights pushed out of the page cache.
    """
    if ctx == "max":
        base = _plan_ctx(facts, profile, None, options)
        if base.placement == "none":
            return base
        return _plan_at(facts, profile, _longest_keeping(facts, profile, base, options, speed_too=False), **options)
    if ctx is not None:
        return _plan_at(facts, profile, int(ctx), **options)
    trained = facts.context_length
    sizes = sorted({min(c, trained) for c in DEFAULT_CONTEXTS})
    plans = {c: _plan_at(facts, profile, c, **options) for c in sizes}
    base = min(4096, trained)
    runnable = [c for c in sizes if plans[c].placement != "none"]
    ref = plans[base] if base in runnable else plans[max((c for c in runnable if c < base), default=base)]
    memory = profile.memory.available_bytes + sum(g.memory_total_bytes or 0 for g in profile.gpus)
    chosen = ref
    for size in sizes:
        if ref.placement == "mmap":
            break
        if size > ref.num_ctx and _keeps(plans[size], ref) and plans[size].kv_cache_bytes <= KV_SHARE * memory:
            chosen = plans[size]
    if chosen.placement == "none":
        return chosen
    longest = _longest_keeping(facts, profile, chosen, options)
    note = f"num_ctx {chosen.num_ctx} by default (the model's own is {trained})"
    if chosen.placement == "mmap":
        note += ("; the weights stream from disk here, and a longer context's KV cache would push more of them "
                 "out of RAM: pass --ctx for more, at some speed")
    elif longest > chosen.num_ctx:
        note += f"; up to {longest} keeps this placement and speed: pass --ctx for longer conversations (--ctx max)"
    return replace(chosen, notes=(note, *chosen.notes))


def _keeps(candidate: Plan, ref: Plan) -> bool:
    return (candidate.placement == ref.placement and candidate.gpu_layers >= ref.gpu_layers
            and candidate.decode_tokens_per_s >= SPEED_KEPT * ref.decode_tokens_per_s)


def _longest_keeping(facts: ModelFacts, profile: HardwareProfile, chosen: Plan, options: dict[str, Any],
                     speed_too: bool = True) -> int:
    """The longest context (in steps of 256) whose plan keeps ``chosen``'s placement (and speed)."""
    lo, hi = chosen.num_ctx // 256, facts.context_length // 256
    while lo < hi:
        mid = (lo + hi + 1) // 2
        candidate = _plan_at(facts, profile, mid * 256, **options)
        if _keeps(candidate, chosen) if speed_too else candidate.placement == chosen.placement:
            lo = mid
        else:
            hi = mid - 1
    return max(lo * 256, chosen.num_ctx)


def _num_gpu(layout: _Layout, facts: ModelFacts, engine: str, version: tuple[int, int, int],
             num_gpu: int | None) -> tuple[int | None, str]:
    """The num_gpu to write, by engine and Ollama version, and why."""
    if num_gpu is not None:
        return num_gpu, "pinned by the user"
    if engine != "ollama":
        return (999 if layout.experts_on_cpu_from is not None or layout.placement == "gpu" else layout.gpu_layers,
                "llama.cpp -ngl")
    if version < OLLAMA_AUTO_FIT:
        return layout.gpu_layers, (f"Ollama {'.'.join(map(str, version))} counts whole layers: {facts.block_count} "
                                   f"blocks + 1 output = {facts.block_count + 1}")
    return None, ("left unset: from v0.30 Ollama runs llama-server, whose fit places layers and MoE experts itself; "
                  "a pinned num_gpu would skip it")


def _active_bytes(layout: _Layout, facts: ModelFacts) -> tuple[float, float, float]:
    """(weights read per token on the GPUs, in RAM, and the GPUs' share of the KV cache)."""
    share = facts.expert_used / facts.expert_count if facts.expert_count else 1.0
    active = [b - e * (1 - share) for b, e in zip(facts.block_bytes, facts.block_expert_bytes)]
    if layout.experts_on_cpu_from is not None:
        k = layout.experts_on_cpu_from
        gpu_active = sum(a - e * share for a, e in zip(active, facts.block_expert_bytes)) + facts.output_bytes
        gpu_active += sum(e * share for e in facts.block_expert_bytes[:k])
        return gpu_active, sum(e * share for e in facts.block_expert_bytes[k:]), 1.0
    n_gpu_blocks = max(layout.gpu_layers - 1, 0)
    gpu_blocks = range(facts.block_count - n_gpu_blocks, facts.block_count)
    gpu_active = sum(active[i] for i in gpu_blocks) + (facts.output_bytes if layout.gpu_layers else 0)
    cpu_active = sum(active) + facts.output_bytes - gpu_active
    return gpu_active, cpu_active, n_gpu_blocks / facts.block_count if facts.block_count else 0.0


def _per_gpu(layout: _Layout, gpus: list[Gpu], total: float) -> list[tuple[Gpu, float]]:
    """Each card's share of the bytes read on the GPUs, as the layout spreads the model over them."""
    placed = list(zip([g for g, count in zip(gpus, layout.gpu_layer_counts) if count], layout.gpu_used))
    whole = sum(used for _, used in placed) or 1
    return [(gpu, total * used / whole) for gpu, used in placed]


def _decode_speed(layout: _Layout, facts: ModelFacts, profile: HardwareProfile, gpus: list[Gpu], kv_token: float,
                  num_ctx: int, cpu_bw: float | None, notes: list[str]) -> tuple[float, float, speed.Decode, float]:
    """(GPU bytes and CPU bytes of weights read per token, the decode estimate, KV bytes read)."""
    gpu_active, cpu_active, gpu_kv_frac = _active_bytes(layout, facts)
    kv_read = kv_token * min(speed.FILLED_CONTEXT, num_ctx)
    gpu_bytes_tok = gpu_active + kv_read * gpu_kv_frac
    cpu_bytes_tok = cpu_active + kv_read * (1 - gpu_kv_frac)
    disk_bytes_tok = 0.0
    if layout.placement == "mmap":
        room = max(_ram_available(profile, 0) - (layout.ram_needed - layout.cpu_weights), 0)
        resident = min(room / layout.cpu_weights, 1.0) if layout.cpu_weights else 1.0
        disk_bytes_tok = cpu_active * (1 - resident)
        cpu_bytes_tok -= disk_bytes_tok
        notes.append(
            f"the weights do not fit in RAM: llama.cpp streams {layout.cpu_weights / GIB:.0f} GiB from disk with mmap "
            f"({resident:.0%} stays cached); speed is bound by the SSD"
        )
    result = speed.decode(_per_gpu(layout, gpus, gpu_bytes_tok) if gpus else [], cpu_bytes_tok, disk_bytes_tok,
                          profile, moe=bool(facts.expert_count), architecture=facts.architecture, cpu_bw=cpu_bw)
    return gpu_active, cpu_active, result, kv_read


def _speed_notes(estimate: speed.Decode, facts: ModelFacts, layout: _Layout, profile: HardwareProfile,
                 gpus: list[Gpu], total_active: float, kv_read: float, cpu_bw: float | None) -> list[str]:
    bw, source = (cpu_bw, "given") if cpu_bw else speed.cpu_bandwidth(profile)
    ram = any(t.kind == "cpu" for t in estimate.terms)
    notes = [
        f"speed from a bandwidth model ({total_active / GIB:.1f} GiB of weights and {kv_read / GIB:.1f} GiB of KV "
        f"cache read per token{f'; system memory {bw / 1e9:.0f} GB/s, {source}' if ram else ''}; "
        f"efficiencies: {speed.calibration().source}); an estimate"
    ]
    if layout.placement not in ("none",):
        notes.append(speed.what_would_help(estimate, legacy_kv=facts.layout == "legacy",
                                           experts_on_cpu=layout.experts_on_cpu_from is not None, has_gpu=bool(gpus)))
    return notes


def _setup_notes(profile: HardwareProfile, gpus: list[Gpu], kv_type: str) -> list[str]:
    notes = []
    if kv_type != "f16":
        notes.append(f"a {kv_type} KV cache needs flash attention (OLLAMA_FLASH_ATTENTION=1, OLLAMA_KV_CACHE_TYPE={kv_type})")
    for g in (g for g in profile.gpus if g not in gpus):
        notes.append(f"{g.name}: not used ({verdict(g).reason})" + (f"; {verdict(g).advisory}" if verdict(g).advisory else ""))
    return notes


def _kv_notes(facts: ModelFacts, kv_type: str, kv_token: float) -> list[str]:
    if facts.layout == "legacy":
        return [f"legacy deepseek2 GGUF: an MHA-sized KV cache of {kv_token / MIB:.2f} MiB per token "
                f"({kv_cache_bytes(facts, 2048, kv_type) / GIB:.1f} GiB at 2048 tokens); MLA re-quants need ~1/70 of that"]
    if facts.layout == "mla":
        return [f"MLA deepseek2 GGUF: a compressed KV cache of {kv_token / 1024:.0f} KiB per token (K only)"]
    return []


def _no_fit_note(layout: _Layout, profile: HardwareProfile, gpus: list[Gpu], old_version: tuple[int, int, int] | None,
                 kv_total: int, num_ctx: int) -> str:
    """Why a plan cannot load: old Ollama's own refusal, or the RAM it would need."""
    if old_version is not None:
        return (f"does not fit: Ollama {'.'.join(map(str, old_version))} refuses when the CPU share "
                f"({layout.ram_needed / GIB:.0f} GiB) exceeds free RAM + swap")
    return (f"does not fit: needs {layout.ram_needed / GIB:.0f} GiB of RAM for "
            f"{'the weights, ' if layout.cpu_weights else ''}the KV cache ({kv_total / GIB:.0f} GiB at {num_ctx} tokens) "
            f"and buffers{' beyond what the GPUs hold' if gpus else ''}; {_ram_available(profile, 0) / GIB:.0f} GiB is free")


def _prefill_speed(facts: ModelFacts, profile: HardwareProfile, gpus: list[Gpu], gpu_active: float,
                   cpu_active: float) -> float:
    """Prompt tokens per second: compute-bound, split by where the active weights sit."""
    gpu_flops = speed.gpu_spec(gpus[0])[1] if gpus else 0.0
    active_params = facts.params * (facts.active_bytes / max(facts.weight_bytes - facts.embed_bytes, 1))
    total_active = gpu_active + cpu_active
    gpu_frac = gpu_active / total_active if total_active else 0.0
    cal = speed.calibration()
    flops = 1.0 / ((gpu_frac / (gpu_flops * cal.gpu_flops_share) if gpu_flops else 0.0)
                   + (1 - gpu_frac) / speed.cpu_flops(profile, cal))
    return flops / (2 * active_params) if active_params else 0.0


def _shares(layout: _Layout, gpus: list[Gpu]) -> tuple[GpuShare, ...]:
    """Each usable GPU's budget, what the plan puts on it, and its layers."""
    shares = []
    budgets = _budgets(gpus, layout.compute)
    used_iter = iter(layout.gpu_used)
    for i, gpu in enumerate(gpus):
        count = layout.gpu_layer_counts[i] if i < len(layout.gpu_layer_counts) else 0
        used = next(used_iter, 0) if count else 0
        shares.append(GpuShare(gpu.index, gpu.name, budgets[i], used, count))
    return tuple(shares)


def _plan_at(
    facts: ModelFacts,
    profile: HardwareProfile,
    ctx: int,
    *,
    kv_type: str = "f16",
    engine: str = "ollama",
    ollama_version: str | None = None,
    parallel: int = 1,
    num_gpu: int | None = None,
    cpu_bw: float | None = None,
    variant: str | None = None,
) -> Plan:
    version = parse_version(ollama_version) if ollama_version else LATEST_OLLAMA
    gpus = _usable(profile, engine)
    flash = bool(gpus) or kv_type != "f16"
    notes = _setup_notes(profile, gpus, kv_type)

    trained = facts.context_length
    if ctx > trained:
        notes.append(f"num_ctx {ctx} is more than the model's trained context; capped at {trained}")
    num_ctx = min(ctx, trained)
    layout = _layout(facts, gpus, num_ctx, kv_type, parallel, flash, profile, engine, version, num_gpu)

    kv_total = kv_cache_bytes(facts, num_ctx, kv_type, parallel)
    kv_token = kv_bytes_per_token(facts, kv_type)
    notes.extend(_kv_notes(facts, kv_type, kv_token))

    old_ollama = engine == "ollama" and version < OLLAMA_AUTO_FIT
    pinned, reason = _num_gpu(layout, facts, engine, version, num_gpu)
    ot = _ot_pattern(layout.experts_on_cpu_from, facts.block_count) if layout.experts_on_cpu_from is not None else None
    gpu_active, cpu_active, estimate, kv_read = _decode_speed(layout, facts, profile, gpus, kv_token, num_ctx,
                                                              cpu_bw, notes)
    decode = estimate.tokens_per_s
    prefill = _prefill_speed(facts, profile, gpus, gpu_active, cpu_active)
    if layout.placement == "none":
        decode = prefill = 0.0
    notes.extend(_speed_notes(estimate, facts, layout, profile, gpus, gpu_active + cpu_active, kv_read, cpu_bw))

    unsloth = _unsloth_offload(facts, gpus)
    if unsloth is not None and old_ollama:
        notes.append(
            f"Unsloth's rule of thumb floor(VRAM/size x {facts.block_count} - 4) gives {unsloth} layers; this plan gives "
            f"{max(layout.gpu_layers - 1, 0)} blocks (+ output) because it counts the KV cache for {num_ctx} tokens, "
            f"the compute buffer and the per-GPU runtime overhead"
        )
    if not facts.exact:
        notes.append("sizes estimated from the catalog; plan a downloaded file (or run online) for exact header sizes")
    notes.extend(layout.notes)

    # "fits" means it runs from memory; streaming weights from disk (mmap) is possible but not a fit.
    fits = layout.placement not in ("none", "mmap")
    if layout.placement == "none":
        notes.append(_no_fit_note(layout, profile, gpus, version if old_ollama else None, kv_total, num_ctx))
    ngl = "999" if pinned == 999 else str(layout.gpu_layers)
    cli_args = f"-c {num_ctx} -ngl {ngl} -t {profile.cpu.physical_cores}"
    if kv_type != "f16":
        cli_args += f" -fa on --cache-type-k {kv_type} --cache-type-v {kv_type}"
    if ot:
        cli_args += f' -ot "{ot}"'
    return Plan(
        variant=variant or facts.name,
        model=facts.name,
        engine=engine,
        ollama_version=".".join(map(str, version)) if engine == "ollama" else None,
        fits=fits,
        placement=layout.placement,
        num_gpu=pinned,
        num_gpu_reason=reason,
        gpu_layers=layout.gpu_layers,
        total_layers=facts.block_count + 1,
        num_ctx=num_ctx,
        num_thread=profile.cpu.physical_cores,
        kv_cache_type=kv_type,
        flash_attention=flash,
        weights_bytes=facts.weight_bytes,
        gpu_bytes=layout.gpu_weights + layout.gpu_kv + (layout.compute if layout.gpu_layers else 0),
        ram_bytes=layout.ram_needed,
        kv_cache_bytes=kv_total,
        kv_bytes_per_token=int(kv_token),
        compute_bytes=layout.compute,
        decode_tokens_per_s=round(decode, 2),
        prefill_tokens_per_s=round(prefill, 1),
        override_tensors=ot,
        llama_cpp_args=cli_args,
        gpus=_shares(layout, gpus),
        unsloth_offload=unsloth,
        exact=facts.exact,
        facts_source=facts.source,
        notes=tuple(notes),
    )
