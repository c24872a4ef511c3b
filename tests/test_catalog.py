"""The packaged catalog is consistent, and catalog ids work wherever a model is named."""

from __future__ import annotations

import json
import re
import sys

import pytest
from hubdouble import run_hub

from dslocal.catalog import load_catalog
from dslocal.errors import NotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from dslocal.resources import read_data

CATALOG = load_catalog()


def test_names_are_unique_and_required_variants_exist():
    names = [n for v in CATALOG for n in (v.id, *v.aliases)]
    assert len(names) == len(set(names))
    for alias in ("r1-671b-q2", "r1-671b-iq1s", "r1-distill-qwen-7b", "r1-0528-tq1", "v3-0324-q2", "r1-671b-fp8",
                  "v3.1-q2", "v3.1-terminus-q4", "v4-flash-q2", "v4-flash-q8", "v4-flash-0731-q8",
                  "v3.1-fp8", "v3.2-fp8", "v3.2-exp-fp8", "v3.2-speciale-fp8", "v4-flash-fp4"):
        assert CATALOG.find(alias) is not None, alias
    q2 = CATALOG.get("r1-671b-q2")
    assert q2.quant == "UD-Q2_K_XL" and q2.shard_count == 5 and q2.paths[0].startswith("DeepSeek-R1-UD-Q2_K_XL/")
    assert CATALOG.get("r1-0528-tq1").shard_count == 1
    assert CATALOG.get("v3-0324-q2").temperature == 0.3
    assert CATALOG.get("r1-671b-fp8").multi_node


def test_every_variant_has_a_modelfile_family_and_sane_facts():
    families = tomllib.loads(read_data("modelfiles", "families.toml"))
    for v in CATALOG:
        assert v.template in families, v.id
        assert v.size_bytes > 0 and v.block_count > 0 and v.context_length >= 4096
        assert v.architecture in ("deepseek2", "qwen2", "llama", "qwen3", "deepseek32", "deepseek4") or v.needs, v.id
        assert all("/" not in name for name in v.files)
        assert 1 <= v.quality_tier <= 5


def test_unknown_names_suggest_close_ones():
    with pytest.raises(NotFoundError) as info:
        CATALOG.get("r1-671b-q22")
    assert "r1-671b-q2" in info.value.hint


def test_download_by_catalog_id_fetches_exactly_its_files(cli, dslocal_home, tmp_path):
    variant = CATALOG.get("r1-distill-qwen-1.5b")
    repo = tmp_path / "hub" / variant.hf_repo
    repo.mkdir(parents=True)
    for name in ("DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf", "DeepSeek-R1-Distill-Qwen-1.5B-Q8_0.gguf"):
        (repo / name).write_bytes(name.encode() * 1000)
    assert variant.files == ("DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf",)
    with run_hub(tmp_path / "hub") as hub:
        result = cli("download", "r1-distill-qwen-1.5b", "--source", hub.url, "--dir", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["data"]["files"]
    assert [f["path"] for f in files] == list(variant.files)
    refused = cli("download", "r1-671b-fp8")
    assert refused.returncode == 2 and "--cluster" in refused.stderr


def test_plan_exact_reads_the_real_headers_and_checks_the_catalog(cli, dslocal_home, tmp_path):
    from dslocal.testing.ggufgen import ModelSpec, write_model

    variant = CATALOG.get("r1-671b-iq1s")
    folder = tmp_path / "hub" / variant.hf_repo / variant.hf_folder
    folder.mkdir(parents=True)
    written = write_model(folder / "DeepSeek-R1-UD-IQ1_S.gguf", ModelSpec.deepseek2("legacy"), dtype="q8_0", shards=3)
    assert [p.name for p in written] == list(variant.files)
    with run_hub(tmp_path / "hub") as hub:
        env = {"DSLOCAL_HF_ENDPOINT": hub.url}
        result = cli("plan", "r1-671b-iq1s", "--exact", "--hw", "rtx4090-64gb", "--json", env=env)
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)["data"]
        assert data["exact"] and data["facts_source"] == "GGUF header"
        assert any("the catalog says" in n for n in data["notes"])
        sent = hub.stats.body_bytes
        assert sent > 0
        again = cli("plan", "r1-671b-iq1s", "--exact", "--json", "--hw", "rtx4090-64gb", env=env)
        assert json.loads(again.stdout)["data"]["exact"]
        assert hub.stats.body_bytes == sent, "the second plan reads the headers from the ETag cache"


