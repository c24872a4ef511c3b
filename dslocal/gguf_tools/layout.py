"""Encoding GGUF headers, and copying tensor bytes between files at disk speed.

Shared by merge and split: both write a new header and then move tensor data
from one file to another without holding it in memory.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterable
from typing import Any

from dslocal.gguf_tools.header import (
    _SCALARS,
    GGUF_MAGIC,
    T_STRING,
    TensorInfo,
    align,
)

COPY_BUFFER = 8 << 20


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


def _kernel_copy(src: int, src_off: int, dst: int, dst_off: int, length: int) -> int:
    """Copy with copy_file_range, falling back to sendfile; returns bytes copied (0 = not supported)."""
    copied = 0
    if hasattr(os, "copy_file_range"):
        try:
            while copied < length:
                n = os.copy_file_range(src, dst, length - copied, src_off + copied, dst_off + copied)
                if n == 0:
                    break
                copied += n
            return copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
                raise
    if hasattr(os, "sendfile"):
        try:
            os.lseek(dst, dst_off + copied, os.SEEK_SET)
            while copied < length:
                n = os.sendfile(dst, src, src_off + copied, length - copied)
                if n == 0:
                    break
                copied += n
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
        done = _kernel_copy(src, src_off, dst, dst_off, length)
        if on_bytes is not None and done:
            on_bytes(done)
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
