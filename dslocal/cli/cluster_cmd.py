"""``dslocal cluster plan|check``: DeepSeek across nodes on SGLang, vLLM, vLLM-Ascend or MindIE."""

from __future__ import annotations

from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values
from dslocal.errors import DslocalError, NotFoundError, UsageError
from dslocal.units import format_bytes

ENGINE_NAMES = ("sglang", "vllm", "vllm-ascend", "mindie")


class _GpuName(click.ParamType):
    name = "GPU"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        from dslocal.cluster.gpus import GPUS

        if str(value).upper() not in GPUS:
            self.fail(f"dslocal does not know the {value} GPU (known: {', '.join(GPUS)})", param, ctx)
        return str(value).upper()


@click.group("cluster")
def cluster_group() -> None:
    """DeepSeek across nodes: plan it on SGLang/vLLM/vLLM-Ascend, launch each node, check it answers."""


def find_original(model: str):
    """The catalog's multi-node original named ``model``; a one-line error for anything else."""
    from dslocal.catalog import load_catalog

    catalog = load_catalog()
    originals = ", ".join(v.id for v in catalog if v.multi_node)
    variant = catalog.find(model)
    if variant is None:
        raise NotFoundError(f"no catalog variant is called {model!r}", f"multi-node originals: {originals}")
    if not variant.multi_node:
        raise UsageError(f"{variant.id} is not a multi-node original (plan it on one machine: dslocal plan {model})",
                         f"multi-node originals: {originals}")
    return variant


def deployment_data(d, net, with_rule: bool = False) -> dict[str, Any]:
    """The plan, its commands and forms, as data (``cluster plan`` and ``plan --cluster`` print the same)."""
    from dslocal.cluster.commands import docker_line, launches, shell_script
    from dslocal.cluster.flags import LISTS, source_line
    from dslocal.cluster.gpus import GPUS
    from dslocal.cluster.k8s import leaderworkerset
    from dslocal.cluster.mindie import mindie_config
    from dslocal.planner.cluster import memory_summary

    m, lay = d.memory, d.layout
    nodes = launches(d, net) if d.fits else ()
    data: dict[str, Any] = {
        "variant": d.variant.id, "model_path": d.model_path, "engine": d.engine, "precision": d.precision,
        "nodes": d.spec.nodes, "gpus_per_node": d.spec.gpus_per_node, "gpu": d.spec.gpu,
        "total_gpu_bytes": d.spec.total_bytes, "ctx": d.ctx, "concurrency": d.concurrency,
        "layout": {"name": lay.name, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "text": lay.describe()},
        "memory_per_gpu": {"capacity": m.capacity, "weights": m.weights, "kv_cache": m.kv_cache,
                           "reserved": m.reserved, "headroom": m.headroom},
        "kv_bytes_per_token": d.kv_bytes_per_token, "fits": d.fits, "shortfall_bytes": d.shortfall_bytes,
        "throughput": [f.__dict__ for f in d.figures],
        "commands": [{"rank": n.rank, "env": dict(n.env), "command": n.line, "script": shell_script(n),
                      "docker": docker_line(d, n)} for n in nodes],
        "kubernetes": leaderworkerset(d, net, GPUS[d.spec.gpu].vendor) if nodes else "",
        "mindie_config": mindie_config(d, net) if d.engine == "mindie" and d.fits else None,
        "flags_checked_against": source_line(d.engine) if d.engine in LISTS else None,
        "notes": ([memory_summary(d)] if with_rule else []) + list(d.notes), "advice": list(d.advice),
    }
    return data


