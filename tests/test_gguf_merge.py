"""Merging split sets: equivalent to llama-gguf-split --merge, runs in llama.cpp, survives SIGKILL.

"Runs in llama.cpp": xllamacpp's llama-server generates the same greedy tokens from the merged file
as from the set (test_ggufgen_llama.greedy, tests/llama_engine.py).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys

import gguf
import pytest

from dslocal.errors import DiskError, InputError
from dslocal.gguf_tools import merge as merge_module
from dslocal.gguf_tools.header import read_file_header
from dslocal.gguf_tools.layout import TrailingHasher
from dslocal.gguf_tools.merge import journal_path, merge_shards, partial_path
from dslocal.testing.ggufgen import ModelSpec, write_model

SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")


def greedy(path):
    """Greedy tokens from llama.cpp (xllamacpp); skips only the tests that generate when it is missing."""
    pytest.importorskip("xllamacpp")
    from test_ggufgen_llama import greedy as generate

    return generate(path)


def copy_set(shards, folder):
    folder.mkdir(exist_ok=True)
    return [shutil.copy(p, folder / p.name) for p in shards]


def tensors_of(paths):
    out = []
    for path in paths:
        for t in gguf.GGUFReader(path).tensors:
            out.append((t.name, int(t.tensor_type), tuple(int(x) for x in t.shape), t.data.tobytes()))
    return out


def metadata(path, drop=SPLIT_KEYS):
    return {
        k: f.contents() for k, f in gguf.GGUFReader(path).fields.items()
        if not k.startswith("GGUF.") and k not in drop
    }


@pytest.mark.parametrize("kind", ["deepseek2-legacy", "deepseek2-mla", "qwen2", "llama"])
def test_merged_file_equals_the_set_and_generates_the_same_tokens(make_gguf, tmp_path, kind):
    shards = make_gguf(kind, "q8_0", shards=4)
    out = tmp_path / "merged.gguf"
    result = merge_shards(shards[1], out, compute_sha256=True)
    assert tensors_of([out]) == tensors_of(shards)
    assert metadata(out) == metadata(shards[0])
    merged_kv = metadata(out, drop=())
    assert merged_kv["split.count"] == 0 and merged_kv["split.no"] == 0  # as llama-gguf-split writes
    assert merged_kv["split.tensors.count"] == len(tensors_of(shards))
    assert result.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert result.size == out.stat().st_size
    header = read_file_header(out)
    assert all((header.data_offset + t.offset) % 32 == 0 for t in header.tensors)
    assert greedy(out) == greedy(shards[0])
    assert not partial_path(out).exists() and not journal_path(out).exists()


def test_merge_is_deterministic_and_hash_mode_matches_kernel_copy(make_gguf, tmp_path):
    shards = make_gguf("deepseek2-mla", "f16", shards=3)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    merge_shards(shards[0], a)
    merge_shards(shards[0], b, compute_sha256=True)
    assert a.read_bytes() == b.read_bytes()


def test_existing_output_is_refused_without_force(make_gguf, tmp_path):
    shards = make_gguf("llama", "f16", shards=2)
    out = tmp_path / "out.gguf"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        merge_shards(shards[0], out)
    assert out.read_bytes() == b"precious"
    merge_shards(shards[0], out, force=True)
    assert tensors_of([out]) == tensors_of(shards)


def test_refuses_with_numbers_when_the_disk_is_too_small(make_gguf, tmp_path, monkeypatch):
    shards = make_gguf("llama", "f16", shards=2)
    monkeypatch.setattr(merge_module, "_free_bytes", lambda folder: 1000)
    with pytest.raises(DiskError, match=r"needs .* free .* there is 1000 B") as info:
        merge_shards(shards[0], tmp_path / "out.gguf")
    assert "--delete-shards" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_delete_shards_needs_only_the_largest_shard(make_gguf, tmp_path):
    shards = copy_set(make_gguf("deepseek2-mla", "f32", shards=4), tmp_path / "in")
    shard_set = merge_module.open_local_set(shards[0])
    header, _, _ = merge_module.merged_header(shard_set)
    keep = merge_module.required_bytes(shard_set, len(header), tmp_path, delete_shards=False)
    delete = merge_module.required_bytes(shard_set, len(header), tmp_path, delete_shards=True)
    assert delete < keep / 2
    expected = tensors_of(shards)
    out = tmp_path / "out.gguf"
    merge_shards(shards[0], out, delete_shards=True)
    assert not any(p.exists() for p in shards)
    assert tensors_of([out]) == expected


CRASHER = r"""
import json, os, signal, sys, time
from pathlib import Path
from dslocal.gguf_tools.merge import journal_path, merge_shards
shard, out, kill_after, layout = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
delete, sha256, wait = (arg == "1" for arg in sys.argv[5:8])
def journaled():
    try:
        return json.loads(journal_path(out).read_text())["done"] > 0
    except (OSError, ValueError, KeyError):
        return False
