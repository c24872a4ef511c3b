"""Random header mutations: every failure is a DslocalError, never another exception."""

from __future__ import annotations

import random
import struct
import time

import pytest

from dslocal.errors import DslocalError
from dslocal.gguf_tools.header import BytesSource, read_file_header, read_header
from dslocal.gguf_tools.shards import validate_set

CASES = 4000
TIME_BUDGET = 60.0
INTERESTING = [0, 1, 2, 3, 8, 9, 12, 13, 31, 32, 255, 0xFFFF, 0xFFFFFFFF, 1 << 31, 1 << 60, (1 << 64) - 1]


def mutate(rng: random.Random, data: bytes, hot_end: int) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randrange(0, hot_end)
        if op < 0.35:
            buf[pos] ^= 1 << rng.randrange(8)
        elif op < 0.55:
            buf[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        elif op < 0.75:
            width = rng.choice((4, 8))
            value = rng.choice(INTERESTING) & ((1 << (8 * width)) - 1)
            buf[pos : pos + width] = value.to_bytes(width, "little")
        elif op < 0.85:
            del buf[pos : pos + rng.randint(1, 16)]
        elif op < 0.95:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del buf[pos:]
            hot_end = max(1, len(buf))
        hot_end = min(hot_end, max(1, len(buf)))
    return bytes(buf)


@pytest.mark.parametrize("kind", ["deepseek2-mla", "qwen2"])
def test_random_header_mutations_only_raise_dslocal_errors(make_gguf, kind):
    (path,) = make_gguf(kind, "q8_0")
    original = path.read_bytes()
    header = read_file_header(path)
    rng = random.Random(20261129)
    failures = accepted = 0
    deadline = time.monotonic() + TIME_BUDGET
    for case in range(CASES):
        if time.monotonic() > deadline:
            break
        # Mutations land in the header (where parsing happens), mostly in its first part.
        hot = header.header_end if rng.random() < 0.5 else min(header.header_end, 2048)
        data = mutate(rng, original, hot)
        try:
            parsed = read_header(BytesSource(data, name=f"case-{case}.gguf"))
            validate_set([f"case-{case}.gguf"], [parsed])
            accepted += 1
        except DslocalError as exc:
            assert exc.message and exc.hint, exc
            failures += 1
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc}")
    assert failures + accepted >= 1000, "the fuzz run was too slow to mean anything"
    assert failures > accepted / 10, "mutations should break most headers"


def test_claimed_counts_never_allocate_before_checking():
    for count in (1 << 60, (1 << 64) - 1):
        data = b"GGUF" + struct.pack("<IQQ", 3, 1, 1) + struct.pack("<Q", count)
        with pytest.raises(DslocalError):
            read_header(BytesSource(data))
