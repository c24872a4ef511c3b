"""Split one GGUF into a llama.cpp-style set (the reverse of merge), e.g. for FAT32 drives.

Shard 1 carries the model's metadata; every shard carries ``split.no`` (uint16,
0-based), ``split.count`` (uint16) and ``split.tensors.count`` (int32), and is named
``PREFIX-0000i-of-0000N.gguf``. Shards are written under temporary names and renamed
only when all of them are complete, so a crash leaves no set that looks whole.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import DiskError, InputError, UsageError
from dslocal.fsutil import fsync_dir
from dslocal.gguf_tools.header import (
    T_INT32,
    T_UINT16,
    T_UINT32,
    GGUFHeader,
    TensorInfo,
    align,
    read_file_header,
)
from dslocal.gguf_tools.layout import COPY_BUFFER, copy_range, encode_header, encode_kv, encode_tensor_info
from dslocal.gguf_tools.shards import parse_shard_name, shard_name
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes

SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
MAX_SHARDS = 99999


@dataclass(frozen=True)
class SplitResult:
    files: tuple[Path, ...]
    sizes: tuple[int, ...]


def _base_kv(header: GGUFHeader) -> tuple[bytes, int]:
    """The input's metadata without split.* keys, byte for byte."""
    parts = [header.raw[e.start : e.end] for e in header.kv.values() if e.key not in SPLIT_KEYS]
    return b"".join(parts), len(parts)


def _split_kv(no: int, count: int, total: int) -> bytes:
    return (
        encode_kv("split.no", T_UINT16, no)
        + encode_kv("split.count", T_UINT16, count)
        + encode_kv("split.tensors.count", T_INT32, total)
    )


def _header_size(kv_len: int, tensors: list[TensorInfo], alignment: int) -> int:
    return align(24 + kv_len + sum(len(encode_tensor_info(t, 0)) for t in tensors), alignment)


def plan_groups(
    header: GGUFHeader, max_size: int | None, max_tensors: int | None
) -> list[list[TensorInfo]]:
    """Group tensors in order so each shard file stays within the limits (header included).

    A single tensor larger than ``max_size`` gets a shard of its own.
    """
    base_kv, _ = _base_kv(header)
    split_len = len(_split_kv(0, 1, 0))
    extra_kv = len(encode_kv("general.alignment", T_UINT32, header.alignment)) if header.alignment != 32 else 0
    groups: list[list[TensorInfo]] = [[]]
    size = 0
    for tensor in header.tensors:
        group = groups[-1]
        kv_len = (len(base_kv) if len(groups) == 1 else extra_kv) + split_len
        padded = align(tensor.n_bytes, header.alignment)
        grown = _header_size(kv_len, [*group, tensor], header.alignment) + size + padded
        full = (max_tensors is not None and len(group) >= max_tensors) or (max_size is not None and grown > max_size)
        if group and full:
            groups.append([tensor])
            size = padded
        else:
            group.append(tensor)
            size += padded
    return groups


def split_file(
    source: str | os.PathLike[str],
    *,
    max_size: int | None = None,
    max_tensors: int | None = None,
    out_prefix: str | os.PathLike[str] | None = None,
    force: bool = False,
    progress: ProgressSink = null_sink,
) -> SplitResult:
    """Split ``source`` into ``OUT_PREFIX-0000i-of-0000N.gguf`` (default prefix: the input's stem)."""
    if max_size is None and max_tensors is None:
        raise UsageError("say how to split", "give --max-size (e.g. 48G) or --max-tensors")
    source = Path(source)
    header = read_file_header(source)
    declared = header.get("split.count", 0)
    if parse_shard_name(source.name) is not None and isinstance(declared, int) and declared > 1:
        raise InputError(f"{source.name} is already a shard of a {declared}-shard set", "merge the set first")
    groups = plan_groups(header, max_size, max_tensors)
    count = len(groups)
    if count > MAX_SHARDS:
        raise UsageError(f"that would make {count} shards", "raise --max-size or --max-tensors")
    prefix = Path(out_prefix) if out_prefix is not None else source.with_suffix("")
    prefix = prefix.expanduser().absolute()
    if not prefix.parent.is_dir():
        raise InputError(f"the output folder {prefix.parent} does not exist", "create it first")
    targets = [prefix.parent / shard_name(prefix.name, i + 1, count) for i in range(count)]
    existing = [t.name for t in targets if t.exists()]
    if existing and not force:
        raise InputError(f"{existing[0]} already exists", "pass --force to replace the set, or choose another prefix")
    if source.absolute() in targets:
        raise InputError("the split would overwrite its own input", "choose another prefix")

    base_kv, n_base = _base_kv(header)
    total = len(header.tensors)
    headers: list[bytes] = []
    for i, group in enumerate(groups):
        kv, n_kv = _split_kv(i, count, total), 3
        if i == 0:
            kv, n_kv = base_kv + kv, n_base + 3
        elif header.alignment != 32:
            kv, n_kv = encode_kv("general.alignment", T_UINT32, header.alignment) + kv, 4
        headers.append(encode_header(header.version, n_kv, kv, group, header.alignment)[0])
    sizes = [len(h) + sum(align(t.n_bytes, header.alignment) for t in g) for h, g in zip(headers, groups)]
    free = shutil.disk_usage(prefix.parent).free
    if sum(sizes) > free:
        raise DiskError(
            f"splitting needs {format_bytes(sum(sizes))} free in {prefix.parent}, there is {format_bytes(free)}",
            "free some space or write the shards elsewhere with --prefix",
        )

    temps = [t.with_name(f".{t.name}.partial") for t in targets]
    done_bytes, total_bytes = 0, header.tensor_bytes
    view = memoryview(bytearray(COPY_BUFFER))
    src = os.open(source, os.O_RDONLY)
    try:
        for temp, shard_header, group, size in zip(temps, headers, groups, sizes):
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.pwrite(fd, shard_header, 0)
                os.ftruncate(fd, size)
                position = len(shard_header)
                for tensor in group:
                    copy_range(src, header.data_offset + tensor.offset, fd, position, tensor.n_bytes, buffer=view)
                    position += align(tensor.n_bytes, header.alignment)
                    done_bytes += tensor.n_bytes
                    progress(Progress("split", done_bytes, total_bytes, temp.name[1:-8]))
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise
    finally:
        os.close(src)
    for temp, target in zip(temps, targets):
        os.replace(temp, target)
    fsync_dir(prefix.parent)
    return SplitResult(tuple(targets), tuple(sizes))