def test_ollama_library_names_point_at_the_catalog():
    """Newcomer trial B8: 'deepseek-r1:7b' got no suggestion."""
    import pytest

    from dslocal.catalog.catalog import OLLAMA_LIBRARY
    from dslocal.errors import NotFoundError

    catalog = load_catalog()
    assert all(catalog.find(v) is not None for v in OLLAMA_LIBRARY.values())
    with pytest.raises(NotFoundError) as info:
        catalog.get("deepseek-r1:7b")
    assert "Ollama's library name" in info.value.message and "r1-distill-qwen-7b" in info.value.hint
    with pytest.raises(NotFoundError) as info:
        catalog.get("deepseek-v4-flash:latest")
    assert "v4-flash-0731-q8" in info.value.hint


_SUM = re.compile(r"(\d+(?:\.\d+)?(?:\+\d+(?:\.\d+)?)+)\s*(GiB|GB|B)\b")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


def test_sizes_match_their_shard_lists():
    """Where size_source lists the shards' sizes, they add up to size_bytes and there is one per file."""
    checked = 0
    for v in CATALOG:
        stated = re.search(r"in (\d+) shards", v.size_source)
        if stated and v.files:
            assert int(stated[1]) == len(v.files), v.id
        numbers = [n for n in (int(m[2]) for m in (_SHARD.search(f) for f in v.files) if m)]
        if len(v.files) > 1:
            assert numbers == [len(v.files)] * len(v.files), v.id
            assert [int(_SHARD.search(f)[1]) for f in v.files] == list(range(1, len(v.files) + 1)), v.id
        match = _SUM.search(v.size_source)
        if match is None:
            continue
        terms = [float(x) for x in match[1].split("+")]
        if "not shown" in v.size_source:  # a partial listing: the shards seen are a lower bound
            assert sum(terms) * 1e9 < v.size_bytes, v.id
            continue
        if match[2] == "B":
            assert sum(terms) == v.size_bytes, v.id
        elif match[2] == "GiB":  # rounded to 0.1 GiB each
            assert abs(sum(terms) * 2**30 - v.size_bytes) <= 0.05 * 2**30 * len(terms), v.id
        else:
            assert abs(sum(terms) * 1e9 - v.size_bytes) <= 0.05e9 * len(terms), v.id
        if v.files:
            assert len(terms) == len(v.files), v.id
        checked += 1
    assert checked >= 8, "the sums in size_source were checked"


def test_estimates_and_unconfirmed_facts_are_flagged():
    fields = set(CATALOG.variants[0].as_dict())
    for v in CATALOG:
        assert set(v.unverified) <= fields, (v.id, set(v.unverified) - fields)
        assert v.size_source.startswith(("exact", "approx")), v.id
        if v.size_exact:
            assert "size_bytes" not in v.unverified, v.id
        text = f"{v.size_source} {v.notes}".lower()
        if "estimat" in v.size_source.lower() or "unconfirmed" in text:
            assert v.size_source.startswith("approx") and "size_bytes" in v.unverified, v.id
        if "assumed" in text:
            assert v.unverified, v.id
    # What the December 2026 field refresh could not confirm.
    assert "size_bytes" in CATALOG.get("v3.1-terminus-q4").unverified
    for name in ("v3.2-fp8", "v3.2-exp-fp8", "v3.2-speciale-fp8"):
        assert {"temperature", "top_p", "size_bytes"} <= set(CATALOG.get(name).unverified), name
    for name in ("v4-flash-q3", "v3.1-tq1"):
        assert "quant" in CATALOG.get(name).unverified, name
    assert {"size_bytes", "hf_folder"} <= set(CATALOG.get("v4-flash-q4").unverified), "derived from Q8's size"