def print_deployment(data: dict[str, Any]) -> None:
    mem = data["memory_per_gpu"]
    verdict = "fits" if data["fits"] else f"does not fit: short by {format_bytes(data['shortfall_bytes'])} in all"
    click.echo(f"{data['variant']} on {data['nodes']} x {data['gpus_per_node']} {data['gpu']} with {data['engine']}: "
               f"{verdict}")
    key_values([
        ("weights", f"{data['model_path']} ({data['precision']})"),
        ("layout", data["layout"]["text"]),
        ("context", f"{data['ctx']} tokens x {data['concurrency']} requests "
                    f"({format_bytes(data['kv_bytes_per_token'])} of KV cache per token)"),
        ("per GPU", f"weights {format_bytes(mem['weights'])} + KV cache {format_bytes(mem['kv_cache'])} + "
                    f"activations/graphs {format_bytes(mem['reserved'])} of {format_bytes(mem['capacity'])}"),
        ("headroom", f"{format_bytes(mem['headroom'])} per GPU" if mem["headroom"] >= 0
         else f"short by {format_bytes(-mem['headroom'])} per GPU"),
    ])
    if data["throughput"]:
        click.echo("published throughput (not this exact setup):")
        for f in data["throughput"]:
            value = f"{f['low']:.0f}" if f["low"] == f["high"] else f"{f['low']:.0f}-{f['high']:.0f}"
            click.echo(f"  {value} tok/s ({f['kind']}, per {f['scope']}) {f['engine']} {f['nodes']}x{f['gpus_per_node']} "
                       f"{f['gpu']}, {f['layout']}; {f['workload']} [{f['source']}]")
    for command in data["commands"]:
        click.echo(f"node {command['rank']}{' (head)' if command['rank'] == 0 else ''}:")
        click.echo("  " + command["script"].replace("\n", "\n  "))
        click.echo(f"  docker: {command['docker']}")
    if data["mindie_config"]:
        click.echo("MindIE (config.json, on every node):")
        click.echo("  " + data["mindie_config"].replace("\n", "\n  "))
    if data["commands"]:
        click.echo("key: the head listens on every interface, so it needs an API key: export DSLOCAL_CLUSTER_API_KEY "
                   "on the head node first (clients send it as a Bearer token; 'dslocal cluster check' reads it too)")
    if data["kubernetes"]:
        click.echo("kubernetes: 'dslocal cluster plan ... --k8s' prints a LeaderWorkerSet for kubectl apply -f - "
                   "(the key from a Secret: kubectl create secret generic deepseek-api-key --from-literal=api-key=...)")
    for line in data["notes"]:
        click.echo(f"note: {line}")
    for line in data["advice"]:
        click.echo(f"what would fit: {line}")


@cluster_group.command(
    "plan",
    epilog="""\b
MODEL is a multi-node original (dslocal list: placement multi-node), e.g. r1-671b-fp8,
v3.1-fp8, v3.2-fp8, v4-flash-fp4, v4-pro-fp4. Every generated flag is checked against the
engine's own argument list (dslocal/cluster/engine_flags/). Replace HEAD_NODE_IP, or pass
--head-ip, with the first node's address on the fast network.

\b
Examples:
  dslocal cluster plan r1-671b-fp8 --nodes 2 --gpus-per-node 8 --gpu H20
  dslocal cluster plan r1-671b-fp8 --nodes 2 --gpus-per-node 8 --gpu H20 --engine vllm --layout dp-ep
  dslocal cluster plan v4-pro-fp4 --nodes 2 --gpus-per-node 8 --gpu H200 --ctx 131072 --json
  dslocal cluster plan r1-671b-fp8 --nodes 2 --gpus-per-node 8 --gpu 910B      vLLM-Ascend, W8A8 weights
  dslocal cluster plan r1-671b-fp8 --nodes 2 --gpus-per-node 8 --gpu H20 --k8s | kubectl apply -f -
""",
)
@click.argument("model")
@click.option("--nodes", type=click.IntRange(1, 64), required=True, help="Number of nodes (1..64).")
@click.option("--gpus-per-node", type=click.IntRange(1, 16), required=True, help="GPUs per node (1..16).")
@click.option("--gpu", type=_GpuName(), required=True, help="The GPU kind: H20, H200, H100, H800, A100, B200, 910B...")
@click.option("--engine", type=click.Choice(ENGINE_NAMES), help="Default: SGLang on NVIDIA/AMD, vLLM-Ascend on Ascend.")
@click.option("--layout", type=click.Choice(["tp", "tp-pp", "dp-attention", "dp-ep"]),
              help="Parallel layout (default: the engine's documented one for this cluster).")
