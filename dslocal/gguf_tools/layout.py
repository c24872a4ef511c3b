"""Encoding GGUF headers, and copying tensor bytes between files at disk speed.

Shared by merge and split: both write a new header and then move tensor data
from one file to another without holding it in memory. :class:`TrailingHasher`
hashes a file while it is being written, in a worker thread, so a merge's
sha256 costs no time of the copy's.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import re
import struct
import threading
from collections.abc import Callable, Iterable
from typing import Any

from dslocal.gguf_tools.header import (
    _SCALARS,
    GGUF_MAGIC,
    T_BOOL,
    T_STRING,
    T_UINT32,
    GGUFHeader,
    TensorInfo,
    align,
)

COPY_BUFFER = 8 << 20
KERNEL_CHUNK = 64 << 20  # bytes per copy_file_range call, so progress (and the hasher) can follow


def encode_string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("<Q", len(data)) + data


def encode_kv(key: str, vtype: int, value: Any) -> bytes:
    """One metadata entry of a scalar or string type."""
    body = encode_string(value) if vtype == T_STRING else struct.pack("<" + _SCALARS[vtype], value)
    return encode_string(key) + struct.pack("<I", vtype) + body


def encode_tensor_info(tensor: TensorInfo, offset: int) -> bytes:
    return (
        encode_string(tensor.name)
        + struct.pack("<I", len(tensor.shape))
        + struct.pack(f"<{len(tensor.shape)}Q", *tensor.shape)
        + struct.pack("<IQ", tensor.ggml_type, offset)
    )


def data_offsets(tensors: Iterable[TensorInfo], alignment: int) -> list[int]:
    """Offsets in a data section where each tensor starts at a multiple of ``alignment``."""
    offsets, position = [], 0
    for tensor in tensors:
        offsets.append(position)
        position = align(position + tensor.n_bytes, alignment)
    return offsets


def encode_header(
    version: int, n_kv: int, kv_bytes: bytes, tensors: list[TensorInfo], alignment: int
) -> tuple[bytes, list[int]]:
    """The header bytes, zero-padded to the data section, and each tensor's data offset."""
    offsets = data_offsets(tensors, alignment)
    parts = [GGUF_MAGIC, struct.pack("<IQQ", version, len(tensors), n_kv), kv_bytes]
    parts.extend(encode_tensor_info(t, off) for t, off in zip(tensors, offsets))
    header = b"".join(parts)
    return header + bytes(align(len(header), alignment) - len(header)), offsets


def section_size(tensors: list[TensorInfo], alignment: int) -> int:
    """Bytes of a data section that pads after every tensor (as llama.cpp and gguf-py write)."""
    return sum(align(t.n_bytes, alignment) for t in tensors)


# -- The canonical form: what llama.cpp's quantizer writes in COPY mode ------------------------
#
# Ollama >= 0.30 rewrites every imported GGUF with ``llama-quantize IN OUT COPY``
# (llama_model_quantize_impl in src/llama-quant.cpp, only_copy = true). What that writes:
#
# * GGUF version 3 (the output context is gguf_init_empty()), whatever the input's version.
# * Metadata: the first file's KVs in their order (gguf_set_kv), then gguf_set_val_u32 of
#   general.quantization_version (= GGML_QNT_VERSION, 2) and of general.file_type, and then
#   split.no / split.count / split.tensors.count removed. Every gguf_set_val_* removes the
#   key and appends it, so those two are always the last two keys, in that order; the
#   other KVs (quantize.imatrix.* too) keep their bytes and order.
# * general.file_type: the input's (a u32; any other type makes llama.cpp refuse the file),
#   or, when the file has none, the loader's guess ORed with LLAMA_FTYPE_GUESSED (1024).
# * Tensors: llama_model_loader's weights_map order (weight_name_comparer): the layer number
#   sscanf("blk.%d.") reads (-1 for every other name), then the name in byte order. Each
#   tensor info has ggml_n_dims() dimensions: trailing dimensions of 1 are dropped.
# * Alignment: 32 (GGUF_DEFAULT_ALIGNMENT) for the data section's start, every offset and
#   the zero padding after every tensor (the last one too), even when the input sets
#   general.alignment: that KV is copied as it is, so a file with general.alignment != 32
#   comes out unreadable (llama.cpp: "tensor ... has offset X, expected Y").
#
# canonical_kv() departs from llama.cpp only where llama.cpp would fail: general.alignment is
# written as 32, and a general.file_type that is not a u32 (llama.cpp refuses the file) as a
# u32 of its value, or of llama.cpp's guess when it is not an integer. The result is still a
# fixed point of COPY, so the server's rewrite reproduces it.

