"""Importance matrices (``llama-imatrix`` output) read as llama.cpp's quantize tool reads them.

Two formats (tools/quantize/quantize.cpp, ``load_imatrix`` / ``load_legacy_imatrix``):

* GGUF (llama.cpp since mid-2025): per weight ``NAME.in_sum2`` (F32, ne0 × experts) and ``NAME.counts``
  (F32, one per expert); the importance is in_sum2 / count, row by row, and 1 where a count is 0.
* legacy ``.dat``: int32 entry count, then per entry an int32 name length, the name, int32 ncall,
  int32 nval and nval float32 values, divided by ncall when it is positive; an optional trailer
  (last chunk, dataset name) follows.

The values come back per tensor name as ``array('f')``, the shape llama_model_imatrix_data wants.
"""

from __future__ import annotations

import struct
from array import array
from pathlib import Path

from dslocal.errors import InputError

_HINT = "give the file llama-imatrix wrote for this model (.gguf or the legacy .dat)"


def load_imatrix(path: str | Path) -> dict[str, array]:
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"importance matrix {path}: no such file", _HINT) from None
    except OSError as exc:
        raise InputError(f"importance matrix {path}: cannot read it ({exc.strerror})", _HINT) from None
    if data[:4] == b"GGUF":
        return _gguf(path, data)
    return _legacy(path, data)


def _gguf(path: Path, data: bytes) -> dict[str, array]:
    from dslocal.gguf_tools.header import BytesSource, read_header

    header = read_header(BytesSource(data, str(path)))
    tensors = {t.name: t for t in header.tensors}

    def floats(name: str) -> array:
        t = tensors[name]
        if t.type_name != "F32":
            raise InputError(f"importance matrix {path}: {name} is {t.type_name}, not F32", _HINT)
        start = header.data_offset + t.offset
        values = array("f")
        values.frombytes(data[start:start + t.n_bytes])
        return values

    out: dict[str, array] = {}
    for name in tensors:
        if not name.endswith(".in_sum2"):
            continue
        weight = name.removesuffix(".in_sum2")
        if weight + ".counts" not in tensors:
            raise InputError(f"importance matrix {path}: {weight} has sums but no counts", _HINT)
        sums, counts = floats(name), floats(weight + ".counts")
        ne0 = tensors[name].shape[0]
        values = array("f", [1.0]) * len(sums)
        for j, count in enumerate(counts):
            if count > 0:
                for i in range(j * ne0, (j + 1) * ne0):
                    values[i] = sums[i] / count
        out[weight] = values
    if not out:
        raise InputError(f"importance matrix {path}: a GGUF without .in_sum2/.counts tensors", _HINT)
    return out


def _legacy(path: Path, data: bytes) -> dict[str, array]:
    def bad(what: str) -> InputError:
        return InputError(f"importance matrix {path}: not an imatrix file ({what})", _HINT)

    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise bad(f"it ends at byte {len(data)}")
        pos += n
        return data[pos - n:pos]

    (n_entries,) = struct.unpack("<i", take(4))
    if n_entries < 1 or n_entries > 1 << 20:
        raise bad(f"{n_entries} entries")
    out: dict[str, array] = {}
    for i in range(n_entries):
        (length,) = struct.unpack("<i", take(4))
        if length < 1 or length > 4096:
            raise bad(f"entry {i} has a name of {length} bytes")
        name = take(length).decode("utf-8", "replace")
        ncall, nval = struct.unpack("<ii", take(8))
        if nval < 1:
            raise bad(f"entry {name} has {nval} values")
        values = array("f")
        values.frombytes(take(4 * nval))
        if ncall > 0:
            values = array("f", (v / ncall for v in values))
        out[name] = values
    return out


def write_legacy_imatrix(path: str | Path, entries: dict[str, list[float]], *, ncall: int = 1) -> None:
    """Write ``entries`` in the legacy format (values are stored times ``ncall``, as llama-imatrix does)."""
    from dslocal.fsutil import atomic_write_bytes

    parts = [struct.pack("<i", len(entries))]
    for name, values in entries.items():
        raw = name.encode()
        parts.append(struct.pack("<i", len(raw)) + raw + struct.pack("<ii", ncall, len(values)))
        parts.append(array("f", (v * ncall for v in values)).tobytes())
    atomic_write_bytes(Path(path), b"".join(parts))
