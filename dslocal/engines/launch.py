"""What a llama.cpp server is started with, from the planner's plan: one value for both engines.

:class:`Launch` is turned into ``xllamacpp.CommonParams`` by the embedded engine and into
``llama-server`` arguments by the executable engine (:meth:`Launch.args`). The API key is never an
argument (it would show in ``ps``): the executable gets it in ``LLAMA_API_KEY``, the embedded child on
its stdin.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from dslocal.errors import UsageError

FLASH = ("on", "off", "auto")
REASONING = ("none", "auto", "deepseek", "deepseek-legacy")
CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Launch:
    model: Path  # a merged GGUF, or the first shard of a split set (llama.cpp loads the rest itself)
    alias: str
    n_ctx: int = 4096
    n_gpu_layers: int | None = None  # None: llama.cpp's own fit decides
    threads: int | None = None
    cache_type: str = "f16"
    flash_attn: str = "auto"
    override_tensors: tuple[str, ...] = ()  # "PATTERN=BUFFER_TYPE", e.g. r"blk\.([3-9]|[1-5][0-9]|60)\.ffn_.*_exps\.=CPU"
    n_cpu_moe: int | None = None
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    api_key: str | None = None
    parallel: int = 1
    reasoning_format: str = "deepseek"
    jinja: bool = True
    chat_template: str | None = None  # replaces the GGUF's own
    cors_origins: str = ""  # "" closes CORS: no browser page of another origin may call the server
    no_repack: bool = False
    webui: bool = False
    verbose: bool = False  # llama.cpp's debug log (per-tensor placement) into the engine log

    def __post_init__(self) -> None:
        if self.flash_attn not in FLASH:
            raise ValueError(f"flash_attn must be one of {FLASH}")
        if self.reasoning_format not in REASONING:
            raise ValueError(f"reasoning_format must be one of {REASONING}")
        if self.cache_type not in CACHE_TYPES:
            raise ValueError(f"cache_type must be one of {CACHE_TYPES}")

    @property
    def loopback(self) -> bool:
        return is_loopback_host(self.host)

    def check_exposure(self) -> None:
        """Anything that listens beyond this machine needs a key."""
        if not self.loopback and not self.api_key:
            raise UsageError(f"serving on {self.host} would let anyone on the network use the model",
                             "give --api-key KEY (or DSLOCAL_SERVE_API_KEY), or keep the default 127.0.0.1")

    def args(self) -> list[str]:
        """``llama-server`` arguments (llama.cpp's common/arg.cpp spellings); the key is not among them."""
        args = ["--model", str(self.model), "--alias", self.alias, "--ctx-size", str(self.n_ctx),
                "--host", self.host, "--port", str(self.port), "--parallel", str(self.parallel),
                "--flash-attn", self.flash_attn, "--reasoning-format", self.reasoning_format]
        if self.n_gpu_layers is not None:
            args += ["--n-gpu-layers", str(self.n_gpu_layers)]
        if self.threads:
            args += ["--threads", str(self.threads)]
        if self.cache_type != "f16":
            args += ["--cache-type-k", self.cache_type, "--cache-type-v", self.cache_type]
        for override in self.override_tensors:
            args += ["--override-tensor", override]
        if self.n_cpu_moe is not None:
            args += ["--n-cpu-moe", str(self.n_cpu_moe)]
        if self.jinja:
            args.append("--jinja")
        if self.chat_template is not None:
            args += ["--chat-template", self.chat_template]
        if self.no_repack:
            args.append("--no-repack")
        if not self.webui:
            args.append("--no-webui")
        if self.verbose:
            args.append("--verbose")
        return args

    def environment(self) -> dict[str, str]:
        """The key, and CORS: llama-server allows every origin unless told (``--cors-origins`` defaults to
        ``*``, echoed with credentials); the environment form is ignored by builds without the option."""
        env = {"LLAMA_ARG_CORS_ORIGINS": self.cors_origins}
        if self.api_key:
            env["LLAMA_API_KEY"] = self.api_key
        return env

    def shown(self) -> str:
        """The command line for people (never the key)."""
        import shlex

        return "llama-server " + " ".join(shlex.quote(a) for a in self.args())

    def as_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "api_key"}
        data["model"] = str(self.model)
        data["override_tensors"] = list(self.override_tensors)
        data["api_key"] = "set" if self.api_key else None
        return data


def from_plan(plan: Any, model: Path, alias: str, **changes: Any) -> Launch:
    """A launch that does what ``plan`` (dslocal.planner.fit.Plan, engine ``llama.cpp``) says: context,
    GPU layers, threads, KV cache type, flash attention, and MoE experts in RAM through ``-ot``."""
    kv = plan.kv_cache_type if plan.kv_cache_type in CACHE_TYPES else "f16"
    launch = Launch(
        model=model,
        alias=alias,
        n_ctx=plan.num_ctx,
        n_gpu_layers=plan.gpu_layers if plan.placement != "cpu" else 0,
        threads=plan.num_thread or None,
        cache_type=kv,
        flash_attn="on" if kv != "f16" else ("on" if plan.flash_attention else "auto"),
        override_tensors=(plan.override_tensors,) if plan.override_tensors else (),
    )
    return replace(launch, **changes)
