"""Each node's launch line, its environment, a ``docker run`` form and a Kubernetes LeaderWorkerSet.

The lines follow the engines' own multi-node DeepSeek examples:

* SGLang (benchmark/deepseek_v3/README.md, "Example: Serving with two H20*8 nodes"): the same line on
  every node, ``--tp 16 --dist-init-addr HEAD:5000 --nnodes 2 --node-rank R --trust-remote-code``;
* vLLM tensor x pipeline parallel (multiprocessing, no Ray): ``--tensor-parallel-size 8
  --pipeline-parallel-size 2 --nnodes 2 --node-rank R --master-addr HEAD``, ``--headless`` on the
  other nodes (vllm/entrypoints/cli/serve.py: run_headless "for multi-node PP/TP");
* vLLM data + expert parallel (docs: data_parallel_deployment): ``--data-parallel-size 16
  --data-parallel-size-local 8 --data-parallel-address HEAD --data-parallel-rpc-port 13345
  --enable-expert-parallel``; the other nodes ``--headless --data-parallel-start-rank 8`` (the head
  never sets a start rank: that turns on vLLM's hybrid load balancing, which refuses headless nodes);
* vLLM-Ascend (docs/source/tutorials/models/DeepSeek-R1.md): the vLLM DP+EP form with
  ``--quantization ascend`` and the HCCL environment.

Every flag is checked against the engine's own list (:mod:`dslocal.cluster.flags`) before it is shown.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from dslocal.cluster.flags import unknown_flags
from dslocal.cluster.plan import Deployment

SGLANG_DIST_PORT = 5000
SGLANG_HTTP_PORT = 30000
VLLM_HTTP_PORT = 8000
VLLM_DP_RPC_PORT = 13345
IMAGES = {"sglang": "lmsysorg/sglang:latest", "vllm": "vllm/vllm-openai:latest",
          "vllm-ascend": "quay.io/ascend/vllm-ascend:v0.18.0"}
REASONING = {  # the engines' reasoning parser names for each generation
    "sglang": {"deepseek2": "deepseek-r1", "deepseek32": "deepseek-v3", "deepseek4": "deepseek-v4"},
    "vllm": {"deepseek2": "deepseek_r1", "deepseek32": "deepseek_v3", "deepseek4": "deepseek_v4"},
}
V3_THINKING = ("DeepSeek-V3.1", "DeepSeek-V3.1-Terminus")  # hybrid thinking: the V3 parser, thinking on request


@dataclass(frozen=True)
class Network:
    head: str = "HEAD_NODE_IP"  # the first node's address on the fast network
    node_ips: tuple[str, ...] = ()  # every node's own address (Ascend's HCCL_IF_IP), when known
    ifname: str = "eth0"  # the interface of that network (NCCL/GLOO/HCCL socket interface)
    ib_hca: str | None = None  # NCCL_IB_HCA, e.g. mlx5 (every mlx5_* device)


# The head listens beyond loopback, so it needs a key: the launch lines read it from this variable (the
# same one 'dslocal cluster check' sends), never from a literal in a command line, a file or a log.
API_KEY_ENV = "DSLOCAL_CLUSTER_API_KEY"
KEY_TOKEN = "DSLOCALCLUSTERAPIKEY"  # stands for the variable in argv until a line is rendered


def with_key(line: str, reference: str = f'"${API_KEY_ENV}"') -> str:
    """A rendered line with the key's placeholder replaced by a shell reference to API_KEY_ENV."""
    return line.replace(KEY_TOKEN, reference)


@dataclass(frozen=True)
class NodeLaunch:
    rank: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]

    @property
    def line(self) -> str:
        return with_key(shlex.join(self.argv))


class UncheckedFlag(RuntimeError):
    """A generated flag the engine does not define: a bug in dslocal, never shown to anyone as a command."""


def _parser(d: Deployment) -> str:
    family = d.variant.architecture
    table = REASONING["sglang" if d.engine == "sglang" else "vllm"]
    if family == "deepseek2" and d.variant.model in V3_THINKING:
        return table["deepseek32"]
    return table[family]


def sglang_argv(d: Deployment, rank: str, head: str) -> list[str]:
    lay = d.layout
    argv = ["python3", "-m", "sglang.launch_server", "--model-path", d.model_path, "--tp", str(lay.tp)]
    if lay.pp > 1:
        argv += ["--pp-size", str(lay.pp)]
    if lay.name == "dp-attention":
        argv += ["--dp-size", str(lay.dp), "--enable-dp-attention", "--ep-size", str(lay.ep)]
    if d.spec.nodes > 1:
        argv += ["--dist-init-addr", f"{head}:{SGLANG_DIST_PORT}", "--nnodes", str(d.spec.nodes), "--node-rank", rank]
    argv += ["--trust-remote-code", "--context-length", str(d.ctx), "--max-running-requests", str(d.concurrency),
             "--reasoning-parser", _parser(d)]
    if rank == "0":
        argv += ["--host", "0.0.0.0", "--port", str(SGLANG_HTTP_PORT), "--api-key", KEY_TOKEN]
    return argv


