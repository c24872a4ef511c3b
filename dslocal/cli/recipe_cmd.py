"""``dslocal recipe`` (ls, show, estimate, from-gguf) and ``dslocal quantize``: quant recipes as data."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values, note
from dslocal.progress import Progress, ProgressSink, null_sink
from dslocal.units import format_bytes

GIB = 1 << 30


@click.group("recipe")
def recipe_group() -> None:
    """Quant recipes: list, show, estimate a size, or read one from a GGUF."""


def _summary(recipe: Any) -> dict[str, Any]:
    return {
        "name": recipe.name, "file": recipe.origin, "model": recipe.model, "architecture": recipe.architecture,
        "default_type": recipe.default_type, "imatrix": recipe.imatrix, "types": sorted(recipe.types_named()),
        "published_size_gib": recipe.published_size_gib, "source": recipe.source,
    }


@recipe_group.command("ls", epilog="""\b
Examples:
  dslocal recipe ls
  dslocal recipe ls --json
""")
@json_option
def ls_cmd(as_json: bool) -> None:
    """List the packaged quant recipes."""
    from dslocal.quant.recipes import packaged_recipes

    recipes = packaged_recipes()
    data = {"recipes": [_summary(r) for r in recipes]}

    def human() -> None:
        click.echo(f"{'NAME':16s} {'MODEL':12s} {'DEFAULT':8s} {'IMATRIX':8s} {'PUBLISHED':>10s}  TYPES")
        for r in recipes:
            size = f"{r.published_size_gib:g} GiB" if r.published_size_gib else "-"
            click.echo(f"{r.name:16s} {r.model or '-':12s} {r.default_type:8s} {'yes' if r.imatrix else 'no':8s} "
                       f"{size:>10s}  {', '.join(sorted(r.types_named()))}")

    emit("recipe ls", data, as_json=as_json, human=human)


@recipe_group.command("show", epilog="""\b
NAME is a recipe's name or file stem (see 'dslocal recipe ls'), or a path to a .toml recipe.

\b
Examples:
  dslocal recipe show R1-UD-IQ1_S
  dslocal recipe show deepseek2-ud-q2_k_xl --json
""")
@click.argument("name")
@json_option
def show_cmd(name: str, as_json: bool) -> None:
    """Show one recipe: its rules in order, the default type, whether it needs an importance matrix."""
    from dslocal.quant.recipes import find_recipe

    recipe = find_recipe(name)
    data = _summary(recipe) | {"notes": recipe.notes,
                               "rules": [{"pattern": r.pattern, "type": r.type, "line": r.line} for r in recipe.rules]}

    def human() -> None:
        key_values([(k, str(v)) for k, v in _summary(recipe).items() if v is not None and k != "types"])
        if recipe.notes:
            click.echo(f"\n{recipe.notes}")
        click.echo("\nrules (first match wins):")
        for r in recipe.rules:
            click.echo(f"  {r.type:8s} {r.pattern}")
        click.echo(f"  {recipe.default_type:8s} (anything else)")

    emit("recipe show", data, as_json=as_json, human=human)


@recipe_group.command("estimate", epilog="""\b
SOURCE is the unquantized (BF16/F16) GGUF the recipe would start from: a local file, an
http(s) URL or hf:ORG/REPO/PATH[@REVISION]; any shard stands for the whole set. Remote
sources are read with HTTP Range requests (headers only, a few MB per shard).

\b
Examples:
  dslocal recipe estimate R1-UD-IQ1_S --from hf:unsloth/DeepSeek-R1-GGUF/DeepSeek-R1-BF16/DeepSeek-R1.BF16-00001-of-00030.gguf
  dslocal recipe estimate deepseek2-ud-q2_k_xl --from model-bf16.gguf --json
""")
@click.argument("name")
@click.option("--from", "source", required=True, help="The BF16/F16 GGUF whose tensor shapes to use.")
@click.option("--no-cache", is_flag=True, help="Ignore and do not update the remote header cache.")
@json_option
@click.pass_obj
def estimate_cmd(app: AppContext, name: str, source: str, no_cache: bool, as_json: bool) -> None:
    """The file size a recipe gives, from the tensor shapes of its source."""
    from dslocal.gguf_tools.targets import open_target
    from dslocal.quant.estimate import estimate, quantized_weights, source_shapes
    from dslocal.quant.recipes import find_recipe

    recipe = find_recipe(name)
    cache = None if no_cache else app.paths.cache_dir / "gguf-headers"
    opened = open_target(source, hf_endpoint=str(app.settings()["hf_endpoint"]), cache_dir=cache)
    shapes, header_bytes = source_shapes(opened.shard_set, recipe)
    result = estimate(recipe, shapes, header_bytes=header_bytes)
    already = quantized_weights(shapes)
    if already:
        note(f"warning: {len(already)} weights of the source are already quantized; "
             "the estimate assumes llama.cpp requantizes them")
    published = recipe.published_size_gib
    data = {
        "recipe": recipe.name, "source": source, "bytes": result.total_bytes, "gib": round(result.total_bytes / GIB, 2),
        "source_bytes": result.source_bytes, "header_bytes": result.header_bytes,
        "published_size_gib": published,
        "difference_percent": round((result.total_bytes / GIB / published - 1) * 100, 2) if published else None,
        "by_type": {t: {"tensors": n, "bytes": b} for t, (n, b) in result.by_type.items()},
        "fallbacks": [{"tensor": p.name, "recipe_type": p.named, "type": p.type} for p in result.fallbacks],
        "bytes_read": opened.bytes_read,
    }

    def human() -> None:
        line = f"{recipe.name}: {format_bytes(result.total_bytes)} ({result.total_bytes:,} bytes)"
        if published:
            line += f"; published {published:g} GiB ({data['difference_percent']:+.1f}%)"
        click.echo(line)
        click.echo(f"from {format_bytes(result.source_bytes)} of source tensors")
        for t, (n, b) in result.by_type.items():
            click.echo(f"  {t:8s} {n:6d} tensors  {format_bytes(b):>11s}")
        if result.fallbacks:
            click.echo(f"{len(result.fallbacks)} tensors get llama.cpp's fallback type (rows not a multiple of the block)")

    emit("recipe estimate", data, as_json=as_json, human=human)


@recipe_group.command("from-gguf", epilog="""\b
TARGET is a quantized GGUF: a local file, an http(s) URL or hf:ORG/REPO/PATH[@REVISION];
any shard stands for the whole set (remote: headers only). The recipe goes to stdout, or
to --output; 'dslocal quantize' and 'dslocal recipe estimate' take that file as NAME.

