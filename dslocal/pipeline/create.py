"""The create step: the model into Ollama through its API, or written into its store (``--direct``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from dslocal.gguf_tools.ggml_types import FILE_TYPES
from dslocal.gguf_tools.header import read_file_header
from dslocal.ollama.client import OllamaClient
from dslocal.ollama.modelfile import STOP_TOKENS, load_family
from dslocal.ollama.store import Store
from dslocal.pipeline.request import Resolved, default_name
from dslocal.planner.fit import Plan
from dslocal.progress import Progress, ProgressSink
from dslocal.units import format_bytes

Notify = Callable[[str], None]


def model_parameters(the_plan: Plan, resolved: Resolved, *, pin_gpu_layers: bool) -> dict[str, Any]:
    """The PARAMETERs of the model: stop tokens, the plan's context and threads, the variant's sampling."""
    family = load_family(resolved.template)
    parameters: dict[str, Any] = {"stop": list(STOP_TOKENS), "num_ctx": the_plan.num_ctx,
                                  "num_thread": the_plan.num_thread}
    if the_plan.num_gpu is not None and pin_gpu_layers:
        parameters["num_gpu"] = the_plan.num_gpu
    for key in ("temperature", "top_p", "min_p"):
        value = getattr(resolved.variant, key, None) if resolved.variant else getattr(family, key)
        if value is not None:
            parameters[key] = value
    return parameters


class CreateProgress:
    """Create's status stream, coalesced: one line per new status, one bar for the per-tensor ones.

    From v0.30 the server sends a ``validating GGUF model`` event with ``total`` and
    ``completed`` for every tensor llama-quantize copies, about a thousand for DeepSeek.
    """

    def __init__(self, notify: Notify, progress: ProgressSink) -> None:
        self.notify = notify
        self.progress = progress
        self.last: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        status = str(event.get("status", ""))
        if status != self.last:
            self.notify(f"ollama: {status}")
            self.last = status
        if event.get("total"):
            self.progress(Progress("validate", int(event.get("completed") or 0), int(event["total"]), status))


def create_direct(store: Store, name: str, digest: str, blob_bytes: int, resolved: Resolved,
                  parameters: dict[str, Any], *, notify: Notify) -> str:
    family = load_family(resolved.template)
    header = read_file_header(store.blob_path(digest))  # dslocal's own validation stands in for the server's
    notify("--direct: the model was validated by dslocal; Ollama's own import checks were skipped")
    file_type = FILE_TYPES.get(int(header.get("general.file_type", -1) or -1), "unknown")
    store.write_manifest(name, digest, blob_bytes, family=str(header.arch), file_type=file_type,
                         parameter_count=sum(t.n_elements for t in header.tensors), template=family.template or None,
                         system=family.system or None, parameters=parameters)
    return digest


def create_via_api(client: OllamaClient, store: Store, name: str, digest: str, blob_bytes: int,
                   resolved: Resolved, parameters: dict[str, Any], *, shared_store: bool, server_rewrites: bool,
                   notify: Notify, progress: ProgressSink) -> str:
    """Upload (only when the server cannot see our store), create, and leave no unreferenced copy behind."""
    family = load_family(resolved.template)
    ours = store.blob_path(digest)
    if not shared_store:
        notify(f"uploading {format_bytes(blob_bytes)} to {client.url}")
        sent = [0]

        def uploaded(n: int) -> None:
            sent[0] += n
            progress(Progress("upload", sent[0], blob_bytes, ours.name))

        client.push_blob(ours, digest, progress=uploaded)
    base = default_name(name.rpartition(":")[0].rsplit("/", 1)[-1])
    # A family without a template sends none: the server then runs the GGUF's own chat template.
    client.create(name, files={f"{base}.gguf": digest}, template=family.template or None, system=family.system or None,
                  parameters=parameters, progress=CreateProgress(notify, progress))
    model_digest = store.model_layer(name) if shared_store else digest
    # Never delete a blob that any manifest, of any registry host, references (protocol audit, findings 4, 15).
    if digest not in store.referenced():
        with contextlib.suppress(FileNotFoundError):
            ours.unlink()
    if not shared_store and server_rewrites:
        notify(f"if the server's rewrite differs, it keeps the uploaded {format_bytes(blob_bytes)} until it restarts "
               "at least an hour from now (Ollama prunes unreferenced blobs at start, after a 1 h grace)")
    return model_digest or digest
