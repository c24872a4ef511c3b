"""The embedded engine's child process: llama.cpp's server from ``xllamacpp``, configured from the
JSON line the parent writes on stdin (a :class:`dslocal.engines.launch.Launch`, key included), serving
until the parent closes stdin. Run by :mod:`dslocal.engines.embedded`; not a command for people."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

GGML_TYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1",
              "iq4_nl": "IQ4_NL", "q5_0": "Q5_0", "q5_1": "Q5_1"}
FLASH = {"on": "LLAMA_FLASH_ATTN_TYPE_ENABLED", "off": "LLAMA_FLASH_ATTN_TYPE_DISABLED",
         "auto": "LLAMA_FLASH_ATTN_TYPE_AUTO"}
REASONING = {"none": "COMMON_REASONING_FORMAT_NONE", "auto": "COMMON_REASONING_FORMAT_AUTO",
             "deepseek": "COMMON_REASONING_FORMAT_DEEPSEEK", "deepseek-legacy": "COMMON_REASONING_FORMAT_DEEPSEEK_LEGACY"}


def cpu_moe_overrides(n: int) -> list[str]:
    """``--n-cpu-moe N``: the experts of the first N blocks in RAM (llama.cpp's llm_ffn_exps_block_regex)."""
    return [rf"blk\.{i}\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU" for i in range(n)]


def params(config: dict[str, Any]):  # -> xllamacpp.CommonParams
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = config["model"]
    p.model_alias = {config["alias"]}
    p.n_ctx = config["n_ctx"]
    if config["n_gpu_layers"] is not None:
        p.n_gpu_layers = config["n_gpu_layers"]
    if config["threads"]:
        p.cpuparams.n_threads = config["threads"]
        p.cpuparams_batch.n_threads = config["threads"]
    kv = getattr(xlc.ggml_type, f"GGML_TYPE_{GGML_TYPES[config['cache_type']]}")
    p.cache_type_k = kv
    p.cache_type_v = kv
    p.flash_attn_type = getattr(xlc.llama_flash_attn_type, FLASH[config["flash_attn"]])
    overrides = list(config["override_tensors"])
    if config["n_cpu_moe"]:
        overrides += cpu_moe_overrides(config["n_cpu_moe"])
    if overrides:
        p.tensor_buft_overrides = ",".join(overrides)
    p.hostnames = [config["host"]]
    p.port = config["port"]
    p.n_parallel = config["parallel"]
    p.use_jinja = config["jinja"]
    if config["chat_template"] is not None:
        p.chat_template = config["chat_template"]
    p.reasoning_format = getattr(xlc.common_reasoning_format, REASONING[config["reasoning_format"]])
    if config["api_key"]:
        p.api_keys = [config["api_key"]]
    p.cors_origins = config["cors_origins"]
    p.cors_origins_explicit = True
    p.no_extra_bufts = config["no_repack"]
    p.ui = config["webui"]
    if config.get("verbose"):
        p.verbosity = 10  # debug: the loader names each tensor's buffer type
    p.endpoint_slots = True  # the readiness probe below
    p.endpoint_metrics = False
    return p


def _wait_answer(url: str, key: str | None, timeout: float = 60.0) -> None:
    """Until the task loop answers (deleting the server before that hangs in xllamacpp)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            with opener.open(request, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    config = json.loads(sys.stdin.readline())
    import xllamacpp as xlc

    server = xlc.Server(params(config))  # returns once the model is loaded and the listener is up
    address = server.listening_address
    _wait_answer(address + "/slots", config["api_key"])
    ready = Path(config["ready_file"])
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"base_url": address, "pid": os.getpid(), "xllamacpp": xlc.__version__}))
    tmp.replace(ready)
    sys.stdin.read()  # until the parent closes the pipe (or dies)
    del server
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
