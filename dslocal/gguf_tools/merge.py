"""Merge a split GGUF set into one file, streaming, with constant memory, resumably.

Two layouts:

* ``"llama.cpp"``: what ``llama-gguf-split --merge`` writes: shard 1's metadata with
  ``split.count`` set to 0, every tensor in shard order. (Difference on purpose: the
  alignment is ``general.alignment`` when the file sets one; llama.cpp always pads to 32.)
* ``"ollama"``: the form Ollama >= 0.30 rewrites every import into (llama-quantize COPY,
  as observed on Ollama 0.32.15): no ``split.*`` keys, ``general.quantization_version``
  set, ``general.file_type`` moved last, tensors in llama.cpp's load order (output,
  output_norm, token_embd, then blocks in numeric order, names sorted within a block).
  Importing a file already in this form makes the server's rewrite reproduce the same
  digest, so no second copy survives.

Either way the work is crash-safe: the output is written under a hidden
``.NAME.partial`` name, fsynced, then renamed; a journal (``.NAME.merge.json``) records
progress at every shard boundary (and every GiB), so a rerun continues where it stopped.

With ``delete_shards`` the shards are consumed as they are merged: each shard's tensors
are copied from its end backwards, and after each tensor is durably in the output
(fdatasync) the shard is truncated to just before it, then deleted when only its header
is left. The extra disk needed at any moment is one tensor, so a merge needs about the
model's size in all, and a rerun after a crash reads what is left from the shards'
lengths. The output's sha256 is then computed in one pass at the end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from dslocal.errors import DiskError, InputError
from dslocal.fsutil import atomic_write_bytes, fsync_dir, remove_stale_temps
from dslocal.gguf_tools.header import (
    _MIN_SIZE,
    T_UINT32,
    GGUFFormatError,
    GGUFHeader,
    TensorInfo,
    align,
    read_file_header,
)
from dslocal.gguf_tools.layout import COPY_BUFFER, copy_range, encode_header, encode_kv, section_size
from dslocal.gguf_tools.shards import ShardSet, open_local_set
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes

JOURNAL_VERSION = 2
LAYOUTS = ("llama.cpp", "ollama")
CHECKPOINT_BYTES = 1 << 30
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True)
class MergeResult:
    path: Path
    size: int
    sha256: str | None
    shards: tuple[str, ...]
    tensor_count: int
    resumed_at_tensor: int  # 0 for a fresh merge
    deleted_shards: bool

    @property
    def resumed(self) -> bool:
        return self.resumed_at_tensor > 0


@dataclass
class _Journal:
    version: int
    layout: str
    shards: list[str]
    shard_tensors: list[list[str]]
    output_size: int
    done: int  # tensors durably written, in output order ("ordered" mode)
    mode: str = "ordered"  # "ordered", or "shrink" (delete_shards: shards truncated as they are consumed)


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


def journal_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.merge.json")


def _llama_cpp_kv(first: GGUFHeader) -> tuple[bytes, int]:
    kv = bytearray(first.raw[first.kv_start : first.ti_start])
    entry = first.kv.get("split.count")
    if entry is not None and entry.vtype in _MIN_SIZE and entry.subtype is None and isinstance(entry.value, int):
        start = entry.value_start - first.kv_start
        width = _MIN_SIZE[entry.vtype]
        kv[start : start + width] = bytes(width)  # split.count = 0, as llama-gguf-split writes
    return bytes(kv), len(first.kv)


def _ollama_kv(first: GGUFHeader) -> tuple[bytes, int]:
    parts: list[bytes] = []
    file_type = None
    has_qv = False
    for entry in first.kv.values():
        raw = first.raw[entry.start : entry.end]
        if entry.key in SPLIT_KEYS:
            continue
        if entry.key == "general.file_type":
            file_type = raw
            continue
        if entry.key == "general.quantization_version":
            has_qv = True
            raw = encode_kv(entry.key, T_UINT32, 2)
        parts.append(raw)
    if not has_qv:
        parts.append(encode_kv("general.quantization_version", T_UINT32, 2))
    if file_type is not None:
        parts.append(file_type)
    return b"".join(parts), len(parts)


def ollama_order(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """llama.cpp's load order, as Ollama's rewrite leaves the tensors."""
    head = {"output.weight": 0, "output_norm.weight": 1, "token_embd.weight": 2}

    def key(t: TensorInfo) -> tuple:
        if t.name in head:
            return (0, head[t.name], 0, "")
        match = _BLOCK.match(t.name)
        if match:
            return (1, 0, int(match[1]), t.name)
        return (2, 0, 0, t.name)

    return sorted(tensors, key=key)


def output_header(shard_set: ShardSet, layout: str = "llama.cpp") -> tuple[bytes, list[TensorInfo], list[int]]:
    """The output file's header (padded to its data section), its tensors in order, and their offsets."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    first = shard_set.first
    tensors = [tensor for _, tensor in shard_set.tensors()]
    if layout == "ollama":
        kv, n_kv = _ollama_kv(first)
        tensors = ollama_order(tensors)
        alignment = 32
    else:
        kv, n_kv = _llama_cpp_kv(first)
        alignment = first.alignment
    header, offsets = encode_header(first.version, n_kv, kv, tensors, alignment)
    return header, tensors, offsets


