"""A pull whose plan cannot load, or would only stream from disk, stops before the download (newcomer trial A5)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
from hubdouble import run_hub
from ollama_double import run_ollama
from test_pull import env, hub_root  # noqa: F401 - module-scoped fixtures

from dslocal.catalog import load_catalog
from dslocal.config import load_settings
from dslocal.hardware.presets import load_profile
from dslocal.ollama.client import OllamaClient
from dslocal.pipeline import PullRequest, pull
from dslocal.testing.ggufgen import ModelSpec, write_model

VARIANT = "r1-671b-iq1s"
SMALL_GPU = "rtx4090-64gb"  # 24 GB of VRAM and 64 GB of RAM for a 131 GiB model


@pytest.fixture(scope="module")
def catalog_hub(tmp_path_factory):
    """The variant's files as the hub lists them, tiny: the plan comes from the catalog's 131 GiB."""
    root = tmp_path_factory.mktemp("catalog-hub")
    variant = load_catalog().get(VARIANT)
    folder = root / variant.hf_repo / variant.hf_folder
    folder.mkdir(parents=True)
    write_model(folder / "DeepSeek-R1-UD-IQ1_S.gguf", ModelSpec.deepseek2("legacy"), dtype="q8_0", shards=3)
    return root


@pytest.mark.parametrize("version, why", [("0.5.7", "cannot load on this machine (Ollama 0.5.7 refuses"),
                                          ("0.32.15", "would only stream its weights from disk here")])
def test_a_plan_that_cannot_load_or_only_streams_stops_before_the_download(env, catalog_hub, version, why):  # noqa: F811
    from dslocal.pipeline.gate import PlanRefused

    with run_hub(catalog_hub) as hub, run_ollama(env.store, version) as ollama:
        env(hub.url, ollama.url)
        with pytest.raises(PlanRefused) as info:
            pull(PullRequest(model=VARIANT), load_settings(), load_profile(SMALL_GPU))
        assert hub.stats.listing_requests == 0 and hub.stats.file_requests == 0, "nothing asked of the hub"
    message, hint = info.value.message, info.value.hint
    assert message.startswith(f"{VARIANT} {why}") and "\n" not in message
    instead = message.split("; what fits instead: ")[1].split(", ")
    variant_id = load_catalog().get(VARIANT).id
    assert instead and variant_id not in instead
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan

    for other in instead:  # every alternative really runs from memory on that machine, for that server
        assert plan(from_variant(load_catalog().get(other)), load_profile(SMALL_GPU), ollama_version=version).fits, \
            "what fits instead does fit"
    assert "--force" in hint and f"'dslocal plan {variant_id}'" in hint and f"'dslocal pull {instead[0]}'" in hint
    assert info.value.exit_code == 1


def test_force_pulls_anyway_and_dry_run_still_shows_the_plan(env, catalog_hub):  # noqa: F811
    with run_hub(catalog_hub) as hub, run_ollama(env.store, "0.5.7") as ollama:
        env(hub.url, ollama.url)
        notes = []
        dry = pull(PullRequest(model=VARIANT, dry_run=True), load_settings(), load_profile(SMALL_GPU),
                   notify=notes.append)
        assert dry.dry_run and dry.plan["placement"] == "none" and dry.disk_plan["model_bytes"] > 0
        assert any(n.startswith(f"warning: {VARIANT} cannot load") for n in notes), notes
        notes.clear()
        result = pull(PullRequest(model=VARIANT, force=True, smoke_test=False), load_settings(),
                      load_profile(SMALL_GPU), notify=notes.append)
        assert result.name in [m["name"] for m in OllamaClient(ollama.url).tags()]
        assert any(n.startswith("warning: ") and n.endswith("(--force: pulling it anyway)") for n in notes), notes


def test_far_below_usable_speed_is_refused_too():
    from dslocal.pipeline.gate import why_not
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan

    fitting = plan(from_variant(load_catalog().get("r1-distill-qwen-7b")), load_profile("cpu-only-64gb"))
    assert fitting.fits and why_not(fitting) is None
    crawling = dataclasses.replace(fitting, decode_tokens_per_s=0.4)
    assert "far below the 5 tok/s of a usable plan" in why_not(crawling)
    assert why_not(dataclasses.replace(fitting, decode_tokens_per_s=2.0)) is None, "slow, but worth it"


def test_the_cli_refusal_is_one_line_and_names_force(catalog_hub, dslocal_home, tmp_path):
    store = tmp_path / "models"
    with run_hub(catalog_hub) as hub, run_ollama(store, "0.32.15") as ollama:
        env = {**os.environ, "DSLOCAL_HF_ENDPOINT": hub.url, "DSLOCAL_SOURCE": "hf", "OLLAMA_MODELS": str(store),
               "OLLAMA_HOST": ollama.url.removeprefix("http://")}
        out = subprocess.run([sys.executable, "-m", "dslocal", "pull", VARIANT, "--hw", SMALL_GPU], env=env,
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"dslocal: error: {VARIANT} would only stream")
    assert lines[1].startswith("hint: ") and "--force" in lines[1]
    assert "Traceback" not in out.stderr and not list(dslocal_home.rglob("*.gguf")), "nothing downloaded"
