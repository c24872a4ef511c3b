"""A Kubernetes LeaderWorkerSet (sigs.k8s.io/lws) for a deployment: one group, the leader is node 0.

LWS gives every pod of a group ``LWS_LEADER_ADDRESS`` (the leader's address) and ``LWS_WORKER_INDEX``
(0 for the leader), which take the places of the head address and the node rank in each launch line.
"""

from __future__ import annotations

import shlex

import yaml

from dslocal.cluster.commands import API_KEY_ENV, IMAGES, Network, environment, node_argv, with_key
from dslocal.cluster.plan import Deployment

_HEAD, _RANK, _START = "LWSHEADADDRESS", "LWSWORKERINDEX", "LWSSTARTRANK"
GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu", "ascend": "huawei.com/Ascend910"}


def _shell(d: Deployment, leader: bool) -> str:
    local = d.layout.dp // d.spec.nodes
    argv = node_argv(d, "0" if leader else _RANK, _HEAD, "0" if leader else _START)
    line = with_key(shlex.join(argv), f"${{{API_KEY_ENV}}}")
    return (line.replace(_HEAD, "${LWS_LEADER_ADDRESS}").replace(_RANK, "${LWS_WORKER_INDEX}")
            .replace(_START, f"$((LWS_WORKER_INDEX * {local}))"))


def _template(d: Deployment, leader: bool, net: Network, vendor: str) -> dict:
    env = [{"name": k, "value": v} for k, v in environment(d, net, 0) if k != "HCCL_IF_IP"]
    if d.engine == "vllm-ascend":
        env.append({"name": "HCCL_IF_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    resource = {GPU_RESOURCE[vendor]: str(d.spec.gpus_per_node)}
    container = {"name": "leader" if leader else "worker", "image": IMAGES[d.engine],
                 "command": ["sh", "-c", _shell(d, leader)], "env": env,
                 "resources": {"limits": dict(resource), "requests": dict(resource)},
                 "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    if leader:  # the key comes from a Secret: kubectl create secret generic deepseek-api-key --from-literal=api-key=...
        env.append({"name": API_KEY_ENV, "valueFrom": {"secretKeyRef": {"name": "deepseek-api-key", "key": "api-key"}}})
        port = 30000 if d.engine == "sglang" else 8000
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 10}
    return {"spec": {"containers": [container],
                     "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}]}}


def leaderworkerset(d: Deployment, net: Network, vendor: str, name: str = "deepseek") -> str:
    doc = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": d.spec.nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _template(d, True, net, vendor),
                "workerTemplate": _template(d, False, net, vendor),
            },
        },
    }
    return yaml.safe_dump(doc, sort_keys=False, width=1000)
