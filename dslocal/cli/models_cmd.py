"""``dslocal ls``, ``rm``, ``ps`` and ``tune``: the models in Ollama, with dslocal's provenance."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext, FiniteFloatRange
from dslocal.cli.output import emit, json_option, note
from dslocal.units import format_bytes

MAX_CTX = 1 << 24  # llama.cpp keeps n_ctx in an int32; no model is trained for more than ~10M tokens
MAX_NUM_GPU = 999  # the usual "every layer"; no model has that many


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
            return
        click.echo(f"{'NAME':32s} {'MEMORY':>10s}  {'ON GPU':>6s}  CONTEXT")
        for m in models:
            click.echo(f"{m['name']:32s} {format_bytes(m.get('size', 0)):>10s}  {m['gpu_share']:>6.0%}  "
                       f"{m.get('context_length', '-')}")

    emit("ps", {"models": models}, as_json=as_json, human=human)


@click.command("tune", epilog="""\b
num_ctx must be at least 256 and at most the model's trained context (from 'ollama show');
temperature is 0 to 2; num_gpu is a number of layers (0 = CPU only).

\b
Examples:
  dslocal tune r1-671b-q2 --ctx 16384
  dslocal tune r1-distill-qwen-7b --temperature 0.5 --num-gpu 20
""")
@click.argument("name")
@click.option("--ctx", type=click.IntRange(256, MAX_CTX), help="New num_ctx.")
@click.option("--num-gpu", type=click.IntRange(0, MAX_NUM_GPU), help="New num_gpu (layers on the GPU).")
@click.option("--temperature", type=FiniteFloatRange(0.0, 2.0), help="New temperature.")
@click.pass_obj
def tune_cmd(app: AppContext, name: str, ctx: int | None, num_gpu: int | None, temperature: float | None) -> None:
    """Change a model's parameters; re-created cheaply from itself (no weights copied)."""
    from dslocal.errors import UsageError

    if ctx is None and num_gpu is None and temperature is None:
        raise UsageError("nothing to change", "give --ctx, --num-gpu or --temperature")
    client = _client(app)
    shown = client.show(name)
    _check_against_model(name, shown, ctx, num_gpu)
    params = _parameters(shown)
    for key, value in (("num_ctx", ctx), ("num_gpu", num_gpu), ("temperature", temperature)):
        if value is not None:
            params[key] = value
    client.create(name, from_=name, parameters=params)
    note(f"{name} now has " + ", ".join(f"{k} {v}" for k, v in params.items() if k != "stop"))


def _parameters(shown: dict) -> dict:
    """The model's PARAMETER lines from ``/api/show``."""
    from dslocal.ollama.modelfile import _number

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
    return params


def _model_fact(shown: dict, suffix: str) -> int | None:
    """``<arch>.<suffix>`` from ``/api/show``'s model_info, when the server reports it."""
    info = shown.get("model_info") or {}
    if not isinstance(info, dict):
        return None
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.{suffix}") if isinstance(arch, str) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _check_against_model(name: str, shown: dict, ctx: int | None, num_gpu: int | None) -> None:
    from dslocal.errors import UsageError

    trained = _model_fact(shown, "context_length")
    if ctx is not None and trained is not None and ctx > trained:
        raise UsageError(f"--ctx {ctx} is more than {name}'s trained context ({trained})",
                         f"give --ctx {trained} or less")
    layers = _model_fact(shown, "block_count")
    if num_gpu is not None and layers is not None and num_gpu > layers + 1:
        raise UsageError(f"--num-gpu {num_gpu} is more than {name}'s {layers} layers (+1 for the output)",
                         f"give --num-gpu {layers + 1} for all of them, or fewer")
