"""Merge a split GGUF set into one file, streaming, with constant memory, resumably.

The output is what ``llama-gguf-split --merge`` writes: shard 1's metadata with
``split.count`` set to 0, every tensor info in shard order, each tensor's data at a
multiple of the alignment with zero padding. Differences on purpose: the alignment
is ``general.alignment`` when the file sets one (llama.cpp always pads to 32), and
the work is crash-safe:

* the output is written under a hidden ``.NAME.partial`` name, fsynced, then renamed;
* a journal (``.NAME.merge.json``) records each shard once its bytes are durable, so
  a rerun after a crash continues with the next shard;
* with ``delete_shards`` a shard is deleted only after that, so the extra disk
  needed at any moment is one shard plus the header.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from dslocal.errors import DiskError, InputError
from dslocal.fsutil import atomic_write_bytes, fsync_dir
from dslocal.gguf_tools.header import (
    _MIN_SIZE,
    T_BOOL,
    T_FLOAT32,
    T_FLOAT64,
    GGUFFormatError,
    GGUFHeader,
    TensorInfo,
    align,
    read_file_header,
)
from dslocal.gguf_tools.layout import COPY_BUFFER, copy_range, encode_header, section_size
from dslocal.gguf_tools.shards import ShardSet, open_local_set
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes

JOURNAL_VERSION = 1


@dataclass(frozen=True)
class MergeResult:
    path: Path
    size: int
    sha256: str | None
    shards: tuple[str, ...]
    tensor_count: int
    resumed_at_shard: int  # 0 for a fresh merge
    deleted_shards: bool


@dataclass
class _Journal:
    version: int
    shards: list[str]
    tensor_counts: list[int]
    output_size: int
    done: int


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


def journal_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.merge.json")


def merged_header(shard_set: ShardSet) -> tuple[bytes, list[TensorInfo], list[int]]:
    """The merged file's header (padded to its data section), its tensors, and their offsets."""
    first = shard_set.first
    kv = bytearray(first.raw[first.kv_start : first.ti_start])
    entry = first.kv.get("split.count")
    if entry is not None and entry.vtype in _MIN_SIZE and entry.vtype not in (T_FLOAT32, T_FLOAT64, T_BOOL, 8, 9):
        start = entry.value_start - first.kv_start
        width = _MIN_SIZE[entry.vtype]
        kv[start : start + width] = bytes(width)  # split.count = 0, as llama-gguf-split writes
    tensors = [tensor for _, tensor in shard_set.tensors()]
    header, offsets = encode_header(first.version, len(first.kv), bytes(kv), tensors, first.alignment)
    return header, tensors, offsets


def _load_journal(output: Path) -> _Journal | None:
    path = journal_path(output)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        journal = _Journal(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"the merge journal {path} is unreadable ({exc})",
            f"delete {path} and {partial_path(output)} to start the merge over",
        ) from None
    if journal.version != JOURNAL_VERSION:
        return None
    return journal


def _save_journal(output: Path, journal: _Journal) -> None:
    atomic_write_bytes(journal_path(output), json.dumps(asdict(journal), indent=1).encode())


def _free_bytes(folder: Path) -> int:
    return shutil.disk_usage(folder).free


def required_bytes(shard_set: ShardSet, header_size: int, output_dir: Path, delete_shards: bool) -> int:
    """Free space the merge needs in ``output_dir``."""
    alignment = shard_set.first.alignment
    total = header_size + section_size([t for _, t in shard_set.tensors()], alignment)
    if not delete_shards:
        return total
    out_dev = os.stat(output_dir).st_dev
    if any(os.stat(f).st_dev != out_dev for f in shard_set.files):
        return total  # deleting shards on another disk frees nothing here
    largest = max(section_size(list(h.tensors), alignment) for h in shard_set.headers)
    return header_size + largest


def _start(shard_set: ShardSet, output: Path, delete_shards: bool, check_space: bool) -> _Journal:
    header, tensors, _ = merged_header(shard_set)
    output_size = len(header) + section_size(tensors, shard_set.first.alignment)
    if check_space:
        need = required_bytes(shard_set, len(header), output.parent, delete_shards)
        free = _free_bytes(output.parent)
        if need > free:
            raise DiskError(
                f"merging needs {format_bytes(need)} free in {output.parent}, there is {format_bytes(free)}",
                "free some space, write elsewhere with -o, or add --delete-shards to need only the largest shard",
            )
    partial = partial_path(output)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, header, 0)
        os.ftruncate(fd, output_size)
        if not delete_shards and hasattr(os, "posix_fallocate"):
            with contextlib.suppress(OSError):
                os.posix_fallocate(fd, 0, output_size)  # reserve the space up front where supported
        os.fsync(fd)
    finally:
        os.close(fd)
    journal = _Journal(
        version=JOURNAL_VERSION,
        shards=[str(Path(f).absolute()) for f in shard_set.files],
        tensor_counts=[len(h.tensors) for h in shard_set.headers],
        output_size=output_size,
        done=0,
    )
    _save_journal(output, journal)
    fsync_dir(output.parent)
    return journal


