"""Splitting is the reverse of merging, in llama.cpp's format."""

from __future__ import annotations

import json

import gguf
import pytest

from dslocal.errors import InputError, UsageError
from dslocal.gguf_tools.header import read_file_header
from dslocal.gguf_tools.merge import merge_shards
from dslocal.gguf_tools.shards import open_local_set
from dslocal.gguf_tools.split import split_file
from dslocal.units import parse_size

from test_gguf_merge import metadata, tensors_of
from test_ggufgen_llama import greedy


@pytest.mark.parametrize("kind", ["deepseek2-mla", "llama"])
def test_split_then_merge_gives_back_the_original(make_gguf, tmp_path, kind):
    (source,) = make_gguf(kind, "q8_0")
    result = split_file(source, max_size=80_000, out_prefix=tmp_path / "part")
    assert len(result.files) >= 3
    assert all(size <= 80_000 for size in result.sizes)
    assert [p.stat().st_size for p in result.files] == list(result.sizes)
    assert [p.name for p in result.files] == [f"part-{i:05d}-of-{len(result.files):05d}.gguf" for i in range(1, len(result.files) + 1)]
    shard_set = open_local_set(result.files[-1])  # a valid llama.cpp set
    assert shard_set.tensor_count == len(read_file_header(source).tensors)
    assert greedy(result.files[0]) == greedy(source)
    merged = merge_shards(result.files[0], tmp_path / "back.gguf")
    assert tensors_of([merged.path]) == tensors_of([source])
    assert metadata(merged.path) == metadata(source)


def test_split_by_tensor_count_matches_the_generators_split(make_gguf, tmp_path):
    (source,) = make_gguf("qwen2", "f16")
    n = len(read_file_header(source).tensors)
    result = split_file(source, max_tensors=-(-n // 4), out_prefix=tmp_path / "qwen2-f16")
    reference = make_gguf("qwen2", "f16", shards=4)
    for ours, theirs in zip(result.files, reference):
        assert ours.read_bytes() == theirs.read_bytes(), ours.name


def test_split_refuses_shards_and_existing_outputs(make_gguf, tmp_path):
    shards = make_gguf("llama", "f16", shards=2)
    with pytest.raises(InputError, match="already a shard"):
        split_file(shards[0], max_size=10**9, out_prefix=tmp_path / "x")
    (source,) = make_gguf("llama", "f16")
    first = split_file(source, max_tensors=10, out_prefix=tmp_path / "y")
    before = first.files[0].read_bytes()
    with pytest.raises(InputError, match="already exists"):
        split_file(source, max_tensors=10, out_prefix=tmp_path / "y")
    assert first.files[0].read_bytes() == before
    with pytest.raises(UsageError):
        split_file(source, out_prefix=tmp_path / "z")
    assert not list(tmp_path.glob(".*partial"))


def test_sizes_parse_like_llama_gguf_split():
    assert parse_size("48G") == 48 * 10**9
    assert parse_size("4000M") == 4 * 10**9
    assert parse_size("40GiB") == 40 * 2**30
    assert parse_size("1.5g") == 1_500_000_000
    for bad in ("", "G", "-1G", "12X", "0"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_cli_split(cli, dslocal_home, make_gguf, tmp_path):
    (source,) = make_gguf("deepseek2-legacy", "q8_0")
    result = cli("gguf", "split", str(source), "--max-size", "150K", "--prefix", str(tmp_path / "s"), "--json")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["data"]["files"]
    assert len(files) >= 2 and all(f["bytes"] <= 150_000 for f in files)
    assert gguf.GGUFReader(files[1]["path"]).fields["split.no"].contents() == 1
    bad = cli("gguf", "split", str(source), "--max-size", "lots")
    assert bad.returncode == 2 and "is not a size" in bad.stderr
