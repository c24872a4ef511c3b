"""Merge a split GGUF set into one file, streaming, with constant memory, resumably.

Two layouts:

* ``"llama.cpp"``: what ``llama-gguf-split --merge`` writes: shard 1's metadata with
  ``split.count`` set to 0, every tensor in shard order. (Difference on purpose: the
  alignment is ``general.alignment`` when the file sets one; llama.cpp always pads to 32.)
* ``"ollama"``: byte for byte what ``llama-quantize IN OUT COPY`` writes, the rewrite that
  Ollama >= 0.30 puts every imported GGUF through (the rules, read from llama.cpp's
  source and checked against its quantizer by ``tests/test_canonical_copy.py``, are in
  :mod:`dslocal.gguf_tools.layout`): GGUF version 3; shard 1's KVs in their order minus
  ``split.*``, ``general.quantization_version`` and ``general.file_type``, then those two
  appended, in that order, as u32; tensors in llama.cpp's load order (every non-block
  tensor first, by name in byte order, then ``blk.N`` by N, by name within a block),
  trailing dimensions of 1 dropped, everything aligned and padded to 32. Importing a
  file in this form makes the server's rewrite reproduce it, digest and all, so no second
  copy survives. Two departures, where llama.cpp would write an unreadable file or none:
  ``general.alignment`` is written as 32, and a ``general.file_type`` that is not a u32
  as a u32.

Either way the work is crash-safe: the output is written under a hidden
``.NAME.partial`` name, fsynced, then renamed; a journal (``.NAME.merge.json``) records
progress at every shard boundary (and every GiB), so a rerun continues where it stopped.

With ``delete_shards`` the shards are consumed as they are merged: each shard's tensors
are copied from its end backwards, and after each tensor is durably in the output
(fdatasync) the shard is truncated to just before it, then deleted when only its header
is left. The extra disk needed at any moment is one tensor, so a merge needs about the
model's size in all, and a rerun after a crash reads what is left from the shards'
lengths. The shards are taken by the place of their earliest tensor in the output (shard
order for the llama.cpp layout), so the hash can follow sooner.

Tensor data is copied by the kernel (``copy_file_range``). With ``compute_sha256`` a
worker thread (:class:`~dslocal.gguf_tools.layout.TrailingHasher`) hashes the output
file in order, reading each byte once everything before it is final: right behind the
copy in the default mode; in the shrinking mode, as far as the tensors done so far reach
from the start, the rest at the end. A resumed merge hashes the whole output the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from dslocal.errors import DiskError, InputError
from dslocal.fsutil import atomic_write_bytes, fsync_dir, remove_stale_temps
from dslocal.gguf_tools.header import (
    _MIN_SIZE,
    GGUFFormatError,
    GGUFHeader,
    TensorInfo,
    align,
    read_file_header,
)
from dslocal.gguf_tools.layout import (
    CANONICAL_ALIGNMENT,
    COPY_BUFFER,
    SPLIT_KEYS,
    TrailingHasher,
    canonical_header,
    canonical_order,
    copy_range,
    encode_header,
    section_size,
)
from dslocal.gguf_tools.shards import ShardSet, open_local_set
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes

JOURNAL_VERSION = 2
LAYOUTS = ("llama.cpp", "ollama")
CHECKPOINT_BYTES = 1 << 30


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


def ollama_order(tensors: list[TensorInfo]) -> list[TensorInfo]:
    """llama.cpp's load order (weight_name_comparer), as Ollama's rewrite leaves the tensors."""
    return canonical_order(tensors)


def output_alignment(shard_set: ShardSet, layout: str) -> int:
    return CANONICAL_ALIGNMENT if layout == "ollama" else shard_set.first.alignment


def output_header(shard_set: ShardSet, layout: str = "llama.cpp") -> tuple[bytes, list[TensorInfo], list[int]]:
    """The output file's header (padded to its data section), its tensors in order, and their offsets."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    first = shard_set.first
    tensors = [tensor for _, tensor in shard_set.tensors()]
    if layout == "ollama":
        return canonical_header(first, tensors)
    kv, n_kv = _llama_cpp_kv(first)
    header, offsets = encode_header(first.version, n_kv, kv, tensors, first.alignment)
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