\b
Examples:
  dslocal recipe from-gguf hf:unsloth/DeepSeek-R1-GGUF/DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf
  dslocal recipe from-gguf model-IQ1_S.gguf -o my-recipe.toml --name my-iq1s
""")
@click.argument("target")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the recipe here.")
@click.option("--name", help="The recipe's name (default: the model's general.name).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--no-cache", is_flag=True, help="Ignore and do not update the remote header cache.")
@json_option
@click.pass_obj
def from_gguf_cmd(app: AppContext, target: str, output: Path | None, name: str | None, force: bool, no_cache: bool,
                  as_json: bool) -> None:
    """Write the recipe a quantized GGUF embodies (every tensor's type, as rules)."""
    from dslocal.errors import InputError
    from dslocal.fsutil import atomic_write_bytes
    from dslocal.gguf_tools.targets import open_target
    from dslocal.quant.extract import recipe_from_set, recipe_toml

    if output is not None and output.exists() and not force:
        raise InputError(f"{output} exists", "pass --force to replace it, or name another file")
    cache = None if no_cache else app.paths.cache_dir / "gguf-headers"
    opened = open_target(target, hf_endpoint=str(app.settings()["hf_endpoint"]), cache_dir=cache)
    recipe = recipe_from_set(opened.shard_set, name=name, source=target)
    text = recipe_toml(recipe)
    if output is not None:
        atomic_write_bytes(output, text.encode(), perms=0o644)
    data = _summary(recipe) | {"output": str(output) if output else None, "toml": text,
                               "rules": [{"pattern": r.pattern, "type": r.type} for r in recipe.rules]}

    def human() -> None:
        if output is None:
            click.echo(text, nl=False)
        else:
            click.echo(f"{output}  ({len(recipe.rules)} rules, default {recipe.default_type})")

    emit("recipe from-gguf", data, as_json=as_json, human=human)


@contextlib.contextmanager
def _tensor_bar(quiet: bool) -> Iterator[ProgressSink]:
    """A tensors-done bar on stderr when it is a terminal."""
    if quiet or not sys.stderr.isatty():
        yield null_sink
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    with Bar(TextColumn("quantizing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
             TextColumn("{task.description}"), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=None)

        def sink(event: Progress) -> None:
            bar.update(task, completed=event.done, total=event.total, description=event.detail)

        yield sink


@click.command("quantize", epilog="""\b
IN is a BF16/F16/F32 GGUF (or a split set's first shard); OUT is one file, written under a
temporary name and renamed when llama.cpp's quantizer (llama-cpp-python's
llama_model_quantize) has finished and every tensor has the recipe's type. Recipes with
IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S or IQ3_XXS need --imatrix: the importance matrix llama-imatrix
computed for this model (.gguf or legacy .dat).

\b
Examples:
  dslocal quantize DeepSeek-R1-BF16-00001-of-00030.gguf R1-UD-IQ1_S.gguf --recipe R1-UD-IQ1_S --imatrix imatrix.dat
  dslocal quantize model-f16.gguf model-q2kxl.gguf --recipe deepseek2-ud-q2_k_xl
  dslocal quantize model-f16.gguf out.gguf --recipe my-recipe.toml --threads 8 --json
""")
@click.argument("source", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--recipe", "recipe_name", required=True, help="A recipe name (dslocal recipe ls) or a .toml path.")
@click.option("--imatrix", type=click.Path(dir_okay=False, path_type=Path), help="Importance matrix (.gguf or .dat).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True, help="Threads (0: all cores).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
def quantize_cmd(source: Path, output: Path, recipe_name: str, imatrix: Path | None, threads: int, force: bool,
                 quiet: bool, as_json: bool) -> None:
    """Quantize a GGUF with a recipe, through llama.cpp's own quantizer."""
    from collections import Counter

    from dslocal.quant.apply import quantize
    from dslocal.quant.recipes import find_recipe

    recipe = find_recipe(recipe_name)
    with _tensor_bar(quiet) as sink:
        result = quantize(source, output, recipe, imatrix=imatrix, threads=threads, force=force, progress=sink)
    counts = Counter(p.type for p in result.tensors)
    data = {"output": str(result.output), "bytes": result.bytes, "recipe": recipe.name, "imatrix": result.imatrix,
            "seconds": round(result.seconds, 2), "types": dict(sorted(counts.items())),
            "tensors": {p.name: p.type for p in result.tensors}}

    def human() -> None:
        click.echo(f"{result.output}  ({format_bytes(result.bytes)}, {len(result.tensors)} tensors, "
                   f"{result.seconds:.1f} s)")
        click.echo("  " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))

    emit("quantize", data, as_json=as_json, human=human)
