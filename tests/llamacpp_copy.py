"""Rewrite a GGUF with llama.cpp's own quantizer in COPY mode, as Ollama >= 0.30 does on import.

``llama_quantize_copy(src, dst)`` runs ``llama_model_quantize`` from llama-cpp-python (the
llama.cpp build vendored in that wheel) with ``llama_model_quantize_default_params()`` and
``only_copy = True``: what ``llama-quantize SRC DST COPY`` does. ``src`` is one file or the
first shard of a split set (llama.cpp finds the other shards by name); ``dst`` is one file.

It runs in a child process (``sys.executable -c``), so llama.cpp's logging goes nowhere and
an abort in C++ cannot take the test process down; a failure raises
:class:`LlamaQuantizeError` with llama.cpp's last log lines.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

__all__ = ["LlamaQuantizeError", "llama_quantize_copy"]

# The child: silence llama.cpp's log except errors (kept for the error message), then COPY.
_CHILD = r"""
import ctypes, os, sys
import llama_cpp

errors = []
keeping = [False]

@llama_cpp.llama_log_callback
def _log(level, text, user_data):
    # GGML_LOG_LEVEL_WARN = 3, _ERROR = 4, _CONT = 5 (continues the previous line)
    keeping[0] = level in (3, 4) or (level == 5 and keeping[0])
    if keeping[0]:
        errors.append(text.decode("utf-8", "replace"))

llama_cpp.llama_log_set(_log, ctypes.c_void_p())
params = llama_cpp.llama_model_quantize_default_params()
params.only_copy = True
params.nthread = 1
rc = llama_cpp.llama_model_quantize(os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), ctypes.byref(params))
if rc != 0:
    sys.stderr.write("".join(errors)[-4000:])
    sys.stderr.write(f"\nllama_model_quantize returned {rc}\n")
    sys.exit(3)
"""


class LlamaQuantizeError(RuntimeError):
    """llama.cpp's quantizer refused the file or crashed."""


def llama_quantize_copy(src: Path, dst: Path) -> None:
    """Write ``dst`` as ``llama-quantize src dst COPY`` does; raises :class:`LlamaQuantizeError`."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise LlamaQuantizeError(f"llama_quantize_copy: {src} is not a file")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(dst)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600,
    )
    if proc.returncode != 0:
        dst.unlink(missing_ok=True)
        how = f"exit status {proc.returncode}" if proc.returncode > 0 else f"signal {-proc.returncode}"
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise LlamaQuantizeError(f"llama-quantize COPY of {src.name} failed ({how}): {detail or 'no output'}")
    if not dst.is_file():
        raise LlamaQuantizeError(f"llama-quantize COPY of {src.name} reported success but wrote no {dst}")
