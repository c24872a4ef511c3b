"""The "ollama" merge layout is byte for byte what llama.cpp's quantizer writes in COPY mode.

Ollama >= 0.30 rewrites every imported GGUF with ``llama-quantize IN OUT COPY``. dslocal writes
that form itself so the server's rewrite reproduces its digest. Every test here compares
dslocal's merge with the real quantizer (llama-cpp-python's ``llama_model_quantize``, through
``tests/llamacpp_copy.py``), on files laid out the way published GGUFs are.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import shutil
import struct
from pathlib import Path

import pytest

from dslocal.gguf_tools.header import T_INT32, T_UINT32, GGUFHeader, read_file_header
from dslocal.gguf_tools.merge import merge_shards
from dslocal.gguf_tools.split import split_file
from dslocal.testing.ggufgen import HeaderStyle, ModelSpec, TensorPlan, write_model

from llamacpp_copy import LlamaQuantizeError, llama_quantize_copy
from test_gguf_merge import crash_merge, first_checkpoint_bytes

pytest.importorskip("llama_cpp")

# Eleven layers, so that llama.cpp's numeric block order (blk.2 before blk.10) differs from byte order.
SPECS = {
    "deepseek2-legacy": ModelSpec.deepseek2("legacy", n_layer=11),
    "deepseek2-mla": ModelSpec.deepseek2("mla", n_layer=11),
    "qwen2": ModelSpec.qwen2(n_layer=11),
    "llama": ModelSpec.llama(n_layer=11),
}
# How each kind of published file lays its header out.
STYLES = {
    # convert_hf_to_gguf.py: general.file_type then general.quantization_version mid-header, before the tokenizer
    "convert": HeaderStyle(),
    # llama-quantize --imatrix (every Unsloth/bartowski quant): quantization_version, file_type, then quantize.imatrix.*
    "quantized": HeaderStyle.quantized(),
    # no general.file_type at all: llama.cpp guesses it and marks it guessed
    "no-file-type": HeaderStyle(file_type=False),
}
SOURCES = ("single", "split-by-generator", "split-by-dslocal")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _kv_summary(header: GGUFHeader) -> list[tuple[str, int, object]]:
    return [(e.key, e.vtype, e.value if not isinstance(e.value, list) else f"[{len(e.value)} items]")
            for e in header.kv.values()]


def _first_difference(ours: list, theirs: list) -> str | None:
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            return f"#{i}: ours {a!r}, llama.cpp {b!r}"
    if len(ours) != len(theirs):
        return f"ours has {len(ours)}, llama.cpp {len(theirs)}"
    return None


def describe_difference(ours: Path, theirs: Path) -> str:
    """The first place where two GGUF files differ: header field, KV, tensor info, or data byte."""
    a, b = read_file_header(ours, check_size=False), read_file_header(theirs, check_size=False)
    lines = []
    if a.version != b.version:
        lines.append(f"version: ours {a.version}, llama.cpp {b.version}")
    kv = _first_difference(_kv_summary(a), _kv_summary(b))
    if kv:
        lines.append(f"first differing KV {kv}")
    tensors = _first_difference([(t.name, t.shape, t.ggml_type, t.offset) for t in a.tensors],
                                [(t.name, t.shape, t.ggml_type, t.offset) for t in b.tensors])
    if tensors:
        lines.append(f"first differing tensor info {tensors}")
    if a.data_offset != b.data_offset:
        lines.append(f"data section at: ours {a.data_offset}, llama.cpp {b.data_offset}")
    if not lines:
        lines.append(_first_differing_byte(ours, theirs, b))
    return "; ".join(lines)


def _first_differing_byte(ours: Path, theirs: Path, header: GGUFHeader) -> str:
    x, y = ours.read_bytes(), theirs.read_bytes()
    at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
    where = "the header"
    for t in header.tensors:
        if header.data_offset + t.offset <= at:
            where = f"tensor {t.name} (or the padding after it)"
    return f"sizes: ours {len(x)}, llama.cpp {len(y)}; first differing byte {at} is in {where}"


def assert_same_file(ours: Path, theirs: Path) -> None:
    if sha256(ours) != sha256(theirs):
        pytest.fail(f"dslocal's ollama layout differs from llama-quantize COPY: {describe_difference(ours, theirs)}")


def make_source(folder: Path, kind: str, dtype: str, style: HeaderStyle, source: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    spec = SPECS[kind]
    if kind == "llama":
        style = dataclasses.replace(style, rope_freqs=True)  # the Llama 3.x distills carry rope_freqs.weight
    shards = 4 if source == "split-by-generator" else 1
    files = write_model(folder / f"{kind}-{dtype}.gguf", spec, dtype=dtype, shards=shards, header=style)
    if source == "split-by-dslocal":
        n = len(read_file_header(files[0]).tensors)
        files = list(split_file(files[0], max_tensors=-(-n // 3), out_prefix=folder / "part").files)
    return files


def merge_and_copy(files: list[Path], work: Path) -> tuple[Path, Path, str]:
    """dslocal's ollama merge of ``files`` and llama-quantize COPY of the same input."""
    merged = merge_shards(files[0], work / "ours.gguf", layout="ollama", compute_sha256=True)
    theirs = work / "llama-quantize-copy.gguf"
    llama_quantize_copy(files[0], theirs)
    assert merged.sha256 == sha256(merged.path), "the merge's own sha256 is not its file's"
    return merged.path, theirs, merged.sha256


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
@pytest.mark.parametrize("kind", sorted(SPECS))
def test_ollama_layout_is_what_llama_quantize_copy_writes(tmp_path, kind, dtype, style, source):
    files = make_source(tmp_path / "in", kind, dtype, STYLES[style], source)
    ours, theirs, _ = merge_and_copy(files, tmp_path)
    assert_same_file(ours, theirs)


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_the_servers_rewrite_of_the_ollama_layout_is_the_same_file(tmp_path, kind):
    files = make_source(tmp_path / "in", kind, "q8_0", HeaderStyle.quantized(), "split-by-generator")
    ours, _, digest = merge_and_copy(files, tmp_path)
    again = tmp_path / "rewritten.gguf"
    llama_quantize_copy(ours, again)
    assert sha256(again) == digest
    header = read_file_header(ours)
    keys = list(header.kv)
    assert keys[-2:] == ["general.quantization_version", "general.file_type"]
    assert not any(k.startswith("split.") for k in keys)
    imatrix = [k for k in keys if k.startswith("quantize.imatrix.")]
    assert len(imatrix) == 4 and keys.index(imatrix[-1]) < keys.index("general.quantization_version")