def sink(event):
    if event.done >= kill_after:
        deadline = time.monotonic() + 30
        while wait and not journaled() and time.monotonic() < deadline:
            time.sleep(0.001)  # the journal is saved by a worker thread, right behind the copy
        os.kill(os.getpid(), signal.SIGKILL)
merge_shards(shard, out, delete_shards=delete, compute_sha256=sha256, layout=layout, progress=sink)
"""


def crash_merge(shard, out, kill_after, *, delete, layout="llama.cpp", sha256=False, wait_for_journal=False):
    """Run a merge in a child and SIGKILL it once ``kill_after`` bytes are copied (and, if asked, journaled)."""
    flags = [str(int(x)) for x in (delete, sha256, wait_for_journal)]
    proc = subprocess.run([sys.executable, "-c", CRASHER, str(shard), str(out), str(kill_after), layout, *flags])
    assert proc.returncode == -signal.SIGKILL


def first_checkpoint_bytes(shard, layout="llama.cpp") -> int:
    """Tensor bytes copied when the first shard is complete in output order (the first journal entry)."""
    shard_set = merge_module.open_local_set(shard)
    _, tensors, _ = merge_module.output_header(shard_set, layout)
    owner = {t.name: k for k, h in enumerate(shard_set.headers) for t in h.tensors}
    left = [len(h.tensors) for h in shard_set.headers]
    done = 0
    for tensor in tensors:
        done += tensor.n_bytes
        left[owner[tensor.name]] -= 1
        if not left[owner[tensor.name]]:
            return done
    raise AssertionError("no tensors")


@pytest.mark.parametrize("delete", [False, True])
def test_sigkill_at_random_points_then_rerun_gives_the_same_file(make_gguf, tmp_path, delete):
    spec = ModelSpec.deepseek2("mla", n_layer=6, n_expert=16)
    (tmp_path / "src").mkdir()
    source = write_model(tmp_path / "src" / "m.gguf", spec, dtype="f16", shards=5)
    clean = tmp_path / "clean.gguf"
    merge_shards(source[0], clean)
    total = read_file_header(clean).tensor_bytes
    first = first_checkpoint_bytes(source[0])
    rng = random.Random(7 + delete)
    resumed = []
    for attempt in range(6):
        work = tmp_path / f"run{attempt}"
        shards = copy_set(source, work)
        out = work / "out.gguf"
        wait = not delete and attempt % 2 == 1  # half the kills land after a checkpoint was journaled
        kill_after = rng.randrange(first + 1 if wait else 1, total)
        crash_merge(shards[0], out, kill_after, delete=delete, wait_for_journal=wait)
        assert not out.exists(), "a killed merge must not leave a file that looks complete"
        result = merge_shards(shards[0], out, delete_shards=delete)
        assert out.read_bytes() == clean.read_bytes(), f"attempt {attempt}, killed after {kill_after} bytes"
        assert not partial_path(out).exists() and not journal_path(out).exists()
        if delete:
            assert not any(p.exists() for p in shards)
        resumed.append(result.resumed_at_tensor)
    assert max(resumed) > 0, "some kills should land after a shard was journaled"


def test_cli_merge_json_and_errors(cli, dslocal_home, make_gguf, tmp_path):
    shards = make_gguf("qwen2", "q8_0", shards=3)
    out = tmp_path / "q.gguf"
    result = cli("gguf", "merge", str(shards[2]), "-o", str(out), "--sha256", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["command"] == "gguf merge"
    assert doc["data"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert doc["data"]["tensor_count"] == len(tensors_of([out]))
    again = cli("gguf", "merge", str(shards[0]), "-o", str(out))
    assert again.returncode == 4 and "already exists" in again.stderr and "--force" in again.stderr
    missing = cli("gguf", "merge", str(tmp_path / "nope-00001-of-00002.gguf"), "-o", str(tmp_path / "x.gguf"))
    assert missing.returncode == 4 and "no such file" in missing.stderr and "Traceback" not in missing.stderr


def disk_usage(*folders) -> int:
    """Allocated bytes under ``folders``, each file once (by inode)."""
    seen = {}
    for folder in folders:
        for p in folder.rglob("*"):
            if p.is_file():
                st = p.stat()
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


def test_delete_shards_peak_disk_is_the_model_plus_one_tensor(tmp_path):
    spec = ModelSpec.deepseek2("legacy", n_layer=6, n_expert=16, n_embd=256, n_ff_exp=128, n_head=8)
    work = tmp_path / "w"
    work.mkdir()
    shards = write_model(work / "m.gguf", spec, dtype="f16", shards=4)
    model_bytes = disk_usage(work)
    reference = tensors_of(shards)
    largest_tensor = max(t.n_bytes for p in shards for t in read_file_header(p).tensors)
    peak = [0]

    def sink(event):
        peak[0] = max(peak[0], disk_usage(work))

    result = merge_shards(shards[0], work / "out.gguf", delete_shards=True, compute_sha256=True, progress=sink)
    assert result.deleted_shards and not any(p.exists() for p in shards)
    assert tensors_of([result.path]) == reference
    assert result.sha256 == hashlib.sha256(result.path.read_bytes()).hexdigest()
    assert peak[0] <= model_bytes + largest_tensor + 64 * 1024, (peak[0], model_bytes, largest_tensor)
    assert peak[0] <= 1.05 * model_bytes


@pytest.mark.parametrize("kind", ["deepseek2-mla", "qwen2"])
def test_ollama_layout_is_llama_cpp_load_order_and_idempotent(make_gguf, tmp_path, kind):
    """The exact rules; tests/test_canonical_copy.py checks the bytes against llama.cpp's quantizer."""
    shards = make_gguf(kind, "q8_0", shards=3)
    out = merge_shards(shards[0], tmp_path / "canon.gguf", layout="ollama", compute_sha256=True)
    header = read_file_header(out.path)
    names = [t.name for t in header.tensors]
    assert names[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    blocks = [n for n in names if n.startswith("blk.")]
    assert names[3:] == blocks == sorted(blocks, key=lambda n: (int(n.split(".")[1]), n.encode()))
    keys = list(header.kv)
    source_keys = [k for k in read_file_header(shards[0]).kv if not k.startswith("split.")]
    assert source_keys.index("general.quantization_version") < len(source_keys) - 2, "the input has it mid-header"
    moved = [k for k in source_keys if k not in ("general.quantization_version", "general.file_type")]
    assert keys == [*moved, "general.quantization_version", "general.file_type"]
    assert header.kv["general.quantization_version"].vtype == header.kv["general.file_type"].vtype == 4  # u32
    assert header.get("general.quantization_version") == 2
    assert header.version == 3 and header.alignment == 32
    assert sorted(tensors_of([out.path])) == sorted(tensors_of(shards))
    assert greedy(out.path) == greedy(shards[0])
    again = merge_shards(out.path, tmp_path / "canon2.gguf", layout="ollama", compute_sha256=True)
    assert again.sha256 == out.sha256, "a canonical file rewrites to itself"


def test_trailing_hasher_hashes_what_was_written_in_any_steps_and_fails_on_a_short_file(tmp_path):
    data = random.Random(3).randbytes(3 << 20)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    with TrailingHasher(path, len(data), buffer_size=1 << 16) as hasher:
        for frontier in (0, 5, 70_000, 70_000, 2 << 20, 1_000_000):  # repeated and backward steps are ignored
            hasher.advance(frontier)
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    with TrailingHasher(path, len(data) + 10) as hasher, pytest.raises(OSError, match="ended at byte"):
        hasher.hexdigest()
