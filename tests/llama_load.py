"""llama.cpp (llama-cpp-python) for tests, without the extra repacked weight buffers.

On CPUs with AMX (this project's machines) llama.cpp copies eligible weights into an ``AMX``
buffer, and with llama-cpp-python 0.3.36 batched Q8_0 matmuls from that buffer crash (SIGSEGV)
on the small generated models. :func:`no_repack` makes every later load use
``use_extra_bufts = false``, what llama-server's ``--no-repack`` does: weights stay in the
mapped file, as on a CPU without AMX. Process-wide and idempotent; the Ollama double calls it, and
so does tests/llama_engine.py before it loads a model in llama-cpp-python (deepseek4 only: every other
test that generates text runs on xllamacpp's llama.cpp, whose CPU wheel has no AMX kernels).
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