def required_bytes(
    shard_set: ShardSet, header_size: int, output_dir: Path, delete_shards: bool, alignment: int | None = None
) -> int:
    """Free space the merge needs in ``output_dir`` (``alignment``: the output's, default the set's)."""
    alignment = alignment or shard_set.first.alignment
    total = header_size + section_size([t for _, t in shard_set.tensors()], alignment)
    if not delete_shards:
        return total
    out_dev = os.stat(output_dir).st_dev
    if any(os.stat(f).st_dev != out_dev for f in shard_set.files):
        return total  # deleting shards on another disk frees nothing here
    largest = max((t.n_bytes for _, t in shard_set.tensors()), default=0)
    return header_size + align(largest, alignment)


def _check_space(shard_set: ShardSet, header_size: int, output: Path, delete_shards: bool, alignment: int) -> None:
    need = required_bytes(shard_set, header_size, output.parent, delete_shards, alignment)
    free = _free_bytes(output.parent)
    if need > free:
        raise DiskError(
            f"merging needs {format_bytes(need)} free in {output.parent}, there is {format_bytes(free)}",
            "free some space, write elsewhere with -o, or add --delete-shards to need only the largest shard",
        )


def _start(shard_set: ShardSet, output: Path, layout: str, delete_shards: bool, check_space: bool) -> _Journal:
    header, tensors, _ = output_header(shard_set, layout)
    alignment = output_alignment(shard_set, layout)
    output_size = len(header) + section_size(tensors, alignment)
    if check_space:
        _check_space(shard_set, len(header), output, delete_shards, alignment)
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


class _Frontier:
    """Which output tensors are complete; tells the hasher how long a prefix of the file is final."""

    def __init__(self, out: GGUFHeader, output_size: int, hasher: TrailingHasher | None) -> None:
        self._starts = [out.data_offset + t.offset for t in out.tensors]
        self._done = [False] * len(self._starts)
        self._next = 0
        self._size = output_size
        self._hasher = hasher
        self._publish()  # the header and its padding were written (and synced) by _start

    def _publish(self, extra: int = 0) -> None:
        if self._hasher is not None:
            start = self._starts[self._next] if self._next < len(self._starts) else self._size
            self._hasher.advance(start + extra)

    def writing(self, index: int, written: int) -> None:
        """``written`` bytes of tensor ``index`` (from its start) are in the file."""
        if index == self._next:
            self._publish(written)

    def complete(self, index: int) -> None:
        self._done[index] = True
        while self._next < len(self._done) and self._done[self._next]:
            self._next += 1
        self._publish()


def _hashing(partial: Path, journal: _Journal, compute_sha256: bool) -> contextlib.AbstractContextManager:
    return TrailingHasher(partial, journal.output_size) if compute_sha256 else contextlib.nullcontext()


def _mismatch(shard: str | Path, output: Path) -> GGUFFormatError:
    return GGUFFormatError(
        f"{shard} no longer matches the interrupted merge into {output.name}",
        f"delete {partial_path(output)} and {journal_path(output)} to start over",
    )


def _shrink_shard(
    path: Path, fd: int, out: GGUFHeader, index: dict[str, int], frontier: _Frontier, view: memoryview,
    on_tensor: Callable[[int], None],
) -> int:
    """Move one shard's tensors into the output from its end backwards; returns how many were moved before."""
    header = read_file_header(path, check_size=False)
    size = path.stat().st_size
    already = 0
    src = os.open(path, os.O_RDONLY)
    try:
        for tensor in sorted(header.tensors, key=lambda t: t.offset, reverse=True):
            i = index[tensor.name]
            start = header.data_offset + tensor.offset
            if start + tensor.n_bytes <= size:
                written = 0

                def advance(n: int, i: int = i) -> None:
                    nonlocal written
                    written += n
                    frontier.writing(i, written)

                copy_range(src, start, fd, out.data_offset + out.tensors[i].offset, tensor.n_bytes,
                           buffer=view, on_bytes=advance)
                os.fdatasync(fd)  # durable in the output before it leaves the shard
                os.truncate(path, start)
                size = start
            else:
                already += 1
            frontier.complete(i)
            on_tensor(tensor.n_bytes)
    finally:
        os.close(src)
    return already


