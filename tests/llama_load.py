"""llama.cpp (llama-cpp-python) for tests, without the extra repacked weight buffers.

On CPUs with AMX (this project's machines) llama.cpp copies eligible weights into an ``AMX``
buffer, and with llama-cpp-python 0.3.36 batched Q8_0 matmuls from that buffer crash (SIGSEGV)
on the small generated models. :func:`no_repack` makes every later load use
``use_extra_bufts = false``, what llama-server's ``--no-repack`` does: weights stay in the
mapped file, as on a CPU without AMX. Process-wide and idempotent; the Ollama double and the
tests that generate text call it.
"""

from __future__ import annotations

import functools


@functools.lru_cache(maxsize=1)
def no_repack() -> None:
    import llama_cpp.llama_cpp as lib

    default = lib.llama_model_default_params

    def params():  # noqa: ANN202 - a ctypes struct
        p = default()
        p.use_extra_bufts = False
        return p

    lib.llama_model_default_params = params