def _hash_prefix(fd: int, length: int, hasher: hashlib._Hash, view: memoryview) -> None:
    done = 0
    while done < length:
        n = os.preadv(fd, [view[: min(len(view), length - done)]], done)
        if n <= 0:
            raise GGUFFormatError("the partial merge output is shorter than its journal says", "start the merge over")
        hasher.update(view[:n])
        done += n


def _check_slice(shard: str, header: GGUFHeader, expected: tuple[TensorInfo, ...], output: Path) -> None:
    got = [(t.name, t.shape, t.ggml_type) for t in header.tensors]
    want = [(t.name, t.shape, t.ggml_type) for t in expected]
    if got != want:
        raise GGUFFormatError(
            f"{shard} no longer matches the interrupted merge into {output.name}",
            f"delete {partial_path(output)} and {journal_path(output)} to start over",
        )


def merge_shards(
    any_shard: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    force: bool = False,
    delete_shards: bool = False,
    compute_sha256: bool = False,
    progress: ProgressSink = null_sink,
    check_space: bool = True,
) -> MergeResult:
    """Merge the set ``any_shard`` belongs to into ``output``; see the module docstring."""
    output = Path(output).expanduser().absolute()
    if not output.parent.is_dir():
        raise InputError(f"the output folder {output.parent} does not exist", "create it, or choose another -o")
    journal = _load_journal(output)
    partial = partial_path(output)
    resuming = journal is not None and partial.exists() and journal.done < len(journal.shards)
    if not resuming:
        if output.exists() and not force:
            raise InputError(f"{output} already exists", "pass --force to replace it, or choose another -o")
        shard_set = open_local_set(any_shard)
        if str(output) in {str(Path(f).absolute()) for f in shard_set.files}:
            raise InputError(f"the output {output.name} would overwrite one of the shards", "choose another -o")
        journal = _start(shard_set, output, delete_shards, check_space)
    assert journal is not None

    merged = read_file_header(partial, check_size=False)
    alignment = merged.alignment
    total_bytes = merged.tensor_bytes
    resumed_at = journal.done
    first_index = sum(journal.tensor_counts[:resumed_at])
    done_bytes = sum(t.n_bytes for t in merged.tensors[:first_index])
    hasher = hashlib.sha256() if compute_sha256 else None
    view = memoryview(bytearray(COPY_BUFFER))

    fd = os.open(partial, os.O_RDWR)
    try:
        if hasher is not None:
            resume_offset = (
                merged.data_offset + merged.tensors[first_index].offset
                if first_index < len(merged.tensors)
                else journal.output_size
            )
            _hash_prefix(fd, resume_offset, hasher, view)
        start = first_index
        for k in range(resumed_at, len(journal.shards)):
            shard = journal.shards[k]
            header = read_file_header(shard)
            expected = merged.tensors[start : start + journal.tensor_counts[k]]
            _check_slice(shard, header, expected, output)
            src = os.open(shard, os.O_RDONLY)
            try:
                for src_t, dst_t in zip(header.tensors, expected):

                    def advance(n: int, name: str = Path(shard).name) -> None:
                        nonlocal done_bytes
                        done_bytes += n
                        progress(Progress("merge", done_bytes, total_bytes, name))

                    copy_range(
                        src, header.data_offset + src_t.offset, fd, merged.data_offset + dst_t.offset,
                        src_t.n_bytes, hasher=hasher, buffer=view, on_bytes=advance,
                    )
                    if hasher is not None:
                        hasher.update(bytes(align(src_t.n_bytes, alignment) - src_t.n_bytes))
            except EOFError:
                raise GGUFFormatError(f"{shard} ended before its tensor data did", "download it again") from None
            finally:
                os.close(src)
            start += journal.tensor_counts[k]
            os.fsync(fd)
            journal.done = k + 1
            _save_journal(output, journal)
            if delete_shards:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(shard)
                fsync_dir(Path(shard).parent)
        os.fsync(fd)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskError(
                f"the disk filled up while merging into {output.parent}",
                "free some space and rerun the same command: the merge continues where it stopped",
            ) from None
        raise
    finally:
        os.close(fd)

    os.replace(partial, output)
    fsync_dir(output.parent)
    journal_path(output).unlink(missing_ok=True)
    return MergeResult(
        path=output,
        size=journal.output_size,
        sha256=hasher.hexdigest() if hasher is not None else None,
        shards=tuple(journal.shards),
        tensor_count=len(merged.tensors),
        resumed_at_shard=resumed_at,
        deleted_shards=delete_shards,
    )
