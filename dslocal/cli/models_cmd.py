"""``dslocal ls``, ``rm``, ``ps`` and ``tune``: the models in Ollama, with dslocal's provenance."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note
from dslocal.units import format_bytes


def _client(app: AppContext):
    from dslocal.ollama.client import OllamaClient

    return OllamaClient(str(app.settings()["ollama_host"]))


@click.command("ls", epilog="""\b
TEMPLATE says which chat template the server runs: 'ollama' (the Modelfile TEMPLATE, which
dslocal writes so that thinking can be switched off) or 'gguf' (the file's own jinja, applied
by llama-server, which Ollama 0.30+ prefers when it can do more than the TEMPLATE).

\b
Examples:
  dslocal ls
  dslocal ls --json | jq '.data.models[] | {name, template}'
""")
@json_option
@click.pass_obj
def ls_cmd(app: AppContext, as_json: bool) -> None:
    """Ollama's models, with where dslocal got them from."""
    from dslocal.errors import DslocalError
    from dslocal.ollama.templates import observed_use
    from dslocal.pipeline import read_provenance

    settings = app.settings()
    client = _client(app)
    models = []
    for model in client.tags():
        try:
            template = observed_use(client.show(model["name"])).as_dict()
        except DslocalError:
            template = None
        models.append({**model, "provenance": read_provenance(settings, model["name"]), "template": template})

    def human() -> None:
        click.echo(f"{'NAME':32s} {'SIZE':>10s}  {'TEMPLATE':8s}  FROM")
        for m in models:
            origin = m["provenance"]
            where = f"{origin.get('repo') or origin.get('model')} via {origin.get('source')}" if origin else "-"
            runs = m["template"]["runs"] if m["template"] else "?"
            click.echo(f"{m['name']:32s} {format_bytes(m.get('size', 0)):>10s}  {runs:8s}  {where}")

    emit("ls", {"models": models}, as_json=as_json, human=human)


@click.command("rm")
@click.argument("name")
@click.pass_obj
def rm_cmd(app: AppContext, name: str) -> None:
    """Remove a model from Ollama; its blobs that no other model uses are deleted at once."""
    from dslocal.pipeline import provenance_path

    _client(app).delete(name)
    provenance_path(app.settings(), name).unlink(missing_ok=True)
    note(f"removed {name}")


@click.command("ps")
@json_option
@click.pass_obj
def ps_cmd(app: AppContext, as_json: bool) -> None:
    """Loaded models and their GPU share (size_vram / size)."""
    models = []
    for m in _client(app).ps():
        size = m.get("size") or 0
        models.append({**m, "gpu_share": round((m.get("size_vram") or 0) / size, 3) if size else 0.0})

    def human() -> None:
        if not models:
            click.echo("no model is loaded")
        for m in models:
            click.echo(f"{m['name']:32s} {format_bytes(m.get('size', 0)):>10s}  {m['gpu_share']:.0%} GPU  "
                       f"ctx {m.get('context_length', '-')}")

    emit("ps", {"models": models}, as_json=as_json, human=human)


@click.command("tune", epilog="""\b
Examples:
  dslocal tune r1-671b-q2 --ctx 16384
  dslocal tune r1-distill-qwen-7b --temperature 0.5 --num-gpu 20
""")
@click.argument("name")
@click.option("--ctx", type=click.IntRange(min=256), help="New num_ctx.")
@click.option("--num-gpu", type=click.IntRange(min=0), help="New num_gpu.")
@click.option("--temperature", type=float, help="New temperature.")
@click.pass_obj
def tune_cmd(app: AppContext, name: str, ctx: int | None, num_gpu: int | None, temperature: float | None) -> None:
    """Change a model's parameters; re-created cheaply from itself (no weights copied)."""
    from dslocal.errors import UsageError
    from dslocal.ollama.modelfile import _number

    if ctx is None and num_gpu is None and temperature is None:
        raise UsageError("nothing to change", "give --ctx, --num-gpu or --temperature")
    client = _client(app)
    shown = client.show(name)
    params: dict = {}
    for line in str(shown.get("parameters", "")).splitlines():
        key, _, value = line.strip().partition(" ")
        if not key:
            continue
        value = value.strip().strip('"')
        if key == "stop":
            params.setdefault("stop", []).append(value)
        else:
            params[key] = _number(value)
    for key, value in (("num_ctx", ctx), ("num_gpu", num_gpu), ("temperature", temperature)):
        if value is not None:
            params[key] = value
    client.create(name, from_=name, parameters=params)
    note(f"{name} now has " + ", ".join(f"{k} {v}" for k, v in params.items() if k != "stop"))