def test_a_download_never_means_a_whole_repository():
    """A variant without file names names its folder: download fetches FOLDER/*.gguf, not the repo."""
    for v in CATALOG:
        if v.multi_node or v.needs:
            continue
        globs = v.include_globs()
        assert globs and all(g.endswith(".gguf") for g in globs), v.id
    assert CATALOG.get("v3.1-q5").include_globs() == ("UD-Q5_K_XL/*.gguf",)
    # Names only inferred from a sibling quant are listed, but the hub's listing decides what is fetched.
    inferred = CATALOG.get("v4-pro-q8")
    assert "files" in inferred.unverified and inferred.shard_count == 20
    assert inferred.include_globs() == ("UD-Q8_K_XL/*.gguf",) and inferred.known_paths == ()
    assert CATALOG.get("v4-flash-q2").include_globs() == tuple(
        f"UD-Q2_K_XL/DeepSeek-V4-Flash-UD-Q2_K_XL-0000{i}-of-00003.gguf" for i in (1, 2, 3))


def test_new_generations_carry_their_sampling_template_and_runtime_notes():
    """V3.1: 0.6/0.95 and the hybrid-thinking TEMPLATE; V3.2: 1.0/0.95, V4: 1.0/1.0, both the GGUF's jinja."""
    expected = {"DeepSeek-V3.1": ("deepseek-v3.1", 0.6, 0.95), "DeepSeek-V3.2": ("deepseek-v3.2", 1.0, 0.95),
                "DeepSeek-V4-Flash": ("deepseek-v4", 1.0, 1.0), "DeepSeek-V4-Pro-0813": ("deepseek-v4", 1.0, 0.95)}
    seen = set()
    for v in CATALOG:
        for prefix, (template, temperature, top_p) in expected.items():
            if v.model == prefix or v.model.startswith(prefix + "-"):
                assert (v.template, v.temperature, v.top_p) == (template, temperature, top_p), v.id
                seen.add(prefix)
        if v.architecture == "deepseek4":
            assert v.context_length == 1048576
            if not v.multi_node:
                assert "Ollama >= 0.31.0" in v.notes, v.id  # llama.cpp b9840, the deepseek4 merge
                assert v.hf_repo.startswith("unsloth/"), v.id
        if v.architecture == "deepseek32" and not v.multi_node:  # whether the GGUF keeps the indexer: not seen
            assert "architecture" in v.unverified and v.hf_repo == "unsloth/DeepSeek-V3.2-GGUF", v.id
    assert seen == set(expected)
    assert "cloud-only" in CATALOG.get("v4-flash-q2").notes
    assert all(CATALOG.get(n).multi_node for n in ("v3.1-fp8", "v3.1-terminus-fp8", "v4-flash-fp4"))
    assert CATALOG.get("v3.1-q2").shard_count == 6 and "6 files" in CATALOG.get("v3.1-q2").size_source
    assert "top_p" in CATALOG.get("v4-pro-q4").unverified, "0.95 is the card's advice as a tracker reports it"


def test_v4_pro_is_sized_from_its_own_shapes():
    """V4-Pro's config (61 x 7168, 384 experts of 3072, 6 active) gives its published 1.6T / 49B."""
    from dslocal.planner.facts import from_variant

    facts = from_variant(CATALOG.get("v4-pro-q4"))
    assert facts.block_count == 61 and facts.expert_count == 384 and facts.expert_used == 6
    assert facts.layout == "dsv4" and len(facts.compress_ratios) == 61
    from dslocal.gguf_tools.arch import ModelSpec, tensor_plan
    from dslocal.planner.facts import SHAPES

    fields, n_vocab = SHAPES["DeepSeek-V4-Pro-0813"]
    plans = tensor_plan(ModelSpec(**{**fields, "layout": "mla"}), n_vocab)
    total = sum(p.n_elements for p in plans)
    experts = sum(p.n_elements for p in plans if "_exps." in p.name)
    active = total - experts + experts * 6 / 384
    assert abs(total / 1.6e12 - 1) < 0.03, total
    assert abs(active / 49e9 - 1) < 0.05, active
    # read per token: the active share of the 850 GB file, about 26 GB
    assert 0.025 < facts.active_bytes / facts.weight_bytes < 0.04