def merged_header(shard_set: ShardSet) -> tuple[bytes, list[TensorInfo], list[int]]:
    return output_header(shard_set, "llama.cpp")


def _load_journal(output: Path) -> _Journal | None:
    path = journal_path(output)
    try:
        journal = _Journal(**json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(
            f"the merge journal {path} is unreadable ({exc})",
            f"delete {path} and {partial_path(output)} to start the merge over",
        ) from None
    return journal if journal.version == JOURNAL_VERSION else None


def _save_journal(output: Path, journal: _Journal) -> None:
    atomic_write_bytes(journal_path(output), json.dumps(asdict(journal)).encode())


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
    largest = max((t.n_bytes for _, t in shard_set.tensors()), default=0)
    return header_size + align(largest, alignment)


def _start(shard_set: ShardSet, output: Path, layout: str, delete_shards: bool, check_space: bool) -> _Journal:  # noqa: C901
    header, tensors, _ = output_header(shard_set, layout)
    output_size = len(header) + section_size(tensors, 32 if layout == "ollama" else shard_set.first.alignment)
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
        layout=layout,
        shards=[str(Path(f).absolute()) for f in shard_set.files],
        shard_tensors=[[t.name for t in h.tensors] for h in shard_set.headers],
        output_size=output_size,
        done=0,
        mode="shrink" if delete_shards else "ordered",
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


def _shrink_merge(output: Path, journal: _Journal, out: GGUFHeader, progress: ProgressSink) -> int:
    """Copy each shard's tensors from its end backwards, truncating the shard behind each one.

    Returns how many tensors an earlier, interrupted run had already moved.
    """
    by_name = {t.name: t for t in out.tensors}
    total = out.tensor_bytes
    done_bytes = 0
    already = 0
    view = memoryview(bytearray(COPY_BUFFER))
    fd = os.open(partial_path(output), os.O_RDWR)
    try:
        for shard, names in zip(journal.shards, journal.shard_tensors):
            path = Path(shard)
            if not path.exists():
                done_bytes += sum(by_name[n].n_bytes for n in names)
                already += len(names)
                continue
            header = read_file_header(path, check_size=False)
            if [t.name for t in header.tensors] != names:
                raise GGUFFormatError(
                    f"{shard} no longer matches the interrupted merge into {output.name}",
                    f"delete {partial_path(output)} and {journal_path(output)} to start over",
                )
            size = path.stat().st_size
            src = os.open(path, os.O_RDONLY)
            try:
                for tensor in sorted(header.tensors, key=lambda t: t.offset, reverse=True):
                    start = header.data_offset + tensor.offset
                    if start + tensor.n_bytes <= size:
                        copy_range(src, start, fd, out.data_offset + by_name[tensor.name].offset, tensor.n_bytes, buffer=view)
                        os.fdatasync(fd)  # durable in the output before it leaves the shard
                        os.truncate(path, start)
                        size = start
                    else:
                        already += 1
                    done_bytes += tensor.n_bytes
                    progress(Progress("merge", done_bytes, total, path.name))
            finally:
                os.close(src)
            path.unlink()
            fsync_dir(path.parent)
            progress(Progress("merge:deleted", done_bytes, total, path.name))
        os.fsync(fd)
    finally:
        os.close(fd)
    return already


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    view = memoryview(bytearray(COPY_BUFFER))
    fd = os.open(path, os.O_RDONLY)
    try:
        _hash_prefix(fd, os.fstat(fd).st_size, hasher, view)
    finally:
        os.close(fd)
    return hasher.hexdigest()


def _ordered_merge(
    output: Path, journal: _Journal, out: GGUFHeader, compute_sha256: bool, progress: ProgressSink
) -> tuple[str | None, int]:
    """Copy tensors in output order, hashing on the way; returns (sha256, tensors an earlier run had done)."""
    partial = partial_path(output)
    remaining = [set(names) for names in journal.shard_tensors]
    owner = {name: k for k, names in enumerate(journal.shard_tensors) for name in names}
    for tensor in out.tensors[: journal.done]:
        remaining[owner[tensor.name]].discard(tensor.name)
    headers: dict[int, GGUFHeader] = {}
    for k, shard in enumerate(journal.shards):
        if remaining[k]:
            header = read_file_header(shard)
            if {t.name for t in header.tensors} != set(journal.shard_tensors[k]):
                raise GGUFFormatError(
                    f"{shard} no longer matches the interrupted merge into {output.name}",
                    f"delete {partial} and {journal_path(output)} to start over",
                )
            headers[k] = header
    sources = {t.name: (k, t) for k, h in headers.items() for t in h.tensors}
    resumed_at = journal.done
    total_bytes = out.tensor_bytes
    done_bytes = sum(t.n_bytes for t in out.tensors[:resumed_at])
    hasher = hashlib.sha256() if compute_sha256 else None
    view = memoryview(bytearray(COPY_BUFFER))
    fds: dict[int, int] = {}

    fd = os.open(partial, os.O_RDWR)
    try:
        if hasher is not None:
            prefix = out.data_offset + out.tensors[resumed_at].offset if resumed_at < len(out.tensors) else journal.output_size
            _hash_prefix(fd, prefix, hasher, view)
        since_checkpoint = 0
        for i in range(resumed_at, len(out.tensors)):
            dst = out.tensors[i]
            k, src = sources[dst.name]
            if k not in fds:
                fds[k] = os.open(journal.shards[k], os.O_RDONLY)

            def advance(n: int, name: str = Path(journal.shards[k]).name) -> None:
                nonlocal done_bytes
                done_bytes += n
                progress(Progress("merge", done_bytes, total_bytes, name))

            try:
                copy_range(fds[k], headers[k].data_offset + src.offset, fd, out.data_offset + dst.offset,
                           src.n_bytes, hasher=hasher, buffer=view, on_bytes=advance)
            except EOFError:
                raise GGUFFormatError(f"{journal.shards[k]} ended before its tensor data did", "download it again") from None
            if hasher is not None:
                hasher.update(bytes(align(dst.n_bytes, out.alignment) - dst.n_bytes))
            remaining[k].discard(dst.name)
            since_checkpoint += dst.n_bytes
            if not remaining[k] or since_checkpoint >= CHECKPOINT_BYTES:
                os.fsync(fd)
                journal.done = i + 1
                _save_journal(output, journal)
                since_checkpoint = 0
            if not remaining[k]:
                os.close(fds.pop(k))
        os.fsync(fd)
    finally:
        os.close(fd)
        for handle in fds.values():
            os.close(handle)
    return (hasher.hexdigest() if hasher is not None else None), resumed_at


@contextlib.contextmanager
def _resumable_when_the_disk_fills(folder: Path):
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskError(
                f"the disk filled up while merging into {folder}",
                "free some space and rerun the same command: the merge continues where it stopped",
            ) from None
        raise


def merge_shards(
    any_shard: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    force: bool = False,
    delete_shards: bool = False,
    compute_sha256: bool = False,
    layout: str = "llama.cpp",
    progress: ProgressSink = null_sink,
    check_space: bool = True,
) -> MergeResult:
    """Merge the set ``any_shard`` belongs to into ``output``; see the module docstring."""
    output = Path(output).expanduser().absolute()
    if not output.parent.is_dir():
        raise InputError(f"the output folder {output.parent} does not exist", "create it, or choose another -o")
    journal = _load_journal(output)
    partial = partial_path(output)
    resuming = (
        journal is not None and partial.exists() and journal.layout == layout
        and journal.done < sum(len(names) for names in journal.shard_tensors)
        and journal.mode == ("shrink" if delete_shards else "ordered")
    )
    if not resuming:
        if output.exists() and not force:
            raise InputError(f"{output} already exists", "pass --force to replace it, or choose another -o")
        shard_set = open_local_set(any_shard)
        if str(output) in {str(Path(f).absolute()) for f in shard_set.files}:
            raise InputError(f"the output {output.name} would overwrite one of the shards", "choose another -o")
        journal = _start(shard_set, output, layout, delete_shards, check_space)
    assert journal is not None

    out = read_file_header(partial, check_size=False)
    with _resumable_when_the_disk_fills(output.parent):
        if journal.mode == "shrink":
            already = _shrink_merge(output, journal, out, progress)
            digest = _hash_file(partial) if compute_sha256 else None
        else:
            digest, already = _ordered_merge(output, journal, out, compute_sha256, progress)
    os.replace(partial, output)
    fsync_dir(output.parent)
    journal_path(output).unlink(missing_ok=True)
    remove_stale_temps(journal_path(output))
    return MergeResult(
        path=output,
        size=journal.output_size,
        sha256=digest,
        shards=tuple(journal.shards),
        tensor_count=len(out.tensors),
        resumed_at_tensor=already,
        deleted_shards=journal.mode == "shrink",
    )
