"""The planner on the catalog's real models: published anchors, plans for the named machines, ranking."""

from __future__ import annotations

import json

import pytest

from dslocal.catalog import load_catalog
from dslocal.hardware.presets import load_profile
from dslocal.hardware.profile import Cpu, HardwareProfile, Memory
from dslocal.planner.cluster import cluster_plan, parse_cluster
from dslocal.planner.facts import SHAPES, from_variant
from dslocal.planner.fit import plan
from dslocal.planner.memory import GIB, MIB, kv_bytes_per_token, kv_cache_bytes
from dslocal.planner.rank import recommend, way_out

CATALOG = load_catalog()


def facts(name: str):
    return from_variant(CATALOG.get(name))


def test_legacy_r1_kv_cache_anchor():
    """Ollama's log in ollama/ollama#8597: about 9.5 GiB of f16 KV for 2048 tokens of legacy R1."""
    f = facts("r1-671b-iq1s")
    assert f.layout == "legacy"
    assert kv_bytes_per_token(f) / MIB == pytest.approx(4.77, abs=0.01)
    assert kv_cache_bytes(f, 2048) / GIB == pytest.approx(9.5, abs=0.1)


def test_mla_cache_is_tiny():
    f = facts("r1-0528-iq1s")
    assert f.layout == "mla"
    assert kv_bytes_per_token(f) == 61 * (512 + 64) * 2  # K only: kv_lora_rank + rope, f16
    assert kv_bytes_per_token(f, "q8_0") < kv_bytes_per_token(f)


def test_unsloth_offload_table_is_reproduced_and_explained():
    """131 GB 1.58-bit: 7 layers on a 24 GB GPU and 33 on an 80 GB one by Unsloth's formula."""
    f = facts("r1-671b-iq1s")
    p24 = plan(f, load_profile("rtx4090-64gb"), ollama_version="0.5.7")
    p80 = plan(f, load_profile("a100-80gb-256gb"), ollama_version="0.5.7")
    assert (p24.unsloth_offload, p80.unsloth_offload) == (7, 33)
    assert abs((p80.gpu_layers - 1) - 33) <= 4, "the memory model lands near Unsloth's empirical figure"
    assert any("Unsloth's rule of thumb" in n and "KV cache" in n for n in p80.notes)


@pytest.mark.parametrize("hw", ["rtx4090-64gb", "2xh100-512gb", "cpu-only-32gb"])
def test_r1_q2_plans_are_plausible_and_explained(hw):
    p = plan(facts("r1-671b-q2"), load_profile(hw), variant="r1-671b-q2")
    assert p.variant == "r1-671b-q2" and p.notes
    assert p.num_gpu is None and "llama-server" in p.num_gpu_reason  # Ollama >= 0.30
    if hw == "2xh100-512gb":
        assert p.fits and p.placement == "partial"
        assert p.override_tensors and "ffn_.*_exps" in p.override_tensors
        assert 3 < p.decode_tokens_per_s < 40
        assert p.gpu_bytes <= 2 * 80 * GIB
    else:  # 227 GB of weights on 24 + 64 GB or 32 GB: only by streaming from disk
        assert not p.fits and p.placement == "mmap"
        assert p.decode_tokens_per_s < 1
        assert any("streams" in n for n in p.notes)


def test_old_ollama_counts_layers_and_refuses_when_ram_is_short():
    p = plan(facts("r1-671b-iq1s"), load_profile("rtx4090-64gb"), ollama_version="0.5.7")
    assert isinstance(p.num_gpu, int) and 0 < p.num_gpu <= 62 and p.total_layers == 62
    assert not p.fits and p.placement == "none"
    assert any("refuses" in n for n in p.notes)
    gpu = plan(facts("r1-671b-iq1s"), load_profile("2xh100-512gb"), ollama_version="0.6.0")
    assert gpu.placement == "gpu" and gpu.num_gpu == 62


