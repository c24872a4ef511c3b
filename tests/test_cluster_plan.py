"""Issue 20: memory per GPU, layout, verdict, what would fit, published throughput; nonsense refused in one line."""

from __future__ import annotations

import json
import tomllib
from importlib import resources

import pytest
from test_cli_boundary import assert_one_line_error, invoke

from dslocal.catalog import load_catalog
from dslocal.cluster.plan import plan_deployment
from dslocal.errors import ExitCode, UsageError
from dslocal.planner.cluster import spec_of

CATALOG = load_catalog()
R1, PRO, FLASH = CATALOG.get("r1-671b-fp8"), CATALOG.get("v4-pro-fp4"), CATALOG.get("v4-flash-fp4")


def test_the_handbook_case_fits_with_its_memory_per_gpu():
    d = plan_deployment(R1, spec_of(2, 8, "H20"), ctx=32768, concurrency=8)
    assert d.fits and d.engine == "sglang" and d.layout.tp == 16 and d.precision == "FP8"
    assert d.kv_bytes_per_token == 576 * 61 * 2, "MLA latent (512 + 64 rope) x 61 layers, BF16"
    m = d.memory
    assert m.weights == pytest.approx(689e9 / 16, rel=0.01)  # TP 16 shards every weight
    assert m.kv_cache == 576 * 61 * 2 * 32768 * 8, "the latent cache is whole on every TP rank"
    assert 10 * 2**30 <= m.reserved <= 20 * 2**30 and m.headroom > 0
    longer = plan_deployment(R1, spec_of(2, 8, "H20"), ctx=131072, concurrency=8)
    assert not longer.fits and longer.shortfall_bytes > 0, "4x the context is 4x the KV cache: no longer fits"
    assert any("shorter context" in a for a in longer.advice)


def test_kv_per_token_follows_each_architecture():
    v32 = plan_deployment(CATALOG.get("v3.2-fp8"), spec_of(2, 8, "H20"))
    assert v32.kv_bytes_per_token == (576 + 128) * 61 * 2, "MLA latent + the lightning indexer's key"
    pro = plan_deployment(PRO, spec_of(2, 8, "H200"))
    assert 0 < pro.kv_bytes_per_token < v32.kv_bytes_per_token / 5, "V4's compressed caches"


def test_v4_pro_fits_two_h200_nodes_and_not_one_h100_node():
    two = plan_deployment(PRO, spec_of(2, 8, "H200"))
    assert two.fits and two.precision == "FP4+FP8" and two.memory.weights == pytest.approx(893e9 / 16, rel=0.01)
    one = plan_deployment(PRO, spec_of(1, 8, "H100"))
    assert not one.fits and one.shortfall_bytes > 8 * 30e9, "893 GB of weights cannot sit in 640 GB"
    assert one.advice[0].startswith("2 nodes x 8 H100"), one.advice
    assert any("v4-flash-fp4" in a for a in one.advice), "the smaller model that fits"
    assert any("GGUF" in a for a in one.advice)


def test_layouts_and_their_limits():
    tp_pp = plan_deployment(R1, spec_of(3, 8, "H20"), "sglang")
    assert (tp_pp.layout.name, tp_pp.layout.tp, tp_pp.layout.pp) == ("tp-pp", 8, 3), "TP 24 does not divide 128 heads"
    dp = plan_deployment(R1, spec_of(2, 8, "H20"), "sglang", layout="dp-attention")
    assert (dp.layout.dp, dp.layout.ep) == (16, 16)
    assert dp.memory.kv_cache < plan_deployment(R1, spec_of(2, 8, "H20"), "sglang").memory.kv_cache
    with pytest.raises(UsageError, match="does not divide"):
        plan_deployment(R1, spec_of(1, 6, "H20"), "sglang")


