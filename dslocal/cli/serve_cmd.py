"""``dslocal serve``: an OpenAI-compatible API for a local DeepSeek, from Ollama or llama.cpp's own server."""

from __future__ import annotations

import os

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import note

KEY_ENV = "DSLOCAL_SERVE_API_KEY"

EPILOG = f"""\b
Engines: 'ollama' (the daemon serves /v1 itself; dslocal makes sure it runs and the model is
loaded), 'embedded' (llama.cpp's server from the xllamacpp package, in-process engine, no Ollama
needed) and 'llama-server' (a llama-server executable: --llama-server PATH, on PATH, or the one
in an Ollama >= 0.30 bundle, with the GPU libraries Ollama installed). The two llama.cpp engines
apply dslocal's plan, including MoE experts in RAM (-ot), which Ollama cannot do; they load a
split set without merging it. Default: ollama when it is installed, else embedded.

\b
Security: the API listens on 127.0.0.1 unless --host says otherwise, and any other address needs
an API key (--api-key, or {KEY_ENV}); browsers' cross-origin calls are refused unless
--cors-origin allows an origin. The key is never printed.

\b
Examples:
  dslocal serve r1-distill-qwen-7b                       Ollama's /v1 for a model dslocal pulled
  dslocal serve ./DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf --engine embedded --port 8080
  {KEY_ENV}=s3cret dslocal serve r1 --engine embedded --host 0.0.0.0 --port 8080
  dslocal serve v4-flash-ud-q2_k_xl --engine llama-server --ctx 16384
"""


@click.command("serve", epilog=EPILOG)
@click.argument("model")
@click.option("--engine", type=click.Choice(["ollama", "embedded", "llama-server"]), help="Default: ollama if installed, else embedded.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port (llama.cpp engines; 0: any free one).")
@click.option("--api-key", help=f"Require this key (Bearer); needed for any non-loopback --host. Also {KEY_ENV}.")
@click.option("--ctx", type=click.IntRange(256, 1 << 24), help="Context window (default: the plan's).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True, help="Concurrent requests (slots); they share the context window.")
@click.option("--cors-origin", "cors", help="The one web origin allowed to call the API from a browser (e.g. "
              "http://127.0.0.1:3000), or 'localhost' for any page served from this machine.")
@click.option("--llama-server", "llama_server", help="The llama-server executable to run (--engine llama-server).")
@click.pass_obj
def serve_cmd(app: AppContext, model: str, engine: str | None, host: str, port: int, api_key: str | None,
              ctx: int | None, parallel: int, cors: str | None, llama_server: str | None) -> None:
    """Serve a model as an OpenAI-compatible API (chat completions with reasoning, models list)."""
    from dslocal.engines.launch import is_loopback_host
    from dslocal.errors import UsageError

    key = api_key or os.environ.get(KEY_ENV) or None
    engine = engine or _default_engine(app)
    if engine == "ollama":
        if not is_loopback_host(host):
            raise UsageError("Ollama's API has no keys, so dslocal will not expose it beyond this machine",
                             "serve it with a key instead: --engine embedded --api-key KEY --host " + host)
        _serve_ollama(app, model)
        return
    _serve_llama(app, model, engine, host, port, key, ctx, parallel, cors, llama_server)


def _default_engine(app: AppContext) -> str:
    from dslocal.cli.ollama_cmd import _files
    from dslocal.engines import embedded
    from dslocal.ollama.daemon import find_binary

    if find_binary(_files(app)) is not None or not embedded.available():
        return "ollama"
    return "embedded"


def _serve_ollama(app: AppContext, model: str) -> None:
    from dslocal.chat.connect import ollama_target
    from dslocal.ollama.client import OllamaClient

    settings = app.settings()
    client = OllamaClient(str(settings["ollama_host"]))
    if client.probe() != "answers":
        _start_ollama(app)
    target = ollama_target(settings, model)
    note(f"loading {target.model} in Ollama (a large model can take minutes)")
    client.load(target.model, keep_alive="30m")
    click.echo(f"{target.model} is loaded; Ollama's OpenAI-compatible API: {client.url}/v1 (model id '{target.model}', "
               "reasoning in 'reasoning')")


def _start_ollama(app: AppContext) -> None:
    from pathlib import Path

    from dslocal.cli.ollama_cmd import _files
    from dslocal.errors import OllamaError
    from dslocal.ollama.daemon import find_binary, start

    settings = app.settings()
    if find_binary(_files(app)) is None:
        raise OllamaError("Ollama is not installed and not running",
                          "install it with 'dslocal ollama install', or serve without it: --engine embedded")
    start(_files(app), str(settings["ollama_host"]), Path(str(settings["ollama_models"])))


def _serve_llama(app: AppContext, model: str, engine: str, host: str, port: int, key: str | None, ctx: int | None,
                 parallel: int, cors: str | None, llama_server: str | None) -> None:
    from dslocal.engines.models import resolve_model
    from dslocal.engines.prepare import launch_for
    from dslocal.hardware.detect import detect

    settings = app.settings()
    files = resolve_model(settings, model)
    launch, plan = launch_for(settings, files, detect(settings.models_dir), ctx=ctx, host=host, port=port,
                              api_key=key, parallel=parallel, cors_origins=cors or "")
    launch.check_exposure()
    log_path = app.paths.log_dir / f"{engine}.log"
    server = _server(app, engine, launch, log_path, llama_server)
    note(f"{files.alias}: {plan.placement}, ctx {launch.n_ctx}, {launch.n_gpu_layers} GPU layers"
         + (f", experts in RAM ({launch.override_tensors[0]})" if launch.override_tensors else ""))
    try:
        server.start(progress=note)
        where = server.base_url.replace("127.0.0.1", host) if host not in ("127.0.0.1", "0.0.0.0", "::") else server.base_url
        click.echo(f"serving {files.alias} at {where}/v1 (OpenAI-compatible; reasoning in 'reasoning_content'"
                   f"{'; API key required' if key else ''}). Ctrl+C stops it.")
        code = server.wait()
        if code:
            from dslocal.engines.process import log_tail
            from dslocal.errors import DslocalError

            raise DslocalError(f"the {engine} server stopped (code {code}): {log_tail(log_path, 1)}",
                               f"its log: {log_path}")
    except KeyboardInterrupt:
        note("stopping")
    finally:
        server.stop()


def _server(app: AppContext, engine: str, launch, log_path, llama_server: str | None):  # noqa: ANN001
    if engine == "embedded":
        from dslocal.engines.embedded import EmbeddedServer, require

        require()
        return EmbeddedServer(launch, log_path)
    from dataclasses import replace

    from dslocal.cli.ollama_cmd import _files
    from dslocal.engines.executable import ExecutableServer, find_server, free_port
    from dslocal.ollama.daemon import find_binary

    ollama = find_binary(_files(app))
    binary = find_server(llama_server, [ollama] if ollama else [])
    if launch.port == 0:
        launch = replace(launch, port=free_port(launch.host if launch.loopback else "0.0.0.0"))
    return ExecutableServer(binary, launch, log_path)
