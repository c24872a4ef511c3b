"""Apply a recipe with llama.cpp's own quantizer: ``llama_model_quantize`` from llama-cpp-python.

Every tensor llama.cpp quantizes gets its recipe type through ``tt_overrides`` (one exact-name
pattern each, so llama.cpp's regex dialect and its own type heuristics play no part); an importance
matrix goes in as ``llama_model_imatrix_data`` rows, the ``quantize.imatrix.*`` keys are written as
``llama-quantize --imatrix`` writes them. The quantizer runs in a child process (an abort in C++
cannot take the caller down); its per-tensor log lines become progress events. The output is written
under a temporary name beside OUT and renamed once llama.cpp succeeded and every tensor has the type
the recipe plan says (:func:`dslocal.quant.estimate.plan`).

Before starting, a recipe that needs an importance matrix for some tensor is refused without one,
with the reason (:data:`dslocal.quant.recipes.IMATRIX_REASON`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import DslocalError, InputError
from dslocal.gguf_tools.ggml_types import GGML_TYPES
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.quant.estimate import SOURCE_TYPES, Planned, TensorShape, plan
from dslocal.quant.recipes import (
    _EXEMPT,
    IMATRIX_REASON,
    IMATRIX_TYPES,
    Recipe,
    kept_by_llama_cpp,
)

TYPE_IDS = {t.name: i for i, t in GGML_TYPES.items()}
# llama_ftype written as general.file_type for a recipe's default type (llama.h)
FTYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10, "Q3_K": 12,
          "Q4_K": 15, "Q5_K": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25,
          "IQ3_S": 26, "IQ2_S": 28, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37, "MXFP4": 38}
_PROGRESS = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")


class QuantizeError(DslocalError):
    """llama.cpp's quantizer failed, or wrote something other than the plan."""


@dataclass(frozen=True)
class QuantizeResult:
    output: Path
    bytes: int
    tensors: tuple[Planned, ...]
    imatrix: str | None
    seconds: float


def _source(src: Path, recipe: Recipe) -> list[TensorShape]:
    from dslocal.gguf_tools.shards import open_local_set

    shard_set = open_local_set(src)
    if shard_set.first.arch != recipe.architecture:
        raise InputError(f"{src.name} is a {shard_set.first.arch} model; recipe {recipe.name} is for {recipe.architecture}",
                         "pick a recipe for that architecture (dslocal recipe ls)")
    shapes = [TensorShape(t.name, tuple(t.shape), t.type_name) for _, t in shard_set.tensors()]
    quantized = [s for s in shapes if s.type not in SOURCE_TYPES and not kept_by_llama_cpp(s.name, s.shape)]
    if quantized:
        raise InputError(f"{src.name} is already quantized ({quantized[0].name} is {quantized[0].type})",
                         "start from the BF16 or F16 GGUF: quantizing a quantized file twice loses quality")
    return shapes


def check_imatrix(recipe: Recipe, planned: list[Planned], imatrix: Path | None) -> None:
    """Refuse to go on when a tensor's type needs an importance matrix that is missing or lacks it."""
    needing = [p for p in planned if p.type in IMATRIX_TYPES and p.name not in _EXEMPT]
    if not needing:
        return
    types = ", ".join(sorted({p.type for p in needing}))
    if imatrix is None:
        raise InputError(
            f"recipe {recipe.name} quantizes {len(needing)} tensors to {types}, which need an importance matrix: "
            f"{IMATRIX_REASON}",
            "pass --imatrix FILE (llama-imatrix's output for this model), or pick a recipe without IQ1/IQ2 types",
        )
    from dslocal.quant.imatrix import load_imatrix

    data = load_imatrix(imatrix)
    for p in needing:
        want = p.shape[0] * (p.shape[2] if len(p.shape) > 2 else 1)
        have = data.get(p.name)
        if have is None:
            raise InputError(f"importance matrix {imatrix} has no entry for {p.name}, which the recipe makes {p.type}",
                             "use the imatrix computed for this model (its tensor names must match)")
        if len(have) != want:
            raise InputError(f"importance matrix {imatrix}: {p.name} has {len(have)} values, the tensor needs {want}",
                             "use the imatrix computed for this model")