def test_default_context_keeps_placement_and_speed_and_says_how_far_it_goes():
    """Newcomer trial A3 and C1: not the largest context memory allows, but one that costs nothing."""
    p = plan(facts("r1-distill-qwen-7b"), load_profile("2xh100-512gb"))
    assert p.num_ctx == 16384 and p.placement == "gpu"
    assert "up to 131072" in p.notes[0]
    capped = plan(facts("r1-distill-qwen-7b"), load_profile("2xh100-512gb"), ctx=10**6)
    assert capped.num_ctx == 131072 and any("capped" in n for n in capped.notes)
    tight = plan(facts("r1-distill-qwen-32b"), load_profile("rtx4090-64gb"))
    assert tight.placement == "gpu" and 4096 <= tight.num_ctx <= 16384
    longest = int(tight.notes[0].split("up to ")[1].split()[0]) if "up to" in tight.notes[0] else tight.num_ctx
    more = plan(facts("r1-distill-qwen-32b"), load_profile("rtx4090-64gb"), ctx=longest + 8192)
    assert more.placement == "partial", "a longer context than the note allows pushes layers off the GPU"
    # Legacy R1 on a 24 GB GPU: the old default (13056) was slower than 4096 on the same machine.
    r1 = plan(facts("r1-671b-iq1s"), load_profile("rtx4090-64gb"))
    at_4096 = plan(facts("r1-671b-iq1s"), load_profile("rtx4090-64gb"), ctx=4096)
    assert r1.decode_tokens_per_s >= at_4096.decode_tokens_per_s and r1.num_ctx in (4096, 8192, 16384)
    for key in ("r1-671b-iq1s", "r1-distill-qwen-7b", "r1-distill-llama-70b"):
        for preset in ("rtx4090-64gb", "rtx4090-128gb", "cpu-only-32gb", "mac-m2-ultra-192gb"):
            chosen = plan(facts(key), load_profile(preset))
            base = plan(facts(key), load_profile(preset), ctx=4096)
            if base.placement != "none":
                assert chosen.num_ctx in (4096, 8192, 16384), (key, preset, chosen.num_ctx)
                assert chosen.decode_tokens_per_s >= 0.95 * base.decode_tokens_per_s, (key, preset)


def test_a_small_machine_gets_a_context_below_4096_rather_than_nothing():
    """Newcomer trial B14: the planner never tried a context below 4096."""
    import dataclasses

    small = load_profile("cpu-only-32gb")
    for ram in range(1 << 30, 4 << 30, 64 << 20):
        tiny = dataclasses.replace(small, memory=dataclasses.replace(small.memory, available_bytes=ram))
        at_4096 = plan(facts("r1-distill-qwen-1.5b"), tiny, ctx=4096)
        if at_4096.placement == "none":
            chosen = plan(facts("r1-distill-qwen-1.5b"), tiny)
            if chosen.placement != "none":
                assert chosen.num_ctx < 4096
                return
    raise AssertionError("no memory size where 4096 fails and a shorter context runs")


def test_moe_decode_reads_only_active_experts():
    f = facts("r1-671b-q2")
    assert f.expert_count == 256 and f.expert_used == 8
    assert f.active_bytes < f.weight_bytes / 10


def test_catalog_shapes_cover_every_variant_and_estimates_add_up():
    for variant in CATALOG:
        if variant.needs:  # not runnable by mainline llama.cpp: no llama.cpp tensor layout to size it by
            continue
        assert variant.model in SHAPES, variant.id
        f = from_variant(variant)
        assert f.weight_bytes == pytest.approx(variant.size_bytes, rel=0.001)
        assert f.block_count == variant.block_count


def test_recommend_ranks_and_explains():
    ranked = recommend(CATALOG, load_profile("cpu-only-32gb"))
    assert ranked[0].usable and ranked[0].variant.family == "distill"
    assert all("tok/s" in r.reason or "does not fit" in r.reason or "does not run in mainline" in r.reason
               for r in ranked)
    gpu = recommend(CATALOG, load_profile("2xh100-512gb"))
    assert gpu[0].variant.params_b == 671 and "experts" in gpu[0].reason
    tiny = HardwareProfile(os="linux", arch="x86_64", cpu=Cpu(physical_cores=2, threads=2),
                           memory=Memory(total_bytes=2 * GIB, available_bytes=GIB), origin="test")
    nothing = recommend(CATALOG, tiny)
    assert not any(r.usable for r in nothing)
    advice = way_out(nothing, tiny)
    assert "DeepSeek API" in advice and "GiB more RAM" in advice


def test_cluster_plans():
    classic = cluster_plan(parse_cluster("2 nodes x 8 H20"))
    assert classic.fits and classic.tensor_parallel == 16
    assert len(classic.sglang) == 2 and "--node-rank 1" in classic.sglang[1] and "--nnodes 2" in classic.sglang[0]
    assert any("--pipeline-parallel-size 2" in c for c in classic.vllm)
    short = cluster_plan(parse_cluster("1x8xH100"))
    assert not short.fits and any("2 nodes" in n for n in short.notes)
    # Each original is sized from its own weights, not from R1's.
    from dslocal.catalog import load_catalog

    catalog = load_catalog()

    def verdict(name: str, spec: str) -> bool:
        v = catalog.get(name)
        return cluster_plan(parse_cluster(spec), model=v.hf_repo, weights_bytes=v.size_bytes, precision=v.quant).fits

    assert verdict("v4-flash-fp4", "1x8xH100"), "162 GB of FP4/FP8 fits one 8 x H100 node"
    assert not verdict("v4-pro-fp4", "1x8xH100") and verdict("v4-pro-fp4", "2x8xH200")
    assert not verdict("r1-671b-fp8", "1x8xH100") and verdict("r1-671b-fp8", "2x8xH20")
    pro = catalog.get("v4-pro-fp4")
    notes = cluster_plan(parse_cluster("1x8xH100"), weights_bytes=pro.size_bytes, precision=pro.quant).notes
    assert any("FP4+FP8 model (893 GB of weights) needs about" in n and "640 GB of GPU memory" in n for n in notes)
    assert any("2 nodes" in n for n in notes)
    from dslocal.errors import UsageError

    with pytest.raises(UsageError):
        parse_cluster("lots of GPUs")


