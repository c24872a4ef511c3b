"""Beyond one machine: the FP8 original across nodes with SGLang or vLLM, with exact launch commands.

DeepSeek-R1/V3 in FP8 are 671B parameters (~690 GB of weights); with KV cache and
activations a deployment needs at least 890 GB of GPU memory in all, the classic one
being 2 x 8 H20 (2 x XE9680) with tensor parallelism 16.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dslocal.errors import UsageError

MIN_TOTAL_BYTES = 890 * 10**9
R1_FP8_BYTES = 689 * 10**9
# KV cache, activations and CUDA graphs on top of the weights, as R1's classic deployment has them
HEADROOM = MIN_TOTAL_BYTES / R1_FP8_BYTES


def min_total_bytes(weights_bytes: int) -> int:
    """GPU memory a deployment of ``weights_bytes`` of checkpoint needs in all, by R1's proportion."""
    return int(weights_bytes * HEADROOM)
MAX_NODES = 64  # a launch script per node is printed: more is not a plan anyone runs from a terminal
MAX_GPUS_PER_NODE = 16
GPU_MEMORY_GB = {"H20": 96, "H200": 141, "H100": 80, "H800": 80, "A100": 80, "A800": 80, "L40S": 48, "MI300X": 192,
                 "910B": 64, "B200": 192}


@dataclass(frozen=True)
class ClusterSpec:
    nodes: int
    gpus_per_node: int
    gpu: str
    gpu_memory_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.nodes * self.gpus_per_node * self.gpu_memory_bytes


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


def parse_cluster(text: str) -> ClusterSpec:
    """``2 nodes x 8 H20``, ``2x8xH20``, ``1 node x 8 H200``, or one node: ``8xH200``, ``8 H200``."""
    if match := _NODES.match(text):
        nodes_text, per_node_text, gpu_name = match.groups()
    elif match := _ONE_NODE.match(text):
        nodes_text, (per_node_text, gpu_name) = "1", match.groups()
    else:
        raise UsageError(f"--cluster {text!r} is not a cluster spec", "write it like '2 nodes x 8 H20' or 2x8xH20")
    gpu = gpu_name.upper()
    if gpu not in GPU_MEMORY_GB:
        raise UsageError(f"dslocal does not know the {gpu_name} GPU", f"known: {', '.join(GPU_MEMORY_GB)}")
    nodes, per_node = int(nodes_text), int(per_node_text)
    for count, what, most in ((nodes, "nodes", MAX_NODES), (per_node, "GPUs per node", MAX_GPUS_PER_NODE)):
        if not 1 <= count <= most:
            raise UsageError(f"--cluster {text.strip()!r}: {count} {what} is out of range 1..{most}",
                             "write it like '2 nodes x 8 H20' or 2x8xH20")
    return ClusterSpec(nodes, per_node, gpu, GPU_MEMORY_GB[gpu] * 10**9)


def cluster_plan(spec: ClusterSpec, model: str = "deepseek-ai/DeepSeek-R1", head: str = "HEAD_NODE_IP",
                 weights_bytes: int = R1_FP8_BYTES, precision: str = "FP8") -> ClusterPlan:
    needed = min_total_bytes(weights_bytes)
    fits = spec.total_bytes >= needed
    tp, pp = spec.nodes * spec.gpus_per_node, 1
    sglang = tuple(
        f"python3 -m sglang.launch_server --model-path {model} --tp {tp} --dist-init-addr {head}:20000 "
        f"--nnodes {spec.nodes} --node-rank {rank} --trust-remote-code"
        + (" --host 0.0.0.0 --port 30000" if rank == 0 else "")
        for rank in range(spec.nodes)
    ) if spec.nodes > 1 else (
        f"python3 -m sglang.launch_server --model-path {model} --tp {tp} --trust-remote-code --host 0.0.0.0 --port 30000",
    )
    vllm = (
        ("ray start --head --port=6379",)
        + tuple(f"ray start --address={head}:6379" for _ in range(1, spec.nodes))
        + (f"vllm serve {model} --tensor-parallel-size {spec.gpus_per_node} --pipeline-parallel-size {spec.nodes} "
           "--trust-remote-code  # on the head node",)
    ) if spec.nodes > 1 else (f"vllm serve {model} --tensor-parallel-size {spec.gpus_per_node} --trust-remote-code",)
    notes = [
        f"{spec.nodes} x {spec.gpus_per_node} {spec.gpu} = {spec.total_bytes / 1e9:.0f} GB of GPU memory; "
        f"the {precision} model ({weights_bytes / 1e9:.0f} GB of weights) needs at least {needed / 1e9:.0f} GB "
        "with its KV cache and activations",
        f"replace {head} with the first node's address on the fast (InfiniBand/RoCE) network; open port 20000 "
        "(SGLang) or 6379 (Ray) between the nodes",
    ]
    if spec.gpu == "910B":
        notes.append("on Ascend use MindIE or vLLM-Ascend with the W8A8 weights instead of these CUDA engines")
    if not fits:
        need = -(-needed // (spec.gpus_per_node * spec.gpu_memory_bytes))
        notes.append(f"does not fit: with {spec.gpus_per_node} {spec.gpu} per node it takes {need} nodes")
    return ClusterPlan(spec, fits, tp, pp, sglang, vllm, tuple(notes))
