"""Issue 20: each node's launch line as the engines document it, and every flag in the engines' own lists."""

from __future__ import annotations

import shlex

import pytest
import yaml

from dslocal.catalog import load_catalog
from dslocal.cluster.commands import KEY_TOKEN, Network, docker_line, launches, with_key
from dslocal.cluster.flags import known_flags, resolve, source_line, unknown_flags
from dslocal.cluster.gpus import ENGINES, GPUS
from dslocal.cluster.k8s import leaderworkerset
from dslocal.cluster.plan import LAYOUTS, plan_deployment
from dslocal.errors import UsageError
from dslocal.planner.cluster import spec_of

CATALOG = load_catalog()
R1 = CATALOG.get("r1-671b-fp8")

# SGLang's documented multi-node DeepSeek example, "Example: Serving with two H20*8 nodes":
# github.com/sgl-project/sglang benchmark/deepseek_v3/README.md
# (linked from docs.sglang.io basic_usage/deepseek_v3 "Running examples on Multi-node"), node 1 and node 2:
SGLANG_DOC = [
    "python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp 16 --dist-init-addr 10.0.0.1:5000 "
    "--nnodes 2 --node-rank 0 --trust-remote-code",
    "python -m sglang.launch_server --model-path deepseek-ai/DeepSeek-V3 --tp 16 --dist-init-addr 10.0.0.1:5000 "
    "--nnodes 2 --node-rank 1 --trust-remote-code",
]
# vLLM's documented multi-node DeepSeek example, data + expert parallel on two 8-GPU nodes
# (docs.vllm.ai serving/expert_parallel_deployment "Multi-Node Deployment", DeepSeek-V3-0324); the
# --all2all-backend and --api-server-count tuning flags of that page are left out of dslocal's line:
VLLM_DOC = [
    "vllm serve deepseek-ai/DeepSeek-V3-0324 --tensor-parallel-size 1 --enable-expert-parallel "
    "--data-parallel-size 16 --data-parallel-size-local 8 --data-parallel-address 192.168.1.100 "
    "--data-parallel-rpc-port 13345",
    "vllm serve deepseek-ai/DeepSeek-V3-0324 --tensor-parallel-size 1 --enable-expert-parallel "
    "--data-parallel-size 16 --data-parallel-size-local 8 --data-parallel-start-rank 8 "
    "--data-parallel-address 192.168.1.100 --data-parallel-rpc-port 13345 --headless",
]