def test_a_published_quant_is_already_canonical_except_its_key_order(tmp_path):
    """llama-quantize's output only moves quantize.imatrix.* before the last two keys."""
    (source,) = make_source(tmp_path / "in", "deepseek2-mla", "q8_0", HeaderStyle.quantized(), "single")
    ours, theirs, _ = merge_and_copy([source], tmp_path)
    assert_same_file(ours, theirs)
    before, after = read_file_header(source), read_file_header(ours)
    assert [t.name for t in before.tensors] == [t.name for t in after.tensors]
    assert list(before.kv)[-6:-4] == ["general.quantization_version", "general.file_type"]
    assert list(after.kv)[-6:] == [
        "quantize.imatrix.file", "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
        "quantize.imatrix.chunks_count", "general.quantization_version", "general.file_type",
    ]


def test_file_type_guessed_by_llama_cpp_is_marked_guessed(tmp_path):
    (source,) = make_source(tmp_path / "in", "qwen2", "q8_0", HeaderStyle(file_type=False), "single")
    ours, theirs, _ = merge_and_copy([source], tmp_path)
    assert_same_file(ours, theirs)
    assert read_file_header(ours).get("general.file_type") == 7 | 1024  # MOSTLY_Q8_0 | LLAMA_FTYPE_GUESSED


# Names that probe llama.cpp's weight_name_comparer (sscanf "blk.%d.", then byte order) and
# shapes with trailing dimensions of 1, which llama.cpp writes with fewer dimensions.
ODD_TENSORS = (
    TensorPlan("blk.07.extra.weight", (8,), "weight"),  # layer 7, sorts first within it
    TensorPlan("blk.x.extra.weight", (8,), "weight"),  # no number: a non-block tensor
    TensorPlan("Z_upper.weight", (8, 1), "weight"),  # upper case sorts before lower case
    TensorPlan("zz_trailing_ones.weight", (16, 1, 1), "weight"),
    TensorPlan("blk.3.inner_ones.weight", (16, 1, 2), "weight"),  # a 1 that is not trailing stays
)


@pytest.mark.parametrize("source", ["single", "split-by-dslocal"])
def test_odd_tensor_names_and_shapes(tmp_path, source):
    style = HeaderStyle(extra_tensors=ODD_TENSORS)
    files = make_source(tmp_path / "in", "deepseek2-mla", "f16", style, source)
    ours, theirs, _ = merge_and_copy(files, tmp_path)
    assert_same_file(ours, theirs)
    shapes = {t.name: t.shape for t in read_file_header(ours).tensors}
    assert shapes["zz_trailing_ones.weight"] == (16,) and shapes["Z_upper.weight"] == (8,)
    assert shapes["blk.3.inner_ones.weight"] == (16, 1, 2)
    names = list(shapes)
    assert names.index("blk.x.extra.weight") < names.index("blk.0.attn_norm.weight")
    assert names.index("blk.6.ffn_up_shexp.weight") < names.index("blk.07.extra.weight") < names.index("blk.7.attn_norm.weight")