def _hash_friendly_order(journal: _Journal, index: dict[str, int]) -> list[tuple[str, list[str]]]:
    """The shards, the one holding the output's earliest tensor first, so the hash can follow soonest.

    Shard order for the llama.cpp layout; the same on every run, so a rerun finds what it left.
    """
    pairs = list(zip(journal.shards, journal.shard_tensors))
    return sorted(pairs, key=lambda pair: min((index[n] for n in pair[1]), default=len(index)))


def _shrink_merge(
    output: Path, journal: _Journal, out: GGUFHeader, compute_sha256: bool, progress: ProgressSink
) -> tuple[str | None, int]:
    """Copy each shard's tensors from its end backwards, truncating the shard behind each one.

    Returns (sha256, how many tensors an earlier, interrupted run had already moved).
    """
    index = {t.name: i for i, t in enumerate(out.tensors)}
    total = out.tensor_bytes
    done_bytes = 0
    already = 0
    view = memoryview(bytearray(COPY_BUFFER))
    partial = partial_path(output)
    with _hashing(partial, journal, compute_sha256) as hasher:
        frontier = _Frontier(out, journal.output_size, hasher)
        fd = os.open(partial, os.O_RDWR)
        try:
            for shard, names in _hash_friendly_order(journal, index):
                path = Path(shard)
                if not path.exists():
                    for name in names:
                        frontier.complete(index[name])
                    done_bytes += sum(out.tensors[index[n]].n_bytes for n in names)
                    already += len(names)
                    continue
                if [t.name for t in read_file_header(path, check_size=False).tensors] != names:
                    raise _mismatch(shard, output)

                def on_tensor(n: int, name: str = path.name) -> None:
                    nonlocal done_bytes
                    done_bytes += n
                    progress(Progress("merge", done_bytes, total, name))

                already += _shrink_shard(path, fd, out, index, frontier, view, on_tensor)
                path.unlink()
                fsync_dir(path.parent)
                progress(Progress("merge:deleted", done_bytes, total, path.name))
            os.fsync(fd)
        finally:
            os.close(fd)
        digest = hasher.hexdigest() if hasher is not None else None
    return digest, already


@dataclass(frozen=True)
class _Sources:
    """Where the tensors still to copy are: shard index and tensor info in that shard, by name."""

    headers: dict[int, GGUFHeader]
    tensors: dict[str, tuple[int, TensorInfo]]
    remaining: list[set[str]]  # per shard, the names not yet durably in the output


def _open_sources(output: Path, journal: _Journal, out: GGUFHeader) -> _Sources:
    remaining = [set(names) for names in journal.shard_tensors]
    owner = {name: k for k, names in enumerate(journal.shard_tensors) for name in names}
    for tensor in out.tensors[: journal.done]:
        remaining[owner[tensor.name]].discard(tensor.name)
    headers: dict[int, GGUFHeader] = {}
    for k, shard in enumerate(journal.shards):
        if remaining[k]:
            header = read_file_header(shard)
            if {t.name for t in header.tensors} != set(journal.shard_tensors[k]):
                raise _mismatch(shard, output)
            headers[k] = header
    tensors = {t.name: (k, t) for k, h in headers.items() for t in h.tensors}
    return _Sources(headers, tensors, remaining)


