"""Read a GGUF header (metadata and tensor infos) from any byte source, defensively.

Only the header is read: the key/value metadata and the tensor infos, never tensor
data. Every count and length is checked against what the file can hold before
anything is allocated, so a header that claims 2**60 entries fails at once. Every
problem is a :class:`GGUFFormatError` naming the file and the fix.

The layout is described in the GGUF spec (llama.cpp ``ggml/src/gguf.cpp``): magic
``GGUF``, version, tensor count, KV count, the KVs, the tensor infos, then the data
section at the next multiple of ``general.alignment`` (default 32).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dslocal.errors import InputError
from dslocal.gguf_tools.ggml_types import GGML_TYPES

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4
MAX_STRING = 256 << 20  # the largest string (a chat template, a token) we accept
MAX_ENTRIES_UNKNOWN_SIZE = 1 << 24  # cap on counts when the total size is unknown
MAX_ARRAY_DEPTH = 3

# GGUF value types
T_UINT8, T_INT8, T_UINT16, T_INT16, T_UINT32, T_INT32, T_FLOAT32, T_BOOL = range(8)
T_STRING, T_ARRAY, T_UINT64, T_INT64, T_FLOAT64 = 8, 9, 10, 11, 12
_SCALARS: dict[int, str] = {
    T_UINT8: "B", T_INT8: "b", T_UINT16: "H", T_INT16: "h", T_UINT32: "I", T_INT32: "i",
    T_FLOAT32: "f", T_BOOL: "?", T_UINT64: "Q", T_INT64: "q", T_FLOAT64: "d",
}
_MIN_SIZE: dict[int, int] = {**{t: struct.calcsize("<" + c) for t, c in _SCALARS.items()}, T_STRING: 8, T_ARRAY: 12}
VALUE_TYPE_NAMES = {
    T_UINT8: "uint8", T_INT8: "int8", T_UINT16: "uint16", T_INT16: "int16", T_UINT32: "uint32",
    T_INT32: "int32", T_FLOAT32: "float32", T_BOOL: "bool", T_STRING: "string", T_ARRAY: "array",
    T_UINT64: "uint64", T_INT64: "int64", T_FLOAT64: "float64",
}


class GGUFFormatError(InputError):
    """A file that is not a usable GGUF; the message names the file."""


class ByteSource(Protocol):
    """Random-access bytes: a local file, an HTTP resource, or memory."""

    name: str
    size: int | None

    def read_at(self, offset: int, length: int) -> bytes: ...


class BytesSource:
    def __init__(self, data: bytes, name: str = "<memory>", size: int | None = None) -> None:
        self.data = data
        self.name = name
        self.size = len(data) if size is None else size

    def read_at(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class FileSource:
    """A local file read with ``os.pread`` (no mmap: a header read costs a few MB, not the model)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise GGUFFormatError(f"{self.name}: no such file", "check the path") from None
        except IsADirectoryError:
            raise GGUFFormatError(f"{self.name} is a directory, not a GGUF file", "name a .gguf file") from None
        except OSError as exc:
            raise GGUFFormatError(f"cannot open {self.name}: {exc.strerror}", "check the file's permissions") from None
        self.size = os.fstat(self._fd).st_size

    def read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class KVEntry:
    key: str
    vtype: int
    value: Any
    start: int  # offset of the entry (its key length) in the file
    value_start: int  # offset of the value (after the type id)
    end: int
    subtype: int | None = None  # element type of an array


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order (ne[0] first)
    ggml_type: int
    offset: int  # relative to the data section
    n_elements: int
    n_bytes: int

    @property
    def type_name(self) -> str:
        return GGML_TYPES[self.ggml_type].name


@dataclass(frozen=True)
class GGUFHeader:
    source_name: str
    version: int
    kv: dict[str, KVEntry]
    tensors: tuple[TensorInfo, ...]
    alignment: int
    kv_start: int
    ti_start: int
    header_end: int  # end of the tensor infos
    data_offset: int  # start of the data section (header_end rounded up to the alignment)
    file_size: int | None
    raw: bytes = field(repr=False)  # the file's bytes [0, header_end)

    def get(self, key: str, default: Any = None) -> Any:
        entry = self.kv.get(key)
        return default if entry is None else entry.value

    @property
    def arch(self) -> str | None:
        value = self.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_get(self, suffix: str, default: Any = None) -> Any:
        return self.get(f"{self.arch}.{suffix}", default)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def data_end(self) -> int:
        """The smallest file size that holds every tensor's data."""
        if not self.tensors:
            return self.data_offset
        last = self.tensors[-1]
        return self.data_offset + last.offset + last.n_bytes