def vllm_argv(d: Deployment, rank: str, head: str, start_rank: str) -> list[str]:
    lay, nodes = d.layout, d.spec.nodes
    argv = ["vllm", "serve", d.model_path, "--tensor-parallel-size", str(lay.tp)]
    if lay.name == "dp-ep":
        argv += ["--data-parallel-size", str(lay.dp), "--data-parallel-size-local", str(lay.dp // nodes),
                 "--enable-expert-parallel"]
        if nodes > 1:
            argv += ["--data-parallel-address", head, "--data-parallel-rpc-port", str(VLLM_DP_RPC_PORT)]
            if rank != "0":
                argv += ["--headless", "--data-parallel-start-rank", start_rank]
    else:
        if lay.pp > 1:
            argv += ["--pipeline-parallel-size", str(lay.pp)]
        if nodes > 1:
            argv += ["--nnodes", str(nodes), "--node-rank", rank, "--master-addr", head]
            if rank != "0":
                argv += ["--headless"]
    if d.engine == "vllm-ascend":
        argv += ["--quantization", "ascend"]
    argv += ["--trust-remote-code", "--max-model-len", str(d.ctx), "--max-num-seqs", str(d.concurrency),
             "--reasoning-parser", _parser(d)]
    if rank == "0":
        argv += ["--host", "0.0.0.0", "--port", str(VLLM_HTTP_PORT), "--api-key", KEY_TOKEN]
    return argv


def environment(d: Deployment, net: Network, rank: int) -> list[tuple[str, str]]:
    if d.engine in ("vllm-ascend", "mindie"):
        own = net.node_ips[rank] if rank < len(net.node_ips) else (net.head if rank == 0 else f"NODE{rank}_IP")
        return [("HCCL_IF_IP", own), ("GLOO_SOCKET_IFNAME", net.ifname), ("TP_SOCKET_IFNAME", net.ifname),
                ("HCCL_SOCKET_IFNAME", net.ifname), ("HCCL_BUFFSIZE", "200"), ("OMP_PROC_BIND", "false"),
                ("OMP_NUM_THREADS", "1"), ("PYTORCH_NPU_ALLOC_CONF", "expandable_segments:True")]
    env = [("NCCL_SOCKET_IFNAME", net.ifname), ("GLOO_SOCKET_IFNAME", net.ifname)]
    if net.ib_hca:
        env.append(("NCCL_IB_HCA", net.ib_hca))
    return env


def node_argv(d: Deployment, rank: str, head: str, start_rank: str) -> list[str]:
    argv = sglang_argv(d, rank, head) if d.engine == "sglang" else vllm_argv(d, rank, head, start_rank)
    if bad := unknown_flags(d.engine, argv):
        raise UncheckedFlag(f"{d.engine} defines no {', '.join(bad)}")
    return argv


def launches(d: Deployment, net: Network = Network()) -> tuple[NodeLaunch, ...]:
    """One launch per node, the head (rank 0) first."""
    if d.engine == "mindie":
        return ()
    local = d.layout.dp // d.spec.nodes
    return tuple(NodeLaunch(r, tuple(node_argv(d, str(r), net.head, str(r * local))), tuple(environment(d, net, r)))
                 for r in range(d.spec.nodes))


def shell_script(launch: NodeLaunch) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in launch.env)
    return exports + launch.line


def docker_line(d: Deployment, launch: NodeLaunch) -> str:
    """``docker run`` on one node, with the engine's official image (host network: the nodes talk directly)."""
    env = [a for k, v in launch.env for a in ("-e", f"{k}={v}")]
    if d.engine == "vllm-ascend":
        devices = [a for i in range(d.spec.gpus_per_node) for a in ("--device", f"/dev/davinci{i}")]
        devices += ["--device", "/dev/davinci_manager", "--device", "/dev/devmm_svm", "--device", "/dev/hisi_hdc",
                    "-v", "/usr/local/dcmi:/usr/local/dcmi", "-v", "/usr/local/bin/npu-smi:/usr/local/bin/npu-smi",
                    "-v", "/usr/local/Ascend/driver/lib64/:/usr/local/Ascend/driver/lib64/",
                    "-v", "/usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info",
                    "-v", "/etc/ascend_install.info:/etc/ascend_install.info", "-v", "/root/.cache:/root/.cache"]
        run = ["docker", "run", "--rm", "--name", f"vllm-ascend-node{launch.rank}", "--net=host", "--shm-size=1g",
               *devices, *env, IMAGES[d.engine], *launch.argv]
        return with_key(shlex.join(run))
    devices = ["--device", "/dev/infiniband", "--ulimit", "memlock=-1"] if any(k == "NCCL_IB_HCA" for k, _ in launch.env) else []
    run = ["docker", "run", "--rm", "--name", f"{d.engine}-node{launch.rank}", "--gpus", "all", "--network", "host",
           "--ipc", "host", "--shm-size", "32g", *devices, "-v", "$HOME/.cache/huggingface:/root/.cache/huggingface",
           *env, IMAGES[d.engine]]
    # vllm/vllm-openai's entrypoint is 'vllm serve': the image takes the model and the flags
    argv = list(launch.argv[2:]) if d.engine == "vllm" else list(launch.argv)
    return with_key(shlex.join(run + argv).replace("'$HOME/.cache/huggingface:/root/.cache/huggingface'",
                                                   '"$HOME/.cache/huggingface:/root/.cache/huggingface"'))
