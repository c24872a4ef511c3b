"""``pull hf:ORG/REPO`` on a repository of many models (newcomer trial A4), and the plan before an hf: download (D)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hubdouble import run_hub
from ollama_double import run_ollama
from test_pull import MODEL, REPO, env, hub_root, model_bytes  # noqa: F401 - module-scoped fixtures

from dslocal.config import load_settings
from dslocal.errors import UsageError
from dslocal.hardware.presets import load_profile
from dslocal.pipeline import PullRequest, pull
from dslocal.testing.ggufgen import ModelSpec, write_model

MULTI = "acme/Multi-GGUF"
PROFILE = "cpu-only-64gb"


@pytest.fixture(scope="module")
def multi_root(tmp_path_factory):
    """Two quant folders whose names overlap (Q2_K, UD-Q2_K_XL) and a single file, as unsloth's repos hold them."""
    root = tmp_path_factory.mktemp("multi-hub")
    repo = root / MULTI
    spec = ModelSpec.qwen2()
    for quant in ("Q2_K", "UD-Q2_K_XL"):
        (repo / quant).mkdir(parents=True)
        write_model(repo / quant / f"Multi-{quant}.gguf", spec, dtype="q8_0", shards=2)
    write_model(repo / "Multi-F16.gguf", spec, dtype="f16")
    return root


def folder_bytes(root, sub: str) -> int:
    return sum(p.stat().st_size for p in (root / MULTI / sub).glob("*.gguf"))


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_repo_of_many_models_without_quant_is_refused_with_the_list(env, multi_root, dry_run):  # noqa: F811
    with run_hub(multi_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        with pytest.raises(UsageError) as info:
            pull(PullRequest(model=f"hf:{MULTI}", dry_run=dry_run), load_settings(), load_profile(PROFILE))
        assert hub.stats.file_requests == 0, "refused before any download"
    error = info.value
    assert f"{MULTI} holds 3 models" in error.message and "\n" not in error.message
    assert error.hint.startswith(f"add :F16, e.g. 'dslocal pull hf:{MULTI}:F16'; this repo has F16 (")
    for label in ("Q2_K", "UD-Q2_K_XL"):
        size = folder_bytes(multi_root, label)
        assert f"{label} ({size / 1e3:.1f} kB)" in error.hint, error.hint


def test_sizes_are_shown_as_the_hub_shows_them():
    from dslocal.pipeline.repo_models import gb

    assert (gb(131_400_000_000), gb(2_345_678), gb(999)) == ("131.4 GB", "2.3 MB", "999 B")


def test_the_exact_quant_wins_over_names_that_contain_it(env, multi_root):  # noqa: F811
    with run_hub(multi_root) as hub:
        env(hub.url)
        q2k = pull(PullRequest(model=f"hf:{MULTI}:Q2_K", dry_run=True), load_settings(), load_profile(PROFILE))
        assert q2k.disk_plan["model_bytes"] == folder_bytes(multi_root, "Q2_K"), "not UD-Q2_K_XL as well"
        single = pull(PullRequest(model=f"hf:{MULTI}:F16", dry_run=True), load_settings(), load_profile(PROFILE))
        assert single.disk_plan["model_bytes"] == (multi_root / MULTI / "Multi-F16.gguf").stat().st_size
        with pytest.raises(UsageError, match="'Q2' matches 2 models"):
            pull(PullRequest(model=f"hf:{MULTI}:Q2", dry_run=True), load_settings(), load_profile(PROFILE))


def test_a_repo_of_one_model_needs_no_quant_and_is_planned_before_the_download(env, hub_root):  # noqa: F811
    """Section D: the dry run of an hf: target has a plan, from the real headers (ranged reads)."""
    with run_hub(hub_root) as hub:
        env(hub.url)
        dry = pull(PullRequest(model=f"hf:{REPO}", dry_run=True), load_settings(), load_profile(PROFILE))
        assert dry.disk_plan["model_bytes"] == model_bytes(hub_root)
        assert dry.plan["placement"] == "cpu" and dry.plan["exact"] and dry.plan["num_ctx"] >= 256
        assert dry.plan_note is None
        assert hub.stats.body_bytes < model_bytes(hub_root) / 2, "headers only"


def test_without_readable_headers_the_dry_run_says_why_there_is_no_plan(env, hub_root):  # noqa: F811
    with run_hub(hub_root) as hub:
        hub.gate(REPO)  # lists for anyone, files need a granted token
        env(hub.url)
        dry = pull(PullRequest(model=MODEL, dry_run=True), load_settings(), load_profile(PROFILE))
    assert dry.plan == {} and dry.plan_note.startswith("no plan before the download: its GGUF headers could not")


def test_the_cli_refusal_is_one_line_with_the_hint(multi_root, dslocal_home):
    with run_hub(multi_root) as hub:
        env = {"DSLOCAL_HF_ENDPOINT": hub.url, "DSLOCAL_SOURCE": "hf", "DSLOCAL_HOME": str(dslocal_home)}
        out = subprocess.run([sys.executable, "-m", "dslocal", "pull", f"hf:{MULTI}", "--dry-run", "--json"],
                             capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
                             env={**os.environ, **env})
        assert out.returncode == 2, out.stderr
        lines = out.stderr.splitlines()
        assert lines[0].startswith("dslocal: error: ") and lines[1].startswith("hint: add :F16") and len(lines) == 2
        ok = subprocess.run([sys.executable, "-m", "dslocal", "pull", f"hf:{MULTI}:UD-Q2_K_XL", "--dry-run", "--json",
                             "--hw", PROFILE], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False,
                            env={**os.environ, **env})
        assert ok.returncode == 0, ok.stderr
        data = json.loads(ok.stdout)["data"]
        assert data["disk_plan"]["model_bytes"] == folder_bytes(multi_root, "UD-Q2_K_XL")
        assert data["plan"]["placement"] and data["plan_note"] is None