@click.option("--ctx", type=click.IntRange(min=256), help="Context length per request (default 32768).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Requests served at once, each at full context.")
@click.option("--head-ip", default="HEAD_NODE_IP", show_default=True, help="The first node's address.")
@click.option("--node-ip", "node_ips", multiple=True, help="Each node's own address, in rank order (Ascend's HCCL_IF_IP).")
@click.option("--ifname", default="eth0", show_default=True, help="The fast network's interface (NCCL/GLOO/HCCL).")
@click.option("--ib-hca", help="NCCL_IB_HCA, e.g. mlx5 (InfiniBand/RoCE devices).")
@click.option("--k8s", is_flag=True, help="Print only the Kubernetes LeaderWorkerSet YAML.")
@json_option
@click.pass_obj
def plan_cmd(app: AppContext, model: str, nodes: int, gpus_per_node: int, gpu: str, engine: str | None,
             layout: str | None, ctx: int | None, concurrency: int, head_ip: str, node_ips: tuple[str, ...],
             ifname: str, ib_hca: str | None, k8s: bool, as_json: bool) -> None:
    """Memory per GPU, layout, verdict, published speed and each node's exact launch command."""
    from dslocal.cluster.commands import Network
    from dslocal.cluster.plan import plan_deployment
    from dslocal.planner.cluster import spec_of

    variant = find_original(model)
    d = plan_deployment(variant, spec_of(nodes, gpus_per_node, gpu), engine, ctx, concurrency, layout)
    net = Network(head=head_ip, node_ips=node_ips, ifname=ifname, ib_hca=ib_hca)
    data = deployment_data(d, net)
    if k8s:
        if not data["kubernetes"]:
            raise UsageError(f"no LeaderWorkerSet: {data['variant']} does not fit this cluster"
                             if not d.fits else f"{d.engine} has no LeaderWorkerSet form here",
                             "see dslocal cluster plan without --k8s")
        click.echo(data["kubernetes"], nl=False)
        return
    emit("cluster plan", data, as_json=as_json, human=lambda: print_deployment(data))


@cluster_group.command(
    "check",
    epilog="""\b
URL is a node's HTTP address; the first is the head (where the API is served). SGLang's
worker nodes and vLLM's headless nodes serve no HTTP, so list the head, or one URL per
separate server. The key comes from --api-key or DSLOCAL_CLUSTER_API_KEY; it is never printed.

\b
Examples:
  dslocal cluster check http://10.0.0.1:30000 --model deepseek-ai/DeepSeek-R1 --ctx 32768
  DSLOCAL_CLUSTER_API_KEY=... dslocal cluster check http://10.0.0.1:8000 --json
""",
)
@click.argument("urls", nargs=-1, required=True)
@click.option("--model", help="The model name the servers must serve (default: whatever the head serves).")
@click.option("--ctx", type=click.IntRange(min=1), help="The context the servers must allow at least.")
@click.option("--api-key", envvar="DSLOCAL_CLUSTER_API_KEY", help="Bearer key of the servers (env DSLOCAL_CLUSTER_API_KEY).")
@json_option
@click.pass_obj
def check_cmd(app: AppContext, urls: tuple[str, ...], model: str | None, ctx: int | None, api_key: str | None,
              as_json: bool) -> None:
    """Each node's health and models, the model and context, and one reasoned reply through the head."""
    from dslocal.cluster.check import check_cluster

    from dslocal.cli.urls import http_url

    for url in urls:
        try:
            http_url(url, bare_host=False)
        except ValueError as exc:
            raise UsageError(str(exc), "write it like http://10.0.0.1:30000") from None
    report = check_cluster(list(urls), model, ctx, api_key)
    data = {
        "ok": report.ok,
        "nodes": [{"url": n.url, "reachable": n.reachable, "healthy": n.healthy,
                   "models": [{"id": i, "max_model_len": length} for i, length in n.models],
                   "problems": list(n.problems)} for n in report.nodes],
        "chat": None if report.chat is None else {"ok": report.chat.ok, "reasoning": report.chat.reasoning,
                                                  "content": report.chat.content},
        "problems": list(report.problems),
    }

    def human() -> None:
        for n in data["nodes"]:
            state = "healthy" if n["healthy"] else "answers, not healthy" if n["reachable"] else "no answer"
            served = ", ".join(f"{m['id']} ({m['max_model_len']} tokens)" for m in n["models"]) or "-"
            click.echo(f"{n['url']}: {state}; serves {served}")
        if data["chat"] is not None:
            chat = data["chat"]
            click.echo(f"chat through the head: {'reasoning and answer' if chat['ok'] else 'failed'}"
                       + (f": {chat['content'][:60]!r}" if chat["content"] else ""))
        for problem in data["problems"]:
            click.echo(f"problem: {problem}")
        click.echo("cluster: ok" if report.ok else "cluster: NOT ok")

    emit("cluster check", data, as_json=as_json, human=human)
    if not report.ok:  # one error line after the report, as every failing command ends (exit 1)
        problems = data["problems"]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DslocalError(f"the cluster check failed: {problems[0] if problems else 'see the report'}{more}",
                           "see the report above: each problem names what differs from the plan")


__all__ = ["cluster_group", "DslocalError"]
