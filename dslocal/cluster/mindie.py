"""MindIE Service on Ascend: configured by its config.json and a rank table, not by flags.

Facts from MindIE's documentation (hiascend.com/document/detail/zh/mindie/10RC3/envdeployment/instg/
mindie_instg_0027.html, 多机推理): multi-node inference is switched on by ``multiNodesInferEnabled``;
each node exports ``MIES_CONTAINER_IP`` (in a container), ``RANKTABLEFILE`` (the rank table's path) and
``MIES_CONFIG_JSON_PATH``; ``worldSize`` is every NPU of the deployment. The service starts with
``mindie-service/bin/mindieservice_daemon``. These keys are not checked against MindIE's source (it is
not public); the plan says so.
"""

from __future__ import annotations

import json

from dslocal.cluster.commands import Network
from dslocal.cluster.plan import Deployment

START = "cd /usr/local/Ascend/mindie/latest/mindie-service && ./bin/mindieservice_daemon"


def mindie_config(d: Deployment, net: Network) -> str:
    """The config.json keys a multi-node deployment sets (merge them into the installed config.json)."""
    config = {
        "BackendConfig": {
            "multiNodesInferEnabled": d.spec.nodes > 1,
            "npuDeviceIds": [list(range(d.spec.gpus_per_node))],
            "ModelDeployConfig": {
                "maxSeqLen": d.ctx,
                "ModelConfig": [{"modelName": d.model_path.rsplit("/", 1)[-1], "modelWeightPath": f"/data/{d.model_path}",
                                 "worldSize": d.spec.world}],
            },
            "ScheduleConfig": {"maxBatchSize": d.concurrency},
        },
    }
    return json.dumps(config, indent=2)


def mindie_env(rank: int, net: Network) -> list[tuple[str, str]]:
    own = net.node_ips[rank] if rank < len(net.node_ips) else (net.head if rank == 0 else f"NODE{rank}_IP")
    return [("MIES_CONTAINER_IP", own), ("RANKTABLEFILE", "/data/rank_table.json"),
            ("MIES_CONFIG_JSON_PATH", "/usr/local/Ascend/mindie/latest/mindie-service/conf/config.json")]