CANONICAL_VERSION = 3
CANONICAL_ALIGNMENT = 32
QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION
LLAMA_FTYPE_GUESSED = 1024
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
_QV_KEY, _FT_KEY, _ALIGN_KEY = "general.quantization_version", "general.file_type", "general.alignment"

# llama_model_loader: the most common tensor type -> llama_ftype (anything else: ALL_F32)
_FTYPE_OF_TYPE = {
    0: 0, 1: 1, 30: 32, 2: 2, 3: 3, 6: 8, 7: 9, 8: 7, 10: 10, 11: 12, 12: 15, 13: 17, 14: 18,
    34: 36, 35: 37, 16: 19, 17: 20, 22: 28, 18: 23, 19: 24, 29: 31, 20: 25, 23: 30, 21: 26,
    40: 39, 41: 40, 42: 41,
}
_BLOCK_LAYER = re.compile(rb"blk\.[ \t\n\v\f\r]*([+-]?[0-9]+)")  # what sscanf("blk.%d.") accepts


def block_layer(name: str) -> int:
    """The layer ``sscanf(name, "blk.%d.", &layer)`` reads, -1 when it reads none."""
    match = _BLOCK_LAYER.match(name.encode("utf-8"))
    return -1 if match is None else int(match[1])


def canonical_order(tensors: Iterable[TensorInfo]) -> list[TensorInfo]:
    """llama.cpp's weight_name_comparer order: non-block tensors first, then by layer, each by name."""
    return sorted(tensors, key=lambda t: (block_layer(t.name), t.name.encode("utf-8")))


def ggml_n_dims(shape: tuple[int, ...]) -> int:
    """ggml_n_dims(): the dimensions up to the last one that is not 1 (at least one)."""
    n = len(shape)
    while n > 1 and shape[n - 1] == 1:
        n -= 1
    return n


def canonical_tensor(tensor: TensorInfo) -> TensorInfo:
    return dataclasses.replace(tensor, shape=tensor.shape[: ggml_n_dims(tensor.shape)])


def guessed_file_type(ordered: Iterable[TensorInfo]) -> int:
    """llama_model_loader's file type for a file without general.file_type."""
    counts: dict[int, int] = {}
    best, best_count = 0, 0  # GGML_TYPE_F32
    for tensor in ordered:
        counts[tensor.ggml_type] = counts.get(tensor.ggml_type, 0) + 1
        if counts[tensor.ggml_type] > best_count:
            best, best_count = tensor.ggml_type, counts[tensor.ggml_type]
    return _FTYPE_OF_TYPE.get(best, 0) | LLAMA_FTYPE_GUESSED


def canonical_file_type(first: GGUFHeader, ordered: list[TensorInfo]) -> int:
    entry = first.kv.get(_FT_KEY)
    if entry is not None and entry.subtype is None and entry.vtype != T_BOOL and isinstance(entry.value, int):
        return entry.value & 0xFFFFFFFF
    return guessed_file_type(ordered)


def canonical_kv(first: GGUFHeader, ordered: list[TensorInfo]) -> tuple[bytes, int]:
    """The metadata bytes llama-quantize COPY writes for a set whose first file is ``first``, and their count."""
    parts: list[bytes] = []
    for entry in first.kv.values():
        if entry.key in SPLIT_KEYS or entry.key in (_QV_KEY, _FT_KEY):
            continue
        raw = first.raw[entry.start : entry.end]
        if entry.key == _ALIGN_KEY and entry.value != CANONICAL_ALIGNMENT:
            raw = encode_kv(_ALIGN_KEY, T_UINT32, CANONICAL_ALIGNMENT)
        parts.append(raw)
    parts.append(encode_kv(_QV_KEY, T_UINT32, QUANTIZATION_VERSION))
    parts.append(encode_kv(_FT_KEY, T_UINT32, canonical_file_type(first, ordered)))
    return b"".join(parts), len(parts)


def canonical_header(first: GGUFHeader, tensors: Iterable[TensorInfo]) -> tuple[bytes, list[TensorInfo], list[int]]:
    """The header (padded to the data section) llama-quantize COPY writes, its tensors in order, and their offsets."""
    ordered = [canonical_tensor(t) for t in canonical_order(tensors)]
    kv, n_kv = canonical_kv(first, ordered)
    header, offsets = encode_header(CANONICAL_VERSION, n_kv, kv, ordered, CANONICAL_ALIGNMENT)
    return header, ordered, offsets


