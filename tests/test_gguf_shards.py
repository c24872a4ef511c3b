"""Shard-set checks: every problem names the file and the fix; nothing is modified on error."""

from __future__ import annotations

import shutil
import struct

import pytest

from dslocal.gguf_tools.header import GGUFFormatError, read_file_header
from dslocal.gguf_tools.shards import discover_local, open_local_set, parse_shard_name


@pytest.fixture
def shard_dir(make_gguf, tmp_path):
    shards = make_gguf("deepseek2-mla", "q8_0", shards=4)
    for path in shards:
        shutil.copy(path, tmp_path / path.name)
    return tmp_path, [tmp_path / p.name for p in shards]


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def expect_error(folder, shard, needle):
    before = snapshot(folder)
    with pytest.raises(GGUFFormatError, match=needle) as info:
        open_local_set(shard)
    assert info.value.hint
    assert snapshot(folder) == before
    return info.value


def test_any_shard_stands_for_the_set(shard_dir):
    _, shards = shard_dir
    for shard in shards:
        assert [p.name for p in discover_local(shard)] == [p.name for p in shards]
    shard_set = open_local_set(shards[2])
    assert shard_set.tensor_count == read_file_header(shards[0]).get("split.tensors.count")


def test_names_are_parsed_like_llama_cpp():
    assert parse_shard_name("DeepSeek-R1-UD-IQ1_S-00002-of-00003.gguf").prefix == "DeepSeek-R1-UD-IQ1_S"
    assert parse_shard_name("model.gguf") is None
    assert parse_shard_name("model-2-of-3.gguf") is None


def test_missing_shard(shard_dir):
    folder, shards = shard_dir
    shards[2].unlink()
    error = expect_error(folder, shards[0], "missing 1 of 4 shards")
    assert shards[2].name in error.message


def test_stray_shard_from_another_split(shard_dir, make_gguf):
    folder, shards = shard_dir
    other = make_gguf("deepseek2-mla", "q8_0", shards=4)[0]
    prefix = shards[0].name.split("-00001-")[0]
    shutil.copy(other, folder / f"{prefix}-00001-of-00005.gguf")
    expect_error(folder, shards[1], "different split")


def test_shard_renamed_out_of_place(shard_dir):
    folder, shards = shard_dir
    a, b = shards[1], shards[2]
    tmp = folder / "swap"
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    expect_error(folder, shards[0], "shard 3 by its metadata but shard 2 by its name")


def test_shard_from_a_set_of_another_size(shard_dir, make_gguf):
    folder, shards = shard_dir
    foreign = make_gguf("deepseek2-mla", "q8_0", shards=2)[1]  # split.no 1 of 2
    shutil.copy(foreign, shards[1])
    expect_error(folder, shards[0], "2-shard set")


def test_tensor_count_mismatch(shard_dir, make_gguf):
    folder, shards = shard_dir
    foreign = make_gguf("deepseek2-legacy", "q8_0", shards=4)[3]  # shard 4 of a set with other tensors
    shutil.copy(foreign, shards[3])
    expect_error(folder, shards[0], "split.tensors.count|both")


def test_duplicate_tensor_across_shards(shard_dir):
    folder, shards = shard_dir
    shutil.copy(shards[1], shards[2])  # shard 2's tensors twice; patch split.no so only duplication is wrong
    data = bytearray(shards[2].read_bytes())
    header = read_file_header(shards[2])
    entry = header.kv["split.no"]
    data[entry.value_start : entry.value_start + 2] = struct.pack("<H", 2)
    shards[2].write_bytes(bytes(data))
    expect_error(folder, shards[0], "is in both")


def test_truncated_shard(shard_dir):
    folder, shards = shard_dir
    data = shards[3].read_bytes()
    shards[3].write_bytes(data[: len(data) - 500])
    error = expect_error(folder, shards[0], "truncated")
    assert shards[3].name in error.message


def test_lfs_pointer_in_place_of_a_shard(shard_dir):
    folder, shards = shard_dir
    shards[1].write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 49000000000\n")
    expect_error(folder, shards[0], "Git LFS pointer")


def test_lone_shard_not_named_like_one(shard_dir, tmp_path):
    folder, shards = shard_dir
    lone = tmp_path / "renamed.gguf"
    shutil.copy(shards[0], lone)
    expect_error(folder, lone, "not named like one")