def test_ascend_gets_the_w8a8_weights_and_its_engines():
    d = plan_deployment(R1, spec_of(2, 8, "910B"))
    assert d.engine == "vllm-ascend" and d.model_path == "vllm-ascend/DeepSeek-R1-W8A8" and d.precision.startswith("W8A8")
    assert (d.layout.tp, d.layout.dp) == (4, 4) and d.fits, "vLLM-Ascend's tutorial: DP4 x TP4 on 2 Atlas 800 A2"
    assert any("ModelScope" in n for n in d.notes)
    mindie = plan_deployment(R1, spec_of(2, 8, "910B"), "mindie", ctx=8192)
    assert mindie.fits and any("config.json" in n for n in mindie.notes)
    with pytest.raises(UsageError, match="no Ascend"):
        plan_deployment(CATALOG.get("v3.2-speciale-fp8"), spec_of(2, 8, "910B"))
    with pytest.raises(UsageError, match="does not run on 910B"):
        plan_deployment(R1, spec_of(2, 8, "910B"), "sglang")
    with pytest.raises(UsageError, match="does not run on H20"):
        plan_deployment(R1, spec_of(2, 8, "H20"), "mindie")


def test_throughput_figures_are_cited():
    figures = tomllib.loads(resources.files("dslocal.cluster").joinpath("throughput.toml").read_text())["figure"]
    assert figures and all(f["source"].startswith("https://") and f["low"] <= f["high"] for f in figures)
    d = plan_deployment(R1, spec_of(2, 8, "H20"))
    assert d.figures[0].source == "https://github.com/sgl-project/sglang/issues/3956"
    none = plan_deployment(PRO, spec_of(2, 8, "H200"))
    assert not none.figures and any("no published throughput" in n for n in none.notes)


def test_cluster_plan_cli_json(cli, dslocal_home):
    out = cli("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "h20", "--json",
              "--head-ip", "10.0.0.1")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    data = doc["data"]
    assert doc["command"] == "cluster plan" and data["fits"] and data["layout"]["tp"] == 16
    assert [c["rank"] for c in data["commands"]] == [0, 1] and "--node-rank 1" in data["commands"][1]["command"]
    assert data["kubernetes"].startswith("apiVersion: leaderworkerset.x-k8s.io/v1")
    assert data["flags_checked_against"].startswith("sglang 0.5.23")
    k8s = cli("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H20", "--k8s")
    assert k8s.returncode == 0 and k8s.stdout.startswith("apiVersion:")
    human = cli("cluster", "plan", "v4-pro-fp4", "--nodes", "1", "--gpus-per-node", "8", "--gpu", "H100")
    assert human.returncode == 0 and "does not fit: short by" in human.stdout and "what would fit: 2 nodes" in human.stdout
    assert "node 0" not in human.stdout, "no launch commands for a cluster that cannot hold it"


def test_plan_cluster_is_the_short_form(cli, dslocal_home):
    short = json.loads(cli("plan", "r1-671b-fp8", "--cluster", "2x8xH20", "--json").stdout)["data"]
    long = json.loads(cli("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H20",
                          "--json").stdout)["data"]
    assert short["commands"] == long["commands"] and short["memory_per_gpu"] == long["memory_per_gpu"]
    assert short["sglang"] == [c["command"] for c in long["commands"]] and len(short["vllm"]) == 2


@pytest.mark.parametrize("args, needle", [
    (("plan", "r1-671b-fp8", "--cluster", "0 nodes x 8 H20"), "0 nodes is out of range 1..64"),
    (("plan", "r1-671b-fp8", "--cluster", "2 nodes x 8 H999"), "does not know the H999 GPU"),
    (("plan", "r1-distill-qwen-7b", "--cluster", "2x8xH20"), "is not one"),
    (("cluster", "plan", "r1-distill-qwen-7b", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H20"),
     "is not a multi-node original"),
    (("cluster", "plan", "r1-671b-fp8", "--nodes", "0", "--gpus-per-node", "8", "--gpu", "H20"), "--nodes"),
    (("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H999"), "H999"),
    (("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "910B", "--engine", "sglang"),
     "sglang does not run on 910B"),
    (("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H20", "--ctx", "999999"),
     "outside"),
    (("cluster", "plan", "r1-671b-fp8", "--nodes", "2", "--gpus-per-node", "8", "--gpu", "H20", "--engine", "vllm",
      "--layout", "dp-attention"), "no 'dp-attention' layout"),
])
def test_nonsense_is_refused_in_one_line(dslocal_home, args, needle):
    assert_one_line_error(invoke(*args), ExitCode.USAGE, needle)