def test_gguf_version_2_comes_out_as_version_3(tmp_path):
    (source,) = make_source(tmp_path / "in", "qwen2", "f16", HeaderStyle(), "single")
    data = bytearray(source.read_bytes())
    data[4:8] = struct.pack("<I", 2)
    source.write_bytes(data)
    ours, theirs, _ = merge_and_copy([source], tmp_path)
    assert_same_file(ours, theirs)
    assert read_file_header(ours).version == 3


def _patch_kv_type(path: Path, key: str, vtype: int) -> None:
    entry = read_file_header(path).kv[key]
    data = bytearray(path.read_bytes())
    data[entry.value_start - 4 : entry.value_start] = struct.pack("<I", vtype)
    path.write_bytes(data)


def test_file_type_of_another_integer_type_is_written_as_llama_cpp_needs_it(tmp_path):
    """llama.cpp refuses such a file; dslocal writes a u32, which the server's rewrite then keeps."""
    (source,) = make_source(tmp_path / "in", "llama", "f16", HeaderStyle(), "single")
    _patch_kv_type(source, "general.file_type", T_INT32)
    with pytest.raises(LlamaQuantizeError, match="general.file_type has wrong type"):
        llama_quantize_copy(source, tmp_path / "refused.gguf")
    merged = merge_shards(source, tmp_path / "ours.gguf", layout="ollama", compute_sha256=True)
    entry = read_file_header(merged.path).kv["general.file_type"]
    assert (entry.vtype, entry.value) == (T_UINT32, 1)
    llama_quantize_copy(merged.path, tmp_path / "rewritten.gguf")
    assert_same_file(merged.path, tmp_path / "rewritten.gguf")


def test_general_alignment_other_than_32_is_written_as_32(tmp_path):
    """llama-quantize keeps general.alignment = 64 but aligns to 32: a file llama.cpp cannot read.

    dslocal writes the same bytes with general.alignment = 32, a file the rewrite reproduces.
    """
    style = HeaderStyle(alignment=64, extra_tensors=(TensorPlan("a_small.weight", (8,), "weight"),))
    files = make_source(tmp_path / "in", "qwen2", "f16", style, "split-by-generator")
    ours, theirs, digest = merge_and_copy(files, tmp_path)
    with pytest.raises(LlamaQuantizeError, match="has offset"):
        llama_quantize_copy(theirs, tmp_path / "unreadable.gguf")
    entry = read_file_header(ours).kv["general.alignment"]
    assert entry.value == 32
    x, y = bytearray(ours.read_bytes()), bytearray(theirs.read_bytes())
    assert len(x) == len(y)
    assert struct.unpack_from("<I", y, entry.value_start) == (64,)
    y[entry.value_start : entry.value_start + 4] = struct.pack("<I", 32)
    assert x == y, "the files differ elsewhere than general.alignment's value"
    llama_quantize_copy(ours, tmp_path / "rewritten.gguf")
    assert sha256(tmp_path / "rewritten.gguf") == digest


@pytest.mark.parametrize("delete_shards", [False, True])
def test_killed_then_resumed_merges_give_llama_quantizes_file_and_its_sha256(tmp_path, delete_shards):
    spec = ModelSpec.deepseek2("mla", n_layer=6, n_expert=16)
    (tmp_path / "src").mkdir()
    # imatrix keys to move, and tensors in convert order so the canonical order reads the shards out of order
    style = HeaderStyle.quantized(tensor_order="convert")
    source = write_model(tmp_path / "src" / "m.gguf", spec, dtype="f16", shards=5, header=style)
    theirs = tmp_path / "llama-quantize-copy.gguf"
    llama_quantize_copy(source[0], theirs)
    expected = sha256(theirs)
    total = read_file_header(theirs).tensor_bytes
    first = first_checkpoint_bytes(source[0], "ollama")
    rng = random.Random(11 + delete_shards)
    resumed = []
    for attempt in range(4):
        work = tmp_path / f"run{attempt}"
        work.mkdir()
        shards = [Path(shutil.copy(p, work / p.name)) for p in source]
        out = work / "out.gguf"
        wait = not delete_shards and attempt % 2 == 1
        kill_after = rng.randrange(first + 1 if wait else 1, total)
        crash_merge(shards[0], out, kill_after, delete=delete_shards, layout="ollama", sha256=True,
                    wait_for_journal=wait)
        result = merge_shards(shards[0], out, layout="ollama", compute_sha256=True, delete_shards=delete_shards)
        assert result.sha256 == expected, f"attempt {attempt}, killed after {kill_after} bytes"
        assert_same_file(out, theirs)
        resumed.append(result.resumed_at_tensor)
    assert max(resumed) > 0, "some kills should land after part of the work was journaled"