def test_cli_plan_json_contract(cli, dslocal_home):
    result = cli("plan", "r1-671b-q2", "--hw", "cpu-only-32gb", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["version"] == 1 and doc["command"] == "plan"
    data = doc["data"]
    for key in ("variant", "fits", "placement", "num_gpu", "num_ctx", "gpu_bytes", "ram_bytes", "kv_cache_bytes",
                "decode_tokens_per_s"):
        assert key in data
    assert data["fits"] is False and data["alternatives"], "it does not fit, and says what does"
    human = cli("plan", "r1-671b-q2", "--hw", "rtx4090-64gb")
    assert human.returncode == 0 and "what fits instead" in human.stdout and "num_ctx" in human.stdout
    cluster = cli("plan", "r1-671b-fp8", "--cluster", "2 nodes x 8 H20", "--json")
    assert json.loads(cluster.stdout)["data"]["tensor_parallel"] == 16
    unknown = cli("plan", "r1-671b-q3")
    assert unknown.returncode == 5 and "did you mean" in unknown.stderr


def test_cli_plan_a_local_file_uses_its_header(cli, dslocal_home, make_gguf):
    shards = make_gguf("deepseek2-mla", "q8_0", shards=2)
    result = cli("plan", str(shards[1]), "--hw", "rtx4090-64gb", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert data["exact"] and data["placement"] == "gpu" and data["facts_source"] == "GGUF header"


def test_cli_list_show_recommend(cli, dslocal_home):
    listing = json.loads(cli("list", "--hw", "2xh100-512gb", "--json").stdout)["data"]["variants"]
    assert len(listing) == len(CATALOG.variants)
    assert {"id", "aliases", "size_bytes", "fits", "verdict"} <= set(listing[0])
    show = json.loads(cli("show", "r1-671b-q2", "--json").stdout)["data"]
    assert show["id"] == "r1-671b-ud-q2_k_xl" and show["hf_repo"] == "unsloth/DeepSeek-R1-GGUF"
    assert show["temperature"] == 0.6 and show["top_p"] == 0.95
    rec = json.loads(cli("recommend", "--hw", "cpu-only-32gb", "--json").stdout)["data"]
    assert rec["ranking"][0]["usable"] and rec["advice"] is None


def test_plan_uses_the_running_servers_version(cli, dslocal_home, tmp_path):
    from ollama_double import run_ollama

    with run_ollama(tmp_path / "store", "0.6.0") as ollama:
        env = {"OLLAMA_HOST": ollama.url.removeprefix("http://")}
        data = json.loads(cli("plan", "r1-671b-iq1s", "--hw", "2xh100-512gb", "--json", env=env).stdout)["data"]
    assert data["ollama_version"] == "0.6.0" and data["num_gpu"] == 62


def test_a_pinned_num_gpu_is_what_the_plan_places():
    """Newcomer trial A10: --num-gpu changed nothing but its own line."""
    f = facts("r1-671b-iq1s")
    free = plan(f, load_profile("2xrtx4090-256gb"), ctx=8192)
    none = plan(f, load_profile("2xrtx4090-256gb"), ctx=8192, num_gpu=0)
    some = plan(f, load_profile("2xrtx4090-256gb"), ctx=8192, num_gpu=10)
    assert (none.gpu_layers, none.num_gpu, none.gpu_bytes) == (0, 0, 0)
    assert some.gpu_layers == 10 and sum(g.layers for g in some.gpus) == 10
    assert free.gpu_layers == 62 and none.ram_bytes > some.ram_bytes > free.ram_bytes
    assert "-ngl 0 " in none.llama_cpp_args and "-ot" not in none.llama_cpp_args


def test_layers_are_split_across_gpus_by_their_memory():
    """Newcomer trial A12: everything was booked on GPU 0."""
    for key, ctx in (("r1-distill-llama-70b", 4096), ("r1-671b-iq1s", 8192)):
        p = plan(facts(key), load_profile("2xh100-512gb"), ctx=ctx)
        layers = [g.layers for g in p.gpus]
        assert len(layers) == 2 and abs(layers[0] - layers[1]) <= 1, (key, layers)
        # The budget leaves out the compute buffer, which GPU 0 holds.
        assert all(g.used_bytes - (p.compute_bytes if i == 0 else 0) <= g.budget_bytes
                   for i, g in enumerate(p.gpus)), (key, p.gpus)
