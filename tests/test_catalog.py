"""The packaged catalog is consistent, and catalog ids work wherever a model is named."""

from __future__ import annotations

import json
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
    for alias in ("r1-671b-q2", "r1-671b-iq1s", "r1-distill-qwen-7b", "r1-0528-tq1", "v3-0324-q2", "r1-671b-fp8"):
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
        assert v.architecture in ("deepseek2", "qwen2", "llama", "qwen3")
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