def align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment


def _sniff(head: bytes, name: str) -> None:
    """Recognise what a non-GGUF file really is, with the fix."""
    redownload = "download it again (dslocal download, or git lfs pull in a clone)"
    if not head:
        raise GGUFFormatError(f"{name} is empty", redownload)
    if head.startswith(b"version https://git-lfs"):
        raise GGUFFormatError(f"{name} is a Git LFS pointer file, not the model's data", redownload)
    lowered = head[:1024].lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or (lowered.startswith(b"<") and b"<html" in lowered):
        raise GGUFFormatError(
            f"{name} is an HTML page (an error or login page saved in place of the model)", redownload
        )
    if lowered.startswith((b"{", b"[")):
        raise GGUFFormatError(f"{name} is a JSON document, not a GGUF file", redownload)
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"GGML", b"GGMF", b"GGJT"):
        raise GGUFFormatError(
            f"{name} is in the old GGML format that predates GGUF",
            "get a .gguf build of the model (llama.cpp's convert scripts make one)",
        )
    raise GGUFFormatError(
        f"{name} is not a GGUF file (it starts with {head[:8]!r})",
        "name a .gguf model file; if this one should be a model, download it again",
    )


class _Reader:
    """A cursor over a byte source that fetches in growing chunks and keeps what it read."""

    def __init__(self, source: ByteSource, first_chunk: int = 1 << 20, max_chunk: int = 16 << 20) -> None:
        self.source = source
        self.name = source.name
        self.buf = bytearray()
        self.pos = 0
        self.chunk = first_chunk
        self.max_chunk = max_chunk

    def fail(self, what: str, hint: str = "the file is damaged: download it again") -> GGUFFormatError:
        return GGUFFormatError(f"{self.name}: {what}", hint)

    def remaining(self) -> int | None:
        size = self.source.size
        return None if size is None else size - self.pos

    def ensure(self, n: int) -> None:
        while self.pos + n > len(self.buf):
            want = max(self.pos + n - len(self.buf), self.chunk)
            size = self.source.size
            if size is not None:
                want = min(want, size - len(self.buf))
            data = self.source.read_at(len(self.buf), want) if want > 0 else b""
            if not data:
                raise self.fail(
                    f"the file ends inside its header (needed byte {self.pos + n:,}, it has {len(self.buf):,})",
                    "the file is truncated: download it again",
                )
            self.buf += data
            self.chunk = min(self.chunk * 2, self.max_chunk)

    def take(self, n: int) -> bytes:
        self.ensure(n)
        out = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return out

    def scalar(self, vtype: int) -> Any:
        fmt = "<" + _SCALARS[vtype]
        size = _MIN_SIZE[vtype]
        self.ensure(size)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def u32(self) -> int:
        return self.scalar(T_UINT32)

    def u64(self) -> int:
        return self.scalar(T_UINT64)

    def check_count(self, count: int, min_item: int, what: str) -> None:
        """Refuse counts the file cannot possibly hold, before allocating anything."""
        remaining = self.remaining()
        limit = MAX_ENTRIES_UNKNOWN_SIZE if remaining is None else remaining // max(min_item, 1)
        if count > limit:
            room = "" if remaining is None else f" but only {remaining:,} bytes follow (truncated or damaged)"
            raise self.fail(f"the header claims {count:,} {what}{room}", "the file is damaged: download it again")

    def string(self, what: str) -> str:
        length = self.u64()
        remaining = self.remaining()
        if length > MAX_STRING or (remaining is not None and length > remaining):
            raise self.fail(f"{what} claims a string of {length:,} bytes")
        return self.take(length).decode("utf-8", errors="replace")

    def value(self, vtype: int, what: str, depth: int = 0) -> tuple[Any, int | None]:
        if vtype in _SCALARS:
            return self.scalar(vtype), None
        if vtype == T_STRING:
            return self.string(what), None
        if vtype != T_ARRAY:
            raise self.fail(f"{what} has unknown value type {vtype}")
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"{what} nests arrays deeper than {MAX_ARRAY_DEPTH}")
        subtype = self.u32()
        count = self.u64()
        if subtype not in _MIN_SIZE:
            raise self.fail(f"{what} is an array of unknown type {subtype}")
        self.check_count(count, _MIN_SIZE[subtype], f"elements in {what}")
        if subtype in _SCALARS and subtype != T_BOOL:
            size = _MIN_SIZE[subtype] * count
            self.ensure(size)
            items = list(struct.unpack_from(f"<{count}{_SCALARS[subtype]}", self.buf, self.pos))
            self.pos += size
            return items, subtype
        return [self.value(subtype, what, depth + 1)[0] for _ in range(count)], subtype