class _Checkpointer:
    """Makes the output durable and journals it in a worker thread, while the copy goes on.

    ``request(n)`` asks for a journal saying the first ``n`` tensors are done; the worker
    fsyncs the output (which covers every byte written before the call) and only then saves
    that journal. Requests that pile up while an fsync runs are folded into the latest.
    """

    def __init__(self, output: Path, journal: _Journal, fd: int) -> None:
        self._output, self._journal, self._fd = output, journal, fd
        self._cond = threading.Condition()
        self._pending: int | None = None
        self._closing = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dslocal-checkpoint", daemon=True)
        self._thread.start()

    def request(self, done: int) -> None:
        with self._cond:
            if self._error is not None:
                raise self._error
            self._pending = done
            self._cond.notify()

    def close(self) -> None:
        """Wait for the requested checkpoints; raises what the worker met."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                done, self._pending = self._pending, None
            if done is None:
                return
            try:
                os.fsync(self._fd)
                _save_journal(self._output, dataclasses.replace(self._journal, done=done))
            except BaseException as exc:  # handed to request() / close()
                with self._cond:
                    self._error = exc
                return


def _copy_ordered(
    output: Path, fd: int, journal: _Journal, out: GGUFHeader, sources: _Sources, frontier: _Frontier,
    progress: ProgressSink,
) -> None:
    """Copy the tensors from ``journal.done`` on, in output order, journaling at shard ends and every GiB."""
    checkpoints = _Checkpointer(output, journal, fd)
    try:
        _copy_tensors(fd, journal, out, sources, frontier, checkpoints, progress)
    finally:
        checkpoints.close()


def _copy_tensors(
    fd: int, journal: _Journal, out: GGUFHeader, sources: _Sources, frontier: _Frontier,
    checkpoints: _Checkpointer, progress: ProgressSink,
) -> None:
    total_bytes = out.tensor_bytes
    done_bytes = sum(t.n_bytes for t in out.tensors[: journal.done])
    view = memoryview(bytearray(COPY_BUFFER))
    fds: dict[int, int] = {}
    since_checkpoint = 0
    try:
        for i in range(journal.done, len(out.tensors)):
            dst = out.tensors[i]
            k, src = sources.tensors[dst.name]
            if k not in fds:
                fds[k] = os.open(journal.shards[k], os.O_RDONLY)
            written = 0

            def advance(n: int, i: int = i, name: str = Path(journal.shards[k]).name) -> None:
                nonlocal done_bytes, written
                done_bytes += n
                written += n
                frontier.writing(i, written)
                progress(Progress("merge", done_bytes, total_bytes, name))

            try:
                copy_range(fds[k], sources.headers[k].data_offset + src.offset, fd, out.data_offset + dst.offset,
                           src.n_bytes, buffer=view, on_bytes=advance)
            except EOFError:
                raise GGUFFormatError(f"{journal.shards[k]} ended before its tensor data did", "download it again") from None
            frontier.complete(i)
            sources.remaining[k].discard(dst.name)
            since_checkpoint += dst.n_bytes
            if not sources.remaining[k] or since_checkpoint >= CHECKPOINT_BYTES:
                checkpoints.request(i + 1)
                since_checkpoint = 0
            if not sources.remaining[k]:
                os.close(fds.pop(k))
    finally:
        for handle in fds.values():
            os.close(handle)


def _ordered_merge(
    output: Path, journal: _Journal, out: GGUFHeader, compute_sha256: bool, progress: ProgressSink
) -> tuple[str | None, int]:
    """Copy tensors in output order, hashing behind the copy; returns (sha256, tensors an earlier run had done)."""
    partial = partial_path(output)
    sources = _open_sources(output, journal, out)
    resumed_at = journal.done
    with _hashing(partial, journal, compute_sha256) as hasher:
        frontier = _Frontier(out, journal.output_size, hasher)
        for i in range(resumed_at):
            frontier.complete(i)
        fd = os.open(partial, os.O_RDWR)
        try:
            _copy_ordered(output, fd, journal, out, sources, frontier, progress)
            os.fsync(fd)
        finally:
            os.close(fd)
        digest = hasher.hexdigest() if hasher is not None else None
    return digest, resumed_at


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
        merge = _shrink_merge if journal.mode == "shrink" else _ordered_merge
        digest, already = merge(output, journal, out, compute_sha256, progress)
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
