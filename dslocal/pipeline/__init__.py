"""``dslocal pull``: from a catalog id (or hf: repo, or local file) to a ready Ollama model.

resolve -> hardware and plan -> disk preflight -> download (verified) -> shard-set check
-> model blob (merge, least disk) -> create (Ollama API) or --direct -> smoke test.
Those are the named steps of :mod:`dslocal.pipeline.steps` (resolve, plan, preflight,
download, verify, merge, create, smoke): one runner runs them and reports each one's
start, progress, notes and end as typed events (``pull(..., events=sink)``), which the
CLI and the TUI render.

Each finished step is recorded in a journal (``STATE/pulls/NAME.json``), so a rerun
after a crash continues at the right step: verified files are not fetched again (the
downloader's own ledger) and a finished blob is not merged again, once it is checked to be
still there and whole (Ollama prunes unreferenced blobs when it starts). The blob is
also recorded under its source (``STATE/pulls/sources/``: the files and their sha256),
so a pull of the same files under another ``--name`` reuses it.

The least-disk paths, by Ollama version (facts: shared/reference/ollama-observed.md and
protocol-audit-2026-12.md, findings 2-4):

* the server reads dslocal's ``OLLAMA_MODELS`` (asked with ``HEAD /api/blobs`` of a probe
  blob, never guessed from its address): the merge writes straight into the store and
  renames the file to ``blobs/sha256-<hex>``, so create uploads nothing;
* from v0.30 the server rewrites every import with llama-quantize COPY: a temporary
  copy, then a second temporary copy while it hashes, so its transient peak is three
  times the model. dslocal writes its blob in that canonical form, so the rewrite
  reproduces the same digest and no second copy survives; a blob no manifest (of any
  registry host) references is removed, never one that is referenced;
* ``--direct`` writes the blob and the manifest itself, as ``ollama pull`` lays them out:
  the peak is the model's size on any version, but the server's validation is skipped.
"""

from dslocal.pipeline.journal import Journal
from dslocal.pipeline.provenance import provenance_path, read_provenance, record_provenance
from dslocal.pipeline.pull import pull
from dslocal.pipeline.request import PullRequest, PullResult, Resolved, default_name, resolve
from dslocal.pipeline.steps import STEPS, PullEvent, PullEvents, StepBoard, StepState

__all__ = [
    "STEPS", "Journal", "PullEvent", "PullEvents", "PullRequest", "PullResult", "Resolved", "StepBoard", "StepState",
    "default_name", "provenance_path", "pull", "read_provenance", "record_provenance", "resolve",
]