def options(argv: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs (None for a switch) of a command line."""
    out, i = {}, 0
    while i < len(argv):
        if argv[i].startswith("--"):
            takes = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[argv[i]] = argv[i + 1] if takes else None
            i += 2 if takes else 1
        else:
            i += 1
    return out


def h20_pair(engine: str, layout: str | None = None, head: str = "10.0.0.1"):
    d = plan_deployment(R1, spec_of(2, 8, "H20"), engine, layout=layout)
    assert d.fits
    return d, launches(d, Network(head=head))


def test_the_handbook_case_on_sglang_is_the_documented_two_h20_example():
    _, nodes = h20_pair("sglang")
    assert len(nodes) == 2
    for node, doc in zip(nodes, SGLANG_DOC):
        ours, theirs = list(node.argv), shlex.split(doc)
        # the same arguments in the same order, R1 for V3; python3 for python; then the plan's own settings
        assert ours[1:13] == [t.replace("DeepSeek-V3", "DeepSeek-R1") for t in theirs[1:13]], node.line
        extra = options(ours[13:])
        assert extra["--context-length"] == "32768" and extra["--reasoning-parser"] == "deepseek-r1"
    assert options(list(nodes[0].argv))["--port"] == "30000" and "--port" not in nodes[1].argv  # HTTP on the head only


def test_the_handbook_case_on_vllm_matches_the_documented_dp_ep_example():
    _, nodes = h20_pair("vllm", "dp-ep", head="192.168.1.100")
    for node, doc in zip(nodes, VLLM_DOC):
        ours, theirs = options(list(node.argv)), options(shlex.split(doc))
        assert {k: ours.get(k, "missing") for k in theirs} == theirs, node.line
        assert node.argv[:3] == ("vllm", "serve", "deepseek-ai/DeepSeek-R1")
    assert "--data-parallel-start-rank" not in nodes[0].argv, "a start rank on the head turns on hybrid load balancing"


def test_the_handbook_case_on_vllm_tensor_times_pipeline():
    d, nodes = h20_pair("vllm")
    assert (d.layout.tp, d.layout.pp) == (8, 2)
    head, worker = (options(list(n.argv)) for n in nodes)
    for rank, opts in enumerate((head, worker)):
        assert opts["--tensor-parallel-size"] == "8" and opts["--pipeline-parallel-size"] == "2"
        assert (opts["--nnodes"], opts["--node-rank"], opts["--master-addr"]) == ("2", str(rank), "10.0.0.1")
    assert "--headless" in worker and "--headless" not in head and head["--max-model-len"] == "32768"


def every_deployment():
    for variant in (v for v in CATALOG if v.multi_node):
        for gpu in GPUS.values():
            for engine in ENGINES[gpu.vendor]:
                for layout in LAYOUTS[engine]:
                    for nodes in (1, 2, 4):
                        try:
                            d = plan_deployment(variant, spec_of(nodes, 8, gpu.name), engine, layout=layout, advise=False)
                        except UsageError:
                            continue
                        yield d


def test_every_generated_flag_is_in_the_engines_own_list():
    seen = 0
    for d in every_deployment():
        if d.engine == "mindie":
            continue
        net = Network(ib_hca="mlx5")
        for node in launches(d, net):
            assert unknown_flags(d.engine, node.argv) == [], node.line
            seen += 1
        manifest = yaml.safe_load(leaderworkerset(d, net, GPUS[d.spec.gpu].vendor))
        for role in ("leaderTemplate", "workerTemplate"):
            line = manifest["spec"]["leaderWorkerTemplate"][role]["spec"]["containers"][0]["command"][2]
            assert unknown_flags(d.engine, shlex.split(line)) == [], line
    assert seen > 200


def test_the_flag_check_can_fail():
    assert unknown_flags("vllm", ["vllm", "serve", "m", "--tensor-parallel", "8", "--tp", "8"]) == ["--tensor-parallel", "--tp"]
    assert unknown_flags("sglang", ["--tp", "16", "--tensor-parallel-sz", "2", "--enable-dp"]) == ["--tensor-parallel-sz",
                                                                                                   "--enable-dp"]
    assert resolve("sglang", "--tp") == "--tp-size", "SGLang's parser takes --tp as the one flag it begins"
    assert "--dist-init-addr" in known_flags("sglang") and "--data-parallel-address" in known_flags("vllm")


def test_the_lists_name_the_version_they_came_from():
    assert source_line("sglang").startswith("sglang 0.5.23: ")
    assert source_line("vllm").startswith("vllm 0.33.0: ") and source_line("vllm-ascend") == source_line("vllm")
    assert len(known_flags("sglang")) > 400 and len(known_flags("vllm")) > 300


def test_docker_forms_use_the_official_images():
    d, nodes = h20_pair("sglang")
    line = docker_line(d, nodes[1])
    assert "lmsysorg/sglang:" in line and "--network host" in line and line.endswith(nodes[1].line)
    v, vnodes = h20_pair("vllm")
    vline = docker_line(v, vnodes[0])
    assert "vllm/vllm-openai:" in vline and "vllm serve" not in vline, "the image's entrypoint is 'vllm serve'"
    assert vline.endswith(with_key(shlex.join(vnodes[0].argv[2:])))
    a = plan_deployment(R1, spec_of(2, 8, "910B"))
    anodes = launches(a, Network(node_ips=("10.1.0.1", "10.1.0.2")))
    aline = docker_line(a, anodes[1])
    assert "quay.io/ascend/vllm-ascend:" in aline and "/dev/davinci7" in aline and "HCCL_IF_IP=10.1.0.2" in aline


def test_environment_per_vendor():
    _, nodes = h20_pair("sglang")
    env = dict(nodes[0].env)
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
    a = plan_deployment(R1, spec_of(2, 8, "910B"))
    aenv = dict(launches(a, Network(ifname="enp189s0f0"))[1].env)
    assert aenv["HCCL_SOCKET_IFNAME"] == aenv["GLOO_SOCKET_IFNAME"] == aenv["TP_SOCKET_IFNAME"] == "enp189s0f0"
    assert aenv["HCCL_IF_IP"] == "NODE1_IP"


def test_the_leaderworkerset():
    d, _ = h20_pair("sglang")
    doc = yaml.safe_load(leaderworkerset(d, Network(), "nvidia"))
    assert doc["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and doc["kind"] == "LeaderWorkerSet"
    group = doc["spec"]["leaderWorkerTemplate"]
    assert group["size"] == 2
    leader = group["leaderTemplate"]["spec"]["containers"][0]
    worker = group["workerTemplate"]["spec"]["containers"][0]
    assert leader["resources"]["limits"] == {"nvidia.com/gpu": "8"} and leader["image"].startswith("lmsysorg/sglang")
    assert "--dist-init-addr ${LWS_LEADER_ADDRESS}:5000" in worker["command"][2]
    assert "--node-rank ${LWS_WORKER_INDEX}" in worker["command"][2] and "--node-rank 0" in leader["command"][2]
    v = plan_deployment(R1, spec_of(4, 8, "H20"), "vllm", layout="dp-ep")
    vworker = yaml.safe_load(leaderworkerset(v, Network(), "nvidia"))["spec"]["leaderWorkerTemplate"]["workerTemplate"]
    assert "--data-parallel-start-rank $((LWS_WORKER_INDEX * 8))" in vworker["spec"]["containers"][0]["command"][2]


def test_the_head_listens_beyond_loopback_only_with_a_key_from_the_environment():
    """Security: the head binds 0.0.0.0, so every form of its launch needs the key, read from
    DSLOCAL_CLUSTER_API_KEY (what 'dslocal cluster check' sends), never written as a literal."""
    for engine in ("sglang", "vllm"):
        d, nodes = h20_pair(engine)
        head, worker = nodes[0], nodes[1]
        assert '--host 0.0.0.0' in head.line and '--api-key "$DSLOCAL_CLUSTER_API_KEY"' in head.line, engine
        assert "--api-key" not in worker.line, "workers serve no HTTP"
        assert '--api-key "$DSLOCAL_CLUSTER_API_KEY"' in docker_line(d, head)
        assert KEY_TOKEN not in head.line + docker_line(d, head)
        lws = yaml.safe_load(leaderworkerset(d, Network(), "nvidia"))
        leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
        assert "--api-key ${DSLOCAL_CLUSTER_API_KEY}" in leader["command"][-1]
        secret = next(e for e in leader["env"] if e["name"] == "DSLOCAL_CLUSTER_API_KEY")
        assert secret["valueFrom"]["secretKeyRef"] == {"name": "deepseek-api-key", "key": "api-key"}