def read_header(source: ByteSource) -> GGUFHeader:
    """Parse the header of ``source``; raises :class:`GGUFFormatError` on anything malformed."""
    r = _Reader(source)
    try:
        r.ensure(4)
    except GGUFFormatError:
        _sniff(bytes(r.buf), source.name)
    if r.buf[:4] != GGUF_MAGIC:
        _sniff(bytes(r.buf[:1024]), source.name)
    r.take(4)
    version = r.u32()
    if version in (1,):
        raise r.fail("is a GGUF version 1 file, which llama.cpp no longer reads", "get a current .gguf build")
    if version not in (2, 3):
        endian = " (a big-endian file?)" if version > 0xFFFF else ""
        raise r.fail(f"has unsupported GGUF version {version}{endian}", "dslocal reads GGUF versions 2 and 3")
    n_tensors = r.u64()
    r.check_count(n_tensors, 24, "tensors")
    n_kv = r.u64()
    r.check_count(n_kv, 13, "metadata entries")

    kv_start = r.pos
    kv: dict[str, KVEntry] = {}
    for index in range(n_kv):
        start = r.pos
        key = r.string(f"metadata key #{index}")
        vtype = r.u32()
        value_start = r.pos
        value, subtype = r.value(vtype, f"metadata {key!r}")
        if key in kv:
            raise r.fail(f"has the metadata key {key!r} twice")
        kv[key] = KVEntry(key, vtype, value, start, value_start, r.pos, subtype)

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in kv:
        entry = kv["general.alignment"]
        alignment = entry.value
        if entry.vtype != T_UINT32 or alignment <= 0 or alignment & (alignment - 1):
            raise r.fail(f"general.alignment = {alignment!r} is not a power of two")

    ti_start = r.pos
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    expected_offset = 0
    for index in range(n_tensors):
        name = r.string(f"tensor name #{index}")
        n_dims = r.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise r.fail(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(r.u64() for _ in range(n_dims))
        ggml_type = r.u32()
        offset = r.u64()
        if ggml_type not in GGML_TYPES:
            raise r.fail(
                f"tensor {name!r} has unknown ggml type {ggml_type}",
                "the file may use a newer quantization type: update dslocal",
            )
        n_elements = 1
        for dim in shape:
            n_elements *= dim
        if n_elements >= 1 << 62:
            raise r.fail(f"tensor {name!r} claims {n_elements:,} elements")
        gtype = GGML_TYPES[ggml_type]
        if shape[0] % gtype.block_size:
            raise r.fail(f"tensor {name!r} has rows of {shape[0]} not divisible by {gtype.name}'s block {gtype.block_size}")
        n_bytes = n_elements // gtype.block_size * gtype.type_size
        if name in names:
            raise r.fail(f"has the tensor {name!r} twice")
        if offset != expected_offset:
            raise r.fail(f"tensor {name!r} is at data offset {offset:,}, expected {expected_offset:,}")
        names.add(name)
        tensors.append(TensorInfo(name, shape, ggml_type, offset, n_elements, n_bytes))
        expected_offset = align(offset + n_bytes, alignment)

    header_end = r.pos
    return GGUFHeader(
        source_name=source.name,
        version=version,
        kv=kv,
        tensors=tuple(tensors),
        alignment=alignment,
        kv_start=kv_start,
        ti_start=ti_start,
        header_end=header_end,
        data_offset=align(header_end, alignment),
        file_size=source.size,
        raw=bytes(r.buf[:header_end]),
    )


def read_file_header(path: str | os.PathLike[str], *, check_size: bool = True) -> GGUFHeader:
    """Read a local file's header; with ``check_size`` a truncated data section is an error."""
    with FileSource(path) as source:
        header = read_header(source)
    if check_size:
        check_complete(header)
    return header


def check_complete(header: GGUFHeader) -> None:
    if header.file_size is not None and header.file_size < header.data_end:
        raise GGUFFormatError(
            f"{header.source_name} is truncated: its tensors need {header.data_end:,} bytes, "
            f"the file has {header.file_size:,}",
            "download it again; a partial download cannot be used",
        )