def test_a_model_that_needs_a_fork_says_so_everywhere(cli, dslocal_home):
    """V4.1-Flash (deepseek41) is not in mainline llama.cpp or Ollama: listed, never planned or pulled."""
    v41 = CATALOG.get("v4.1-flash")
    assert v41.architecture == "deepseek41" and "ik_llama.cpp" in v41.needs and "cloud" in v41.needs
    env = {"OLLAMA_HOST": "127.0.0.1:9"}
    rows = {r["id"]: r for r in json.loads(cli("list", "--hw", "rtx4090-128gb", "--json", env=env).stdout)["data"]["variants"]}
    assert "does not run in mainline llama.cpp or Ollama" in rows["v4.1-flash"]["verdict"]
    assert rows["v4.1-flash"]["fits"] is False
    for args in (("plan", "v4.1-flash", "--hw", "rtx4090-128gb"), ("pull", "v4.1-flash"), ("modelfile", "v4.1-flash")):
        result = cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert "does not run in mainline llama.cpp or Ollama" in result.stderr and "ik_llama.cpp" in result.stderr
        assert "Traceback" not in result.stderr


def test_recommend_lists_what_it_cannot_plan_last_and_says_so():
    from dataclasses import replace

    from dslocal.catalog import Catalog
    from dslocal.hardware.presets import load_profile
    from dslocal.planner.rank import recommend, way_out

    profile = load_profile("rtx4090-128gb")
    unknown = replace(CATALOG.get("v3-q4"), id="x-unknown", aliases=(), model="DeepSeek-Unknown")
    ranked = recommend(Catalog([CATALOG.get("r1-distill-qwen-7b"), unknown]), profile)
    assert [r.variant.id for r in ranked] == ["r1-distill-qwen-7b-q4_k_m", "x-unknown"]
    last = ranked[-1]
    assert not last.planned and not last.usable and last.plan.placement == "none"
    assert "not yet planned" in last.reason and "DeepSeek-Unknown" in last.reason
    assert "x-unknown" not in way_out(ranked, profile)


def test_recommend_offers_v4_flash_where_it_runs_well_or_says_it_is_not_planned():
    from dslocal.hardware.presets import load_profile
    from dslocal.planner.rank import recommend

    full = recommend(CATALOG, load_profile("rtx4090-128gb"))
    planned = [r.planned for r in full]
    assert planned == sorted(planned, reverse=True), "every variant it cannot plan comes after those it can"
    flash = next(r for r in full if r.variant.id == "v4-flash-ud-q2_k_xl")
    if not flash.planned:  # until the planner sizes deepseek4
        assert "not yet planned" in flash.reason and flash.plan.placement == "none"
        return
    assert flash.plan.fits, "97 GB of weights in 24 GB of VRAM + 128 GB of RAM"
    if flash.usable:  # where V4-Flash runs well it comes before every R1 distill
        first_distill = next(i for i, r in enumerate(full) if r.variant.family == "distill")
        assert full.index(flash) < first_distill, flash.reason


def test_list_and_plan_name_the_new_generations(cli, dslocal_home):
    env = {"OLLAMA_HOST": "127.0.0.1:9"}
    listing = cli("list", "--hw", "rtx4090-128gb", "--json", env=env)
    assert listing.returncode == 0, listing.stderr
    rows = {r["id"]: r for r in json.loads(listing.stdout)["data"]["variants"]}
    assert rows["v4-flash-fp4-safetensors"]["placement"] == "multi-node"
    assert rows["v4-flash-ud-q2_k_xl"]["verdict"]
    cluster = cli("plan", "v3.1-fp8", "--cluster", "2x8xH20", "--json", env=env)
    assert json.loads(cluster.stdout)["data"]["model_path"] == "deepseek-ai/DeepSeek-V3.1"
    refused = cli("download", "v4-flash-fp4")
    assert refused.returncode == 2 and "--cluster" in refused.stderr