def quantize(src: str | Path, dst: str | Path, recipe: Recipe, *, imatrix: str | Path | None = None,
             threads: int = 0, force: bool = False, progress: ProgressSink = null_sink) -> QuantizeResult:
    """Write ``dst``: ``src`` (a BF16/F16/F32 GGUF, or a split set's first shard) quantized by ``recipe``."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    imatrix = Path(imatrix).expanduser() if imatrix is not None else None
    if importlib.util.find_spec("llama_cpp") is None:
        raise DslocalError("dslocal quantize runs llama.cpp's quantizer from llama-cpp-python, which is not installed",
                           "pip install llama-cpp-python")
    if dst.exists() and not force:
        raise InputError(f"{dst} exists", "pass --force to replace it, or name another output")
    planned = plan(recipe, _source(src, recipe))
    check_imatrix(recipe, planned, imatrix)
    job = {
        "src": str(src), "threads": threads, "ftype": FTYPES.get(recipe.default_type, 15),
        "overrides": [["^" + re.escape(p.name) + "$", TYPE_IDS[p.type]] for p in planned
                      if not kept_by_llama_cpp(p.name, p.shape)],
        "imatrix": str(imatrix) if imatrix is not None else None,
    }
    from dslocal.fsutil import fsync_dir

    started = time.monotonic()
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    job["dst"] = str(partial)
    try:
        _run_child(job, src, len(planned), progress)
        _verify(partial, planned, src)
        os.replace(partial, dst)
        fsync_dir(dst.parent)
    finally:
        partial.unlink(missing_ok=True)
    return QuantizeResult(dst, dst.stat().st_size, tuple(planned), job["imatrix"], time.monotonic() - started)


def _run_child(job: dict, src: Path, total: int, progress: ProgressSink) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dslocal.quant.apply import _child; _child()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(json.dumps(job))
    proc.stdin.close()
    progress(Progress("quantize", 0, total, src.name))
    for line in proc.stdout:
        event = json.loads(line)
        progress(Progress("quantize", event["done"], event["total"], event["name"]))
    detail = proc.stderr.read().strip()
    rc = proc.wait()
    if rc != 0:
        how = f"exit status {rc}" if rc > 0 else f"signal {-rc}"
        raise QuantizeError(f"llama.cpp's quantizer failed on {src.name} ({how}): {detail[-2000:] or 'no output'}",
                            "check the source file (dslocal gguf inspect SRC) and the free disk space")


def _verify(out: Path, planned: list[Planned], src: Path) -> None:
    from dslocal.gguf_tools.header import read_file_header

    written = {t.name: t.type_name for t in read_file_header(out).tensors}
    for p in planned:
        if written.get(p.name) != p.type:
            raise QuantizeError(f"llama.cpp wrote {p.name} of {src.name} as {written.get(p.name, 'nothing')}, "
                                f"the recipe plan says {p.type}", "report this: the quantizer and dslocal disagree")


# --- the child process: llama_model_quantize with overrides and an imatrix ------------------------------

def _child() -> None:  # pragma: no cover - runs in a subprocess
    import ctypes

    import llama_cpp

    job = json.loads(sys.stdin.read())
    errors: list[str] = []
    pending = [""]

    @llama_cpp.llama_log_callback
    def log(level, text, _user):
        pending[0] += text.decode("utf-8", "replace")
        *lines, pending[0] = pending[0].split("\n")
        for line in lines:
            match = _PROGRESS.match(line)
            if match:
                print(json.dumps({"done": int(match[1]), "total": int(match[2]), "name": match[3]}), flush=True)
            elif level in (3, 4) or "ERROR" in line or "error" in line:
                errors.append(line)

    llama_cpp.llama_log_set(log, ctypes.c_void_p())
    keep: list[object] = []
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = job["ftype"]
    params.nthread = job["threads"]
    params.tt_overrides = _overrides(llama_cpp, ctypes, job["overrides"], keep)
    if job["imatrix"]:
        from dslocal.quant.imatrix import load_imatrix

        data = load_imatrix(job["imatrix"])
        params.imatrix = _imatrix_rows(llama_cpp, ctypes, data, keep)
        params.kv_overrides = _kv(llama_cpp, ctypes, job["imatrix"], len(data), keep)
    rc = llama_cpp.llama_model_quantize(os.fsencode(job["src"]), os.fsencode(job["dst"]), ctypes.byref(params))
    if rc != 0:
        sys.stderr.write("\n".join(errors[-20:]) + f"\nllama_model_quantize returned {rc}\n")
        sys.exit(3)


def _overrides(lib, ctypes, overrides, keep):
    rows = (lib.llama_model_tensor_override * (len(overrides) + 1))()
    for i, (pattern, type_id) in enumerate(overrides):
        raw = pattern.encode()
        keep.append(raw)
        rows[i].pattern, rows[i].type = raw, type_id
    rows[len(overrides)].pattern = None
    keep.append(rows)
    return ctypes.cast(rows, ctypes.POINTER(lib.llama_model_tensor_override))


def _imatrix_rows(lib, ctypes, data, keep):
    rows = (lib.llama_model_imatrix_data * (len(data) + 1))()
    for i, (name, values) in enumerate(data.items()):
        buf = (ctypes.c_float * len(values)).from_buffer(values)
        raw = name.encode()
        keep.extend((raw, buf, values))
        rows[i].name, rows[i].data, rows[i].size = raw, ctypes.cast(buf, ctypes.POINTER(ctypes.c_float)), len(values)
    rows[len(data)].name = None
    keep.append(rows)
    return ctypes.cast(rows, ctypes.POINTER(lib.llama_model_imatrix_data))


def _kv(lib, ctypes, imatrix_file, n_entries, keep):
    """quantize.imatrix.file and .entries_count, as llama-quantize --imatrix writes them."""
    rows = (lib.llama_model_kv_override * 3)()
    rows[0].key, rows[0].tag = b"quantize.imatrix.file", 3  # LLAMA_KV_OVERRIDE_TYPE_STR
    rows[0].value.val_str = os.path.basename(imatrix_file).encode()[:127]
    rows[1].key, rows[1].tag = b"quantize.imatrix.entries_count", 0  # LLAMA_KV_OVERRIDE_TYPE_INT
    rows[1].value.val_i64 = n_entries
    rows[2].key = b""
    keep.append(rows)
    return ctypes.cast(rows, ctypes.POINTER(lib.llama_model_kv_override))