# -- Copying ----------------------------------------------------------------------------------


def _kernel_copy(
    src: int, src_off: int, dst: int, dst_off: int, length: int, on_bytes: Callable[[int], None] | None = None
) -> int:
    """Copy with copy_file_range, falling back to sendfile; returns bytes copied (0 = not supported).

    Copies in chunks of :data:`KERNEL_CHUNK`, calling ``on_bytes`` after each.
    """
    copied = 0
    if hasattr(os, "copy_file_range"):
        try:
            while copied < length:
                n = os.copy_file_range(src, dst, min(KERNEL_CHUNK, length - copied), src_off + copied, dst_off + copied)
                if n == 0:
                    break
                copied += n
                if on_bytes is not None:
                    on_bytes(n)
            return copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
    if hasattr(os, "sendfile"):
        try:
            os.lseek(dst, dst_off + copied, os.SEEK_SET)
            while copied < length:
                n = os.sendfile(dst, src, src_off + copied, min(KERNEL_CHUNK, length - copied))
                if n == 0:
                    break
                copied += n
                if on_bytes is not None:
                    on_bytes(n)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
    return copied


def copy_range(
    src: int,
    src_off: int,
    dst: int,
    dst_off: int,
    length: int,
    *,
    hasher: Any = None,
    buffer: memoryview | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> None:
    """Copy ``length`` bytes between file descriptors at explicit offsets.

    Without a hasher the kernel copies (copy_file_range, sendfile); with one, the
    bytes pass through ``buffer`` (``readinto``) so they can be hashed on the way.
    Raises EOFError if the source ends early.
    """
    done = 0
    if hasher is None:
        done = _kernel_copy(src, src_off, dst, dst_off, length, on_bytes)
    if done >= length:
        return
    view = buffer if buffer is not None else memoryview(bytearray(COPY_BUFFER))
    while done < length:
        want = min(len(view), length - done)
        n = os.preadv(src, [view[:want]], src_off + done)
        if n <= 0:
            raise EOFError(f"source ended {length - done} bytes early")
        chunk = view[:n]
        if hasher is not None:
            hasher.update(chunk)
        written = 0
        while written < n:
            written += os.pwrite(dst, chunk[written:], dst_off + done + written)
        done += n
        if on_bytes is not None:
            on_bytes(n)


class TrailingHasher:
    """SHA-256 of a file of known size that is being written, computed in a worker thread.

    The writer calls :meth:`advance` with the length of the prefix that holds its final
    bytes; the worker reads (its own descriptor, from the page cache) and hashes up to
    there, then waits for more. hashlib and ``preadv`` release the GIL, so the hashing runs
    on another core while the copy goes on. :meth:`hexdigest` waits for the last byte.
    Use it as a context manager: leaving on an exception stops the worker.
    """

    def __init__(self, path: str | os.PathLike[str], size: int, *, buffer_size: int = COPY_BUFFER) -> None:
        self.size = size
        self._fd = os.open(path, os.O_RDONLY)
        self._hasher = hashlib.sha256()
        self._view = memoryview(bytearray(buffer_size))
        self._cond = threading.Condition()
        self._frontier = 0
        self._stopped = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dslocal-sha256", daemon=True)
        self._thread.start()

    def advance(self, frontier: int) -> None:
        """Bytes ``[0, frontier)`` of the file are final."""
        with self._cond:
            if frontier > self._frontier:
                self._frontier = min(frontier, self.size)
                self._cond.notify()

    def hexdigest(self) -> str:
        """Wait for the worker to hash the whole file (every byte must have been advanced past)."""
        self.advance(self.size)
        self._thread.join()
        self._close()
        if self._error is not None:
            raise self._error
        return self._hasher.hexdigest()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
        self._close()

    def __enter__(self) -> TrailingHasher:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None or self._thread.is_alive():
            self.stop()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _wait(self, position: int) -> int | None:
        with self._cond:
            while self._frontier <= position and not self._stopped:
                self._cond.wait()
            return None if self._stopped else self._frontier

    def _run(self) -> None:
        position = 0
        try:
            while position < self.size:
                end = self._wait(position)
                if end is None:
                    return
                while position < end:
                    n = os.preadv(self._fd, [self._view[: min(len(self._view), end - position)]], position)
                    if n <= 0:
                        raise OSError(errno.EIO, f"the file ended at byte {position:,} while being hashed")
                    self._hasher.update(self._view[:n])
                    position += n
        except BaseException as exc:  # handed to hexdigest()
            self._error = exc
