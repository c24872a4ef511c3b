"""The header reader agrees with gguf-py and refuses every kind of bad file with a clear error."""

from __future__ import annotations

import struct
import tracemalloc

import gguf
import pytest

from dslocal.errors import DslocalError
from dslocal.gguf_tools.ggml_types import FILE_TYPES, GGML_TYPES
from dslocal.gguf_tools.header import BytesSource, GGUFFormatError, read_file_header, read_header

KINDS = ("deepseek2-legacy", "deepseek2-mla", "qwen2", "llama")


def test_ggml_type_table_matches_gguf_py():
    for qtype, (block, size) in gguf.GGML_QUANT_SIZES.items():
        assert GGML_TYPES[int(qtype)] == (qtype.name, block, size)
    for ftype in gguf.LlamaFileType:
        if ftype.name != "GUESSED":
            assert FILE_TYPES[int(ftype)] == ftype.name.removeprefix("MOSTLY_").removeprefix("ALL_")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ("f32", "q8_0"))
def test_header_matches_gguf_reader(make_gguf, kind, dtype):
    (path,) = make_gguf(kind, dtype)
    ours = read_file_header(path)
    ref = gguf.GGUFReader(path)
    ref_fields = {k: f for k, f in ref.fields.items() if not k.startswith("GGUF.")}  # gguf-py's pseudo-keys
    assert list(ours.kv) == list(ref_fields)
    for key, field in ref_fields.items():
        assert ours.get(key) == field.contents(), key
    assert [t.name for t in ours.tensors] == [t.name for t in ref.tensors]
    for mine, theirs in zip(ours.tensors, ref.tensors):
        assert mine.shape == tuple(int(x) for x in theirs.shape)
        assert mine.ggml_type == int(theirs.tensor_type)
        assert mine.n_bytes == int(theirs.n_bytes)
        assert ours.data_offset + mine.offset == theirs.data_offset
    assert ours.data_end <= path.stat().st_size


def small_header(make_gguf) -> bytes:
    (path,) = make_gguf("llama", "f32")
    header = read_file_header(path)
    return path.read_bytes()[: header.data_end]


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "is empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 1\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "HTML page"),
        (b'{"error":"Repository not found"}', "JSON document"),
        (b"tjgg\x01\x00\x00\x00", "old GGML format"),
        (b"PK\x03\x04zipzip", "not a GGUF file"),
        (b"GGUF\x01\x00\x00\x00" + bytes(16), "version 1"),
        (b"GGUF\x00\x00\x00\x03" + bytes(16), "big-endian"),
        (b"GGU", "is not a GGUF file"),
    ],
)
def test_not_gguf_files_are_named_for_what_they_are(content, needle):
    with pytest.raises(GGUFFormatError, match=needle) as info:
        read_header(BytesSource(content, name="model.gguf"))
    assert "model.gguf" in info.value.message and info.value.hint


def test_absurd_counts_fail_at_once_without_allocating():
    for n_tensors, n_kv in ((1 << 60, 0), (0, 1 << 60), (1 << 63, 1 << 63)):
        data = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + bytes(64)
        tracemalloc.start()
        with pytest.raises(GGUFFormatError, match="claims"):
            read_header(BytesSource(data, name="huge.gguf"))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1 << 20


def test_huge_array_and_string_lengths_fail_without_allocating():
    key = struct.pack("<Q", 3) + b"a.b"
    array = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<IIQ", 9, 8, 1 << 60)
    string = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + struct.pack("<IQ", 8, 1 << 62)
    for data in (array, string):
        tracemalloc.start()
        with pytest.raises(GGUFFormatError, match="claims"):
            read_header(BytesSource(data + bytes(100), name="x.gguf"))
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
        tracemalloc.stop()


def test_truncated_data_is_reported_with_sizes(make_gguf, tmp_path):
    (path,) = make_gguf("llama", "f16")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(GGUFFormatError, match="truncated"):
        read_file_header(cut)
    header_only = tmp_path / "head.gguf"
    header_only.write_bytes(path.read_bytes()[:200])
    with pytest.raises(GGUFFormatError, match="truncated"):
        read_file_header(header_only)
    mid_string = tmp_path / "mid.gguf"
    mid_string.write_bytes(path.read_bytes()[:4000])
    with pytest.raises(GGUFFormatError, match="truncated|ends inside its header"):
        read_file_header(mid_string)


def test_structural_errors(make_gguf):
    data = bytearray(small_header(make_gguf))
    header = read_header(BytesSource(bytes(data)))
    # a tensor offset that does not follow the previous tensor
    second = header.tensors[1]
    name = second.name.encode()
    at = data.index(struct.pack("<Q", len(name)) + name, header.ti_start)
    offset_at = at + 8 + len(name) + 4 + 8 * len(second.shape) + 4
    bad = bytearray(data)
    bad[offset_at : offset_at + 8] = struct.pack("<Q", second.offset + 32)
    with pytest.raises(GGUFFormatError, match="data offset"):
        read_header(BytesSource(bytes(bad)))
    # an unknown ggml type
    bad = bytearray(data)
    bad[offset_at - 4 : offset_at] = struct.pack("<I", 77)
    with pytest.raises(GGUFFormatError, match="unknown ggml type 77"):
        read_header(BytesSource(bytes(bad)))
    # a duplicated tensor name
    first = header.tensors[0].name.encode()
    bad = bytearray(data)
    if len(first) == len(name):
        bad[at + 8 : at + 8 + len(name)] = first
        with pytest.raises(GGUFFormatError, match="twice"):
            read_header(BytesSource(bytes(bad)))


def test_every_format_error_is_a_dslocal_error():
    assert issubclass(GGUFFormatError, DslocalError)
