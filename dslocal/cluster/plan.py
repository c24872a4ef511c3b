"""Sizing a deployment across nodes: memory per GPU, the parallel layout, the verdict and published speed.

Memory per GPU, for the layout chosen:

* weights in the checkpoint's own precision (FP8; FP4 experts + FP8 rest for V4; BF16 where the GPU has
  no FP8; the W8A8/W4A8 checkpoints on Ascend), split as the layout splits them: tensor and pipeline
  parallelism shard everything; with DP attention (SGLang) or DP+EP (vLLM) the routed experts are spread
  over every GPU while the rest is held by each attention group;
* the KV cache at the requested context and concurrency, per token as :mod:`dslocal.planner.memory` has it
  for each layout (MLA latent 576 x 61 layers; plus the lightning indexer's keys for V3.2; V4's compressed
  caches), in BF16 (the engines' ``auto`` KV type for these checkpoints). The latent cache is not split by
  heads, so every tensor-parallel rank holds the whole of it; pipeline stages hold their layers'; DP
  attention ranks hold their own requests';
* the engine's reserve for activations and CUDA graphs: SGLang's own estimate (its ``memory_hook.py``:
  512 MiB + 1.5 MiB per chunked-prefill token + 1 GiB per 8 ranks + decode graphs, at least 10 GiB on
  GPUs above 60 GiB), and for vLLM its ``--gpu-memory-utilization`` share (0.9; 0.92 in vLLM-Ascend's
  DeepSeek tutorials) plus the same activation estimate for its 8192-token batches.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from importlib import resources

from dslocal.catalog import Variant
from dslocal.cluster.gpus import ENGINES, GPUS, GpuKind
from dslocal.errors import UsageError
from dslocal.planner.facts import ModelFacts, from_variant
from dslocal.planner.memory import kv_bytes_per_token, kv_cache_bytes

MIB = 1 << 20
GIB = 1 << 30
DEFAULT_CTX = 32768
DEFAULT_CONCURRENCY = 8
BATCH_TOKENS = {"vllm": 8192, "vllm-ascend": 4096, "mindie": 4096}  # max_num_batched_tokens: vLLM's online default; vLLM-Ascend's DeepSeek tutorials
LAYOUTS = {"sglang": ("tp", "tp-pp", "dp-attention"), "vllm": ("tp-pp", "tp", "dp-ep"),
           "vllm-ascend": ("dp-ep", "tp-pp"), "mindie": ("tp",)}
GPU_UTILIZATION = {"vllm": 0.9, "vllm-ascend": 0.92, "mindie": 0.9}


@dataclass(frozen=True)
class ClusterSpec:
    nodes: int
    gpus_per_node: int
    gpu: str
    gpu_memory_bytes: int

    @property
    def world(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def total_bytes(self) -> int:
        return self.world * self.gpu_memory_bytes


@dataclass(frozen=True)
class Layout:
    name: str  # tp, tp-pp, dp-attention, dp-ep
    tp: int
    pp: int = 1
    dp: int = 1
    ep: int = 1

    def describe(self) -> str:
        parts = [f"TP {self.tp}"] + [f"{k} {v}" for k, v in (("PP", self.pp), ("DP", self.dp), ("EP", self.ep))
                                     if v > 1]
        extra = " (DP attention)" if self.name == "dp-attention" else ""
        return " x ".join(parts) + extra


@dataclass(frozen=True)
class GpuMemory:
    capacity: int
    weights: int
    kv_cache: int
    reserved: int  # activations and CUDA graphs (and, for vLLM, what --gpu-memory-utilization leaves out)

    @property
    def usable(self) -> int:
        return self.capacity - self.reserved

    @property
    def headroom(self) -> int:
        """Left over for more KV cache (negative: short by this much per GPU)."""
        return self.usable - self.weights - self.kv_cache


@dataclass(frozen=True)
class Figure:
    model: str
    engine: str
    gpu: str
    nodes: int
    gpus_per_node: int
    layout: str
    kind: str
    scope: str
    low: float
    high: float
    workload: str
    source: str


@dataclass(frozen=True)
class Deployment:
    variant: Variant
    spec: ClusterSpec
    engine: str
    ctx: int
    concurrency: int
    layout: Layout
    memory: GpuMemory
    precision: str
    weights_bytes: int
    model_path: str
    kv_bytes_per_token: int
    figures: tuple[Figure, ...]
    notes: tuple[str, ...]
    advice: tuple[str, ...]

    @property
    def fits(self) -> bool:
        return self.memory.headroom >= 0

    @property
    def shortfall_bytes(self) -> int:
        """GPU memory missing in all (0 when it fits)."""
        return max(0, -self.memory.headroom) * self.spec.world


def engine_for(gpu: GpuKind, engine: str | None) -> str:
    allowed = ENGINES[gpu.vendor]
    if engine is None:
        return allowed[0]
    if engine not in allowed:
        raise UsageError(f"{engine} does not run on {gpu.name} ({gpu.vendor})",
                         f"use --engine {' or --engine '.join(allowed)}")
    return engine


def facts_of(variant: Variant) -> ModelFacts:
    """The model's shape; SGLang and vLLM always run DeepSeek's attention as MLA (never llama.cpp's MHA-sized layout)."""
    return from_variant(dataclasses.replace(variant, kv_layout="mla"))


def ascend_weights(variant: Variant) -> dict | None:
    table = tomllib.loads(resources.files("dslocal.cluster").joinpath("ascend.toml").read_text(encoding="utf-8"))
    return table["weights"].get(variant.model)


def _weights(variant: Variant, gpu: GpuKind, engine: str) -> tuple[int, str, str]:
    """(bytes, precision, model path) of the checkpoint this engine loads on this GPU."""
    if gpu.vendor == "ascend":
        found = ascend_weights(variant)
        if found is None:
            raise UsageError(f"{variant.id}: no Ascend (W8A8/W4A8) checkpoint of {variant.model} is known",
                             "on Ascend plan r1-671b-fp8, v3.1-fp8, v3.2-fp8 or v4-flash-fp4 (their W8A8 weights exist)")
        per_param = 1.0 if found["quant"] == "W8A8" else 0.55  # int8 weights; W4A8: 4-bit experts, 8-bit rest
        return int(variant.params_b * 1e9 * per_param), f"{found['quant']} (msModelSlim, estimated size)", found["repo"]
    if not gpu.fp8 and "FP8" in variant.quant:
        return int(variant.params_b * 1e9 * 2), f"BF16 (upcast: the {gpu.name} has no FP8)", variant.hf_repo
    return variant.size_bytes, variant.quant, variant.hf_repo


def choose_layout(spec: ClusterSpec, engine: str, facts: ModelFacts, name: str | None) -> Layout:
    allowed = LAYOUTS[engine]
    name = name or ("tp" if engine in ("vllm",) and spec.nodes == 1 else allowed[0])
    if name not in allowed:
        raise UsageError(f"{engine} has no '{name}' layout in dslocal's plans", f"use --layout {' or '.join(allowed)}")
    world, heads = spec.world, facts.n_head
    if name == "tp" and (heads % world or world > heads):
        if engine in ("sglang", "vllm") and spec.nodes > 1:
            name = "tp-pp"  # TP across every GPU must divide the attention heads; split the layers by node instead
        else:
            raise UsageError(f"tensor parallelism {world} does not divide {facts.name}'s {heads} attention heads",
                             "use a power-of-two number of GPUs (8, 16, 32)")
    if name == "tp":
        return Layout("tp", world)
    if name == "tp-pp":
        if heads % spec.gpus_per_node:
            raise UsageError(f"{spec.gpus_per_node} GPUs per node do not divide {facts.name}'s {heads} attention heads",
                             "use 8 GPUs per node")
        return Layout("tp-pp", spec.gpus_per_node, pp=spec.nodes)
    if facts.expert_count % world:
        raise UsageError(f"expert parallelism {world} does not divide {facts.name}'s {facts.expert_count} experts",
                         "use a power-of-two number of GPUs (8, 16, 32)")
    if name == "dp-attention":
        return Layout("dp-attention", world, dp=world, ep=world)
    tp = min(4, spec.gpus_per_node) if engine == "vllm-ascend" else 1  # vLLM-Ascend's tutorials: DP4 x TP4 on 2 x 8
    return Layout("dp-ep", tp, dp=world // tp, ep=world)


def _reserved(engine: str, gpu_bytes: int, layout: Layout, concurrency: int) -> int:
    gpu_mib = gpu_bytes / MIB
    chunk = 2048 if gpu_mib < 20 * 1024 else 4096 if gpu_mib < 60 * 1024 else 8192 if gpu_mib < 160 * 1024 else 16384
    if engine != "sglang":
        return int(gpu_bytes * (1 - GPU_UTILIZATION[engine]) + (512 + BATCH_TOKENS[engine] * 1.5) * MIB)
    max_bs = min(512 if gpu_mib >= 60 * 1024 else 160, concurrency)  # --max-running-requests caps the graphs
    graphs = max_bs * 2 + 1.5 * 1024  # decode graphs; the MLA prefill graph overhead
    if layout.name == "dp-attention":
        graphs += max_bs * layout.dp * (3 + (1.5 if max_bs > 300 else 0))
    reserved = 512 + max(chunk, 2048) * 1.5 + layout.tp * layout.pp / 8 * 1024 + graphs
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return int(reserved * MIB)


def gpu_memory(facts: ModelFacts, weights_bytes: int, spec: ClusterSpec, engine: str, layout: Layout,
               ctx: int, concurrency: int) -> GpuMemory:
    share = weights_bytes / facts.weight_bytes if facts.weight_bytes else 1.0
    experts, rest = facts.expert_bytes * share, (facts.weight_bytes - facts.expert_bytes) * share
    if layout.name in ("tp", "tp-pp"):
        weights = weights_bytes / (layout.tp * layout.pp)
        sequences, layer_share = concurrency, 1 / layout.pp
    else:
        attention_tp = layout.tp if layout.name == "dp-ep" else 1
        weights = experts / layout.ep + rest / attention_tp
        sequences, layer_share = math.ceil(concurrency / layout.dp), 1.0
    kv = kv_cache_bytes(facts, ctx, "bf16", parallel=sequences) * layer_share
    return GpuMemory(spec.gpu_memory_bytes, int(weights), int(kv), _reserved(engine, spec.gpu_memory_bytes, layout,
                                                                               concurrency))


def load_figures() -> tuple[dict, ...]:
    text = resources.files("dslocal.cluster").joinpath("throughput.toml").read_text(encoding="utf-8")
    return tuple(tomllib.loads(text)["figure"])


def published(facts: ModelFacts, spec: ClusterSpec, engine: str) -> tuple[Figure, ...]:
    """Figures measured on this architecture and GPU, this engine's first."""
    rows = [r for r in load_figures() if r["family"] == facts.architecture and r["gpu"] == spec.gpu]
    rows.sort(key=lambda r: (r["engine"] != engine, abs(r["nodes"] - spec.nodes)))
    return tuple(Figure(**{k: v for k, v in r.items() if k != "family"}) for r in rows)


def plan_deployment(variant: Variant, spec: ClusterSpec, engine: str | None = None, ctx: int | None = None,
                    concurrency: int = DEFAULT_CONCURRENCY, layout: str | None = None,
                    advise: bool = True) -> Deployment:
    """The deployment of a multi-node original on ``spec`` with ``engine`` (the GPU's first engine by default)."""
    if not variant.multi_node:
        raise UsageError(f"{variant.id} is not a multi-node original", f"plan it on one machine: dslocal plan {variant.id}")
    gpu = GPUS[spec.gpu]
    engine = engine_for(gpu, engine)
    ctx = min(DEFAULT_CTX, variant.context_length) if ctx is None else ctx
    if not 256 <= ctx <= variant.context_length:
        raise UsageError(f"--ctx {ctx} is outside {variant.id}'s 256..{variant.context_length} tokens",
                         f"use --ctx {min(DEFAULT_CTX, variant.context_length)}")
    if concurrency < 1:
        raise UsageError(f"--concurrency {concurrency} is below 1", "use --concurrency 1 or more")
    facts = facts_of(variant)
    chosen = choose_layout(spec, engine, facts, layout)
    weights, precision, path = _weights(variant, gpu, engine)
    memory = gpu_memory(facts, weights, spec, engine, chosen, ctx, concurrency)
    figures = published(facts, spec, engine)
    deployment = Deployment(variant, spec, engine, ctx, concurrency, chosen, memory, precision, weights, path,
                            int(kv_bytes_per_token(facts, "bf16")), figures, (), ())
    notes = _notes(deployment, gpu, facts)
    advice = _advice(deployment) if advise and not deployment.fits else ()
    return dataclasses.replace(deployment, notes=notes, advice=advice)


def _notes(d: Deployment, gpu: GpuKind, facts: ModelFacts) -> tuple[str, ...]:
    notes = []
    if gpu.vendor == "ascend":
        found = ascend_weights(d.variant)
        needs = f"; vLLM-Ascend's tutorial runs it on {found['nodes_a2']} Atlas 800 A2 (8 x 64 GB)" if found["nodes_a2"] else ""
        notes.append(f"Ascend runs the {found['quant']} checkpoint {found['repo']} (ModelScope), not the "
                     f"{d.variant.quant} original{needs} (github.com/vllm-project/vllm-ascend {found['doc']})")
    if "FP4" in d.precision and not gpu.fp4:
        notes.append(f"the {gpu.name} has no FP4 units: the FP4 experts run through the engine's weight-only kernels")
    if facts.layout == "dsa":
        notes.append("V3.2's KV cache: the MLA latent plus the lightning indexer's keys (128 per layer and token)")
    elif facts.layout == "dsv4":
        notes.append("V4's KV cache: compressed (CSA every 4 tokens, HCA every 128) plus a sliding window")
    if d.layout.name == "tp-pp" and d.engine == "sglang":
        notes.append(f"TP {d.spec.world} would not divide the {facts.n_head} attention heads: TP per node, PP across nodes")
    if d.engine == "mindie":
        notes.append("MindIE is configured by config.json and a rank table (hiascend.com MindIE docs, 多机推理), "
                     "not by flags: its keys are not checked against MindIE's source; start it on every node with "
                     "mindie-service/bin/mindieservice_daemon")
    if not d.figures:
        notes.append(f"no published throughput found for {facts.architecture} models on {d.spec.gpu}")
    return tuple(notes)


def _advice(d: Deployment) -> tuple[str, ...]:
    """What would fit: more nodes, a shorter context or fewer requests, a smaller model."""
    from dslocal.catalog import load_catalog

    out = []
    for nodes in range(d.spec.nodes + 1, 65):
        bigger = dataclasses.replace(d.spec, nodes=nodes)
        try:
            more = plan_deployment(d.variant, bigger, d.engine, d.ctx, d.concurrency, None, advise=False)
        except UsageError:
            continue
        if more.fits:
            out.append(f"{nodes} nodes x {d.spec.gpus_per_node} {d.spec.gpu} ({more.layout.describe()})")
            break
    kv_short = d.memory.kv_cache > -d.memory.headroom
    if kv_short and d.memory.weights < 0.95 * d.memory.usable:
        out.append(f"a shorter context or fewer requests: the weights take {d.memory.weights / 1e9:.0f} of "
                   f"{d.memory.usable / 1e9:.0f} GB per GPU, the KV cache the rest")
    for other in load_catalog():
        if other.multi_node and other.id != d.variant.id and other.size_bytes < d.variant.size_bytes:
            try:
                smaller = plan_deployment(other, d.spec, d.engine, min(d.ctx, other.context_length), d.concurrency,
                                          None, advise=False)
            except UsageError:
                continue
            if smaller.fits:
                out.append(f"a smaller model on this cluster: {other.id} ({other.quant}, "
                           f"{other.size_bytes / 1e9:.0f} GB of weights)")
                break
    quants = [v.id for v in load_catalog() if v.model == d.variant.model and not v.multi_node]
    if quants:
        out.append(f"a 4-bit or smaller GGUF of {d.variant.model} on one machine, e.g. {quants[-1]} "
                   f"(dslocal plan {quants[-1]})")
    return tuple(out)
