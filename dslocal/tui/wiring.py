"""The TUI's services wired to this machine: settings, hardware, the planner, Ollama, the history store."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from dslocal.tui.services import OllamaState, Services


def build(config_file: Path | None = None) -> Services:
    from dslocal.config import load_settings
    from dslocal.paths import resolve_paths

    paths = resolve_paths()
    if config_file is not None:
        paths = dataclasses.replace(paths, config_file=config_file.expanduser().absolute())
    settings = load_settings(paths=paths)
    host = str(settings["ollama_host"])

    def daemon_files():  # noqa: ANN202
        from dslocal.ollama.daemon import DaemonFiles

        return DaemonFiles.of(paths)

    def client():  # noqa: ANN202
        from dslocal.ollama.client import OllamaClient

        return OllamaClient(host, timeout=5)

    def hardware() -> Any:
        from dslocal.hardware.detect import detect

        return detect(settings.models_dir)

    def verdicts(profile: Any) -> list[tuple[Any, Any]]:
        from dslocal.hardware.support import verdict

        return [(gpu, verdict(gpu)) for gpu in profile.gpus]

    def catalog() -> list[Any]:
        from dslocal.catalog import load_catalog

        return list(load_catalog())

    def plan(variant: Any, profile: Any, ctx: int | None = None, engine: str = "ollama") -> Any:
        from dslocal.planner.facts import from_variant
        from dslocal.planner.fit import plan as make_plan

        return make_plan(from_variant(variant), profile, ctx=ctx, engine=engine, variant=variant.id)

    def recommend(profile: Any) -> list[Any]:
        from dslocal.catalog import load_catalog
        from dslocal.planner.rank import recommend as rank

        return rank(load_catalog(), profile)

    def modelfile(variant: Any, the_plan: Any) -> str:
        from dslocal.ollama.modelfile import load_family, render

        return render(load_family(variant.template), from_=f"./{variant.id}.gguf", num_ctx=the_plan.num_ctx,
                      num_thread=the_plan.num_thread, num_gpu=the_plan.num_gpu, temperature=variant.temperature,
                      top_p=variant.top_p, min_p=variant.min_p)

    def ollama_state() -> OllamaState:
        from dslocal.ollama.daemon import status

        s = status(daemon_files(), host)
        return OllamaState(installed=s.binary is not None, running=s.running, version=s.api_version or s.binary_version,
                           host=host, managed_pid=s.managed_pid, note=s.binary_error)

    def ollama_models() -> list[dict[str, Any]]:
        return client().tags()

    def ollama_loaded() -> list[dict[str, Any]]:
        return client().ps()

    def ollama_control(action: str) -> str:
        from dslocal.ollama import daemon

        files = daemon_files()
        stopped = daemon.stop(files) if action in ("stop", "restart") else False
        if action in ("start", "restart"):
            pid = daemon.start(files, host, Path(str(settings["ollama_models"])))
            return f"Ollama {'restarted' if stopped else 'started'} (pid {pid})"
        return "Ollama stopped" if stopped else "dslocal's Ollama server was not running"

    def ollama_log(lines: int) -> list[str]:
        try:
            return daemon_files().log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def chat(model: str) -> Any:
        from dslocal.chat.connect import ollama_target

        return ollama_target(settings, model)

    def history() -> Any:
        from dslocal.chat.history import HistoryStore, history_path

        return HistoryStore(history_path(paths.data_dir))

    def pull(model: str, events: Any = None, **options: Any) -> Any:
        from dslocal.pipeline import PullRequest, pull as run_pull

        extra = {"events": events} if events is not None else {}  # the steps' typed events (pipeline.steps)
        return run_pull(PullRequest(model=model, **options), settings, hardware(), **extra)

    def sources(_variant_id: str) -> list[dict[str, Any]]:
        from dslocal.sources.latency import measure

        return [dataclasses.asdict(s) for s in measure(settings)]

    def disk_plan(variant: Any) -> dict[str, Any]:
        """What a default pull of ``variant`` needs on disk (the same plan 'dslocal pull --dry-run' prints)."""
        from dslocal.pipeline.disk import disk_free, plan_disk

        store = Path(str(settings["ollama_models"]))
        download = settings.models_dir / variant.hf_repo
        plan_ = plan_disk(variant.size_bytes, fetched=False, delete_shards=True, blob_done=False, create_done=False,
                          rewrites=True, shared_store=True, direct=False, free_bytes=disk_free(download),
                          layout="ollama", download_dir=str(download), store=str(store), server_version=None)
        return {**plan_.as_dict(), "message": plan_.message()}

    return Services(hardware=hardware, verdicts=verdicts, catalog=catalog, plan=plan, recommend=recommend,
                    modelfile=modelfile, ollama_state=ollama_state, ollama_models=ollama_models,
                    ollama_loaded=ollama_loaded, ollama_control=ollama_control, ollama_log=ollama_log, chat=chat,
                    history=history, pull=pull, sources=sources, disk_plan=disk_plan, models_dir=settings.models_dir)
