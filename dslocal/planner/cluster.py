"""Beyond one machine: the multi-node originals across nodes with SGLang or vLLM (``plan --cluster``).

The core is :mod:`dslocal.cluster` (memory per GPU, layout, verdict, commands, checks); this module
parses the short ``--cluster SPEC`` form and keeps the summary ``plan --cluster`` has always returned.
DeepSeek-R1/V3 in FP8 are 671B parameters (~690 GB of weights); R1's classic deployment is
2 x 8 H20 (2 x XE9680) with tensor parallelism 16.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from dslocal.cluster.gpus import GPUS
from dslocal.cluster.plan import ClusterSpec, Deployment, plan_deployment
from dslocal.errors import UsageError

MAX_NODES = 64  # a launch script per node is printed: more is not a plan anyone runs from a terminal
MAX_GPUS_PER_NODE = 16
GPU_MEMORY_GB = {name: kind.memory_gb for name, kind in GPUS.items()}

__all__ = ["ClusterPlan", "ClusterSpec", "GPU_MEMORY_GB", "cluster_plan", "memory_summary", "parse_cluster",
           "spec_of"]


@dataclass(frozen=True)
class ClusterPlan:
    spec: ClusterSpec
    fits: bool
    tensor_parallel: int
    pipeline_parallel: int
    sglang: tuple[str, ...]  # one command per node
    vllm: tuple[str, ...]
    notes: tuple[str, ...]


_NODES = re.compile(r"^\s*(\d+)\s*(?:nodes?)?\s*[x×*]\s*(\d+)\s*[x×*]?\s*([A-Za-z0-9-]+)\s*$", re.I)
_ONE_NODE = re.compile(r"^\s*(\d+)\s*[x×*]?\s*([A-Za-z][A-Za-z0-9-]*)\s*$", re.I)


def spec_of(nodes: int, per_node: int, gpu_name: str, shown: str | None = None) -> ClusterSpec:
    """A checked spec: a known GPU, 1..64 nodes of 1..16 GPUs."""
    gpu = gpu_name.upper()
    if gpu not in GPU_MEMORY_GB:
        raise UsageError(f"dslocal does not know the {gpu_name} GPU", f"known: {', '.join(GPU_MEMORY_GB)}")
    for count, what, most in ((nodes, "nodes", MAX_NODES), (per_node, "GPUs per node", MAX_GPUS_PER_NODE)):
        if not 1 <= count <= most:
            where = f"--cluster {shown!r}: " if shown else ""
            raise UsageError(f"{where}{count} {what} is out of range 1..{most}",
                             "write it like '2 nodes x 8 H20' or 2x8xH20")
    return ClusterSpec(nodes, per_node, gpu, GPU_MEMORY_GB[gpu] * 10**9)


def parse_cluster(text: str) -> ClusterSpec:
    """``2 nodes x 8 H20``, ``2x8xH20``, ``1 node x 8 H200``, or one node: ``8xH200``, ``8 H200``."""
    if match := _NODES.match(text):
        nodes_text, per_node_text, gpu_name = match.groups()
    elif match := _ONE_NODE.match(text):
        nodes_text, (per_node_text, gpu_name) = "1", match.groups()
    else:
        raise UsageError(f"--cluster {text!r} is not a cluster spec", "write it like '2 nodes x 8 H20' or 2x8xH20")
    return spec_of(int(nodes_text), int(per_node_text), gpu_name, text.strip())


def memory_summary(d: Deployment) -> str:
    """The cluster's GPU memory against what this deployment needs (the plan's own estimate, per GPU x GPUs)."""
    need = (d.memory.weights + d.memory.kv_cache + d.memory.reserved) * d.spec.world
    return (f"{d.spec.nodes} x {d.spec.gpus_per_node} {d.spec.gpu} = {d.spec.total_bytes / 1e9:.0f} GB of GPU memory; "
            f"the {d.precision} model ({d.weights_bytes / 1e9:.0f} GB of weights) needs about {need / 1e9:.0f} GB "
            f"with its KV cache at {d.ctx} tokens x {d.concurrency} requests and the activations")


def cluster_plan(spec: ClusterSpec, model: str = "deepseek-ai/DeepSeek-R1", head: str = "HEAD_NODE_IP",
                 weights_bytes: int | None = None, precision: str | None = None) -> ClusterPlan:
    """The summary of a deployment of ``model`` (a multi-node original's repository) on ``spec``:
    the GPU's first engine decides the verdict; SGLang and vLLM commands (vLLM-Ascend's on Ascend)."""
    from dslocal.catalog import load_catalog
    from dslocal.cluster.commands import Network, launches
    from dslocal.cluster.gpus import ENGINES

    originals = [v for v in load_catalog() if v.multi_node]
    sized = [v for v in originals if (v.size_bytes, v.quant) == (weights_bytes, precision)]  # the original so sized
    named = [v for v in originals if v.hf_repo == model]
    both = [v for v in named if v in sized or weights_bytes is None]
    variant = (both or sized or named or originals)[0]
    variant = dataclasses.replace(variant, size_bytes=weights_bytes or variant.size_bytes,
                                  quant=precision or variant.quant)
    engines = ENGINES[GPUS[spec.gpu].vendor]
    plans = {engine: plan_deployment(variant, spec, engine) for engine in engines}
    first = plans[engines[0]]
    lines = {e: tuple(launch.line for launch in launches(p, Network(head=head))) if p.fits else ()
             for e, p in plans.items()}
    notes = [memory_summary(first), *first.notes]
    if spec.nodes > 1:
        notes.append(f"replace {head} with the first node's address on the fast (InfiniBand/RoCE) network")
    notes += [f"does not fit: {a}" if i == 0 else f"or: {a}" for i, a in enumerate(first.advice)]
    return ClusterPlan(spec, first.fits, first.layout.tp, first.layout.pp, lines.get("sglang", ()),
                       lines.get("vllm", lines.get("vllm-ascend", ())), tuple(notes))
