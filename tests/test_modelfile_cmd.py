"""``dslocal modelfile``: no Modelfile that cannot work, and no silent overwrite (newcomer trial A15, A14)."""

from __future__ import annotations

import pytest

from dslocal.ollama.modelfile import parse

IQ1S = "r1-671b-iq1s"
SHARD_1 = "./DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf"
MERGED = "./DeepSeek-R1-UD-IQ1_S.gguf"


def test_the_multi_node_fp8_original_is_refused_like_pull_does(cli, dslocal_home):
    out = cli("modelfile", "r1-671b-fp8", "--ollama-version", "0.32.15")
    assert out.returncode == 2 and out.stdout == ""
    assert "is the multi-node FP8 original" in out.stderr and "--cluster" in out.stderr
    pulled = cli("pull", "r1-671b-fp8", "--dry-run")
    assert pulled.stderr.splitlines()[0] == out.stderr.splitlines()[0], "the same words as pull"


def test_a_plan_that_cannot_load_needs_force(cli, dslocal_home):
    args = ("modelfile", IQ1S, "--hw", "rtx4090-64gb", "--ollama-version", "0.5.7")
    out = cli(*args)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"dslocal: error: {IQ1S} cannot load on this machine")
    assert "what fits instead: " in lines[0] and "--force" in lines[1] and "'dslocal modelfile " in lines[1]
    forced = cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "none, ~0 tok/s" in forced.stdout, "the comment still says what the plan is"


@pytest.mark.parametrize("version, expected", [("0.5.7", MERGED), ("0.29.9", MERGED), ("0.30.0", SHARD_1),
                                               ("0.32.15", SHARD_1)])
def test_from_is_the_merged_file_for_an_ollama_without_split_import(cli, dslocal_home, version, expected):
    out = cli("modelfile", IQ1S, "--hw", "2xh100-512gb", "--ollama-version", version)
    assert out.returncode == 0, out.stderr
    assert parse(out.stdout).from_ == expected
    said = "cannot import a split GGUF" in out.stderr and "dslocal gguf merge" in out.stderr
    assert said == (expected == MERGED)
    explicit = cli("modelfile", IQ1S, "--hw", "2xh100-512gb", "--ollama-version", version, "--from", "./mine.gguf")
    assert parse(explicit.stdout).from_ == "./mine.gguf", "--from still wins"


def test_output_is_not_overwritten_without_force(cli, dslocal_home, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    args = ("modelfile", "r1-distill-qwen-7b", "--hw", "cpu-only-64gb", "--ollama-version", "0.32.15", "-o",
            str(precious))
    out = cli(*args)
    assert out.returncode == 4 and "already exists" in out.stderr and "--force" in out.stderr
    assert precious.read_text() == "keep me\n"
    forced = cli(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert parse(precious.read_text()).from_ == "./DeepSeek-R1-Distill-Qwen-7B-Q4_K_M.gguf"
    fresh = tmp_path / "Modelfile"
    assert cli(*args[:-1], str(fresh)).returncode == 0 and fresh.exists(), "a new file needs no --force"


def test_from_is_never_a_registry_name_for_a_variant_without_file_names(cli, dslocal_home):
    """V3.1's UD-Q5_K_XL is listed by folder: FROM is a placeholder path (Ollama would try to pull a bare
    name from its registry) until the files are downloaded, then their first shard."""
    out = cli("modelfile", "v3.1-ud-q5_k_xl", "--hw", "2xh100-512gb", "--ollama-version", "0.32.15")
    assert out.returncode == 0, out.stderr
    assert parse(out.stdout).from_ == "./UD-Q5_K_XL/FIRST-SHARD-00001-of-N.gguf"
    assert "dslocal download v3.1-ud-q5_k_xl" in out.stderr
    from dslocal.catalog import load_catalog

    variant = load_catalog().get("v3.1-ud-q5_k_xl")
    folder = dslocal_home / "data" / "models" / variant.hf_repo / variant.hf_folder
    folder.mkdir(parents=True)
    for n in (2, 1):
        (folder / f"DeepSeek-V3.1-UD-Q5_K_XL-0000{n}-of-00002.gguf").write_bytes(b"GGUF")
    out = cli("modelfile", "v3.1-ud-q5_k_xl", "--hw", "2xh100-512gb", "--ollama-version", "0.32.15")
    assert parse(out.stdout).from_ == str(folder / "DeepSeek-V3.1-UD-Q5_K_XL-00001-of-00002.gguf")
