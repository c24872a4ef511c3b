"""Crash-safe writes and the packaged data readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from dslocal.errors import NotFoundError
from dslocal.fsutil import atomic_output, atomic_write_bytes
from dslocal.resources import list_data, read_data


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_exception_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_output(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_a_killed_writer_never_leaves_a_half_file_under_the_real_name(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"complete")
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from dslocal.fsutil import atomic_output\n"
        "with atomic_output(Path(sys.argv[1])) as h:\n"
        "    h.write(b'partial')\n"
        "    h.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)])
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"complete"
    leftovers = [p for p in tmp_path.iterdir() if p.name != "model.bin"]
    assert all(p.name.startswith(".model.bin.") and p.name.endswith(".tmp") for p in leftovers)


def test_packaged_data_reads_from_the_checkout():
    assert "deepseek-thinking.template" in list_data("modelfiles")
    assert "deepseek2-ud-iq1_s.toml" in list_data("quant_recipes")
    template = read_data("modelfiles", "deepseek-thinking.template")
    assert "range $i, $_ := .Messages" in template and ".Thinking" in template
    assert "<｜User｜>" in template and "<｜end▁of▁sentence｜>" in template


def test_missing_packaged_file_is_a_clear_error():
    with pytest.raises(NotFoundError, match="no packaged file") as info:
        read_data("modelfiles", "nope.template")
    assert "deepseek-thinking.template" in (info.value.hint or "")
    assert os.sep not in info.value.message
