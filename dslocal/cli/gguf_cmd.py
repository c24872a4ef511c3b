"""``dslocal gguf``: inspect (and check), merge and split GGUF files and split sets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values, note
from dslocal.cli.progress import progress_bar
from dslocal.units import format_bytes, parse_size

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")


@click.group("gguf")
def gguf_group() -> None:
    """Inspect (and check), merge and split GGUF files and split sets."""


@gguf_group.command(
    "inspect",
    epilog="""\b
TARGET is a local file, an http(s) URL, or hf:ORG/REPO/PATH[@REVISION]; any shard of
a split set stands for the whole set, which is checked for missing, extra, truncated
or mismatched shards. Remote targets are read with HTTP Range requests (the header
only, a few MB) and cached by URL and ETag.

\b
Examples:
  dslocal gguf inspect DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf
  dslocal gguf inspect hf:unsloth/DeepSeek-R1-GGUF/DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf
  dslocal gguf inspect https://hf-mirror.com/unsloth/DeepSeek-R1-GGUF/resolve/main/X-00001-of-00003.gguf --json
""",
)
@click.argument("target")
@click.option("--no-cache", is_flag=True, help="Ignore and do not update the remote header cache.")
@json_option
@click.pass_obj
def inspect_cmd(app: AppContext, target: str, no_cache: bool, as_json: bool) -> None:
    """Report a GGUF model's architecture, quantization, sizes and split set."""
    from dslocal.gguf_tools.inspect import inspect_set
    from dslocal.gguf_tools.targets import open_target

    settings = app.settings()
    cache = None if no_cache else app.paths.cache_dir / "gguf-headers"
    opened = open_target(target, hf_endpoint=str(settings["hf_endpoint"]), cache_dir=cache)
    data = inspect_set(opened.shard_set)
    if opened.target.remote:
        data["bytes_read"] = opened.bytes_read
    emit("gguf inspect", data, as_json=as_json, human=lambda: _print_inspect(data))


def _print_inspect(d: dict[str, Any]) -> None:
    att = d["attention"]
    rows = [
        ("architecture", str(d["architecture"])),
        ("name", str(d["name"])),
        ("parameters", f"{d['parameter_count']:,}"),
        ("file type", str(d["file_type"])),
        ("context length", str(d["context_length"])),
        ("blocks", str(d["block_count"])),
    ]
    if d["expert_count"]:
        rows.append(
            ("experts", f"{d['expert_count']} routed, {d['expert_used_count']} used, {d['expert_shared_count']} shared")
        )
    if att["layout"]:
        cache = att["cache"] or att["layout"]
        rows.append(("attention", f"{cache}; {att['head_count']} heads, {att['head_count_kv']} KV heads"))
    rows += [
        ("tensors", f"{d['tensor_count']:,} ({format_bytes(d['tensor_bytes'])})"),
        ("outside blocks", format_bytes(d["outside_blocks_bytes"])),
        ("split", f"{d['split']['count']} file(s)"),
        ("chat template", "yes" if d["chat_template"] else "no"),
        ("special tokens", ", ".join(d["special_tokens"]["found"]) or "none of DeepSeek's"),
    ]
    if "bytes_read" in d:
        rows.append(("bytes read", format_bytes(d["bytes_read"])))
    key_values(rows)
    click.echo("\nquant mix:")
    for name, entry in d["quant_mix"].items():
        share = entry["bytes"] / d["tensor_bytes"] * 100 if d["tensor_bytes"] else 0
        click.echo(f"  {name:8s} {entry['tensors']:6d} tensors  {format_bytes(entry['bytes']):>11s}  {share:5.1f}%")
    if d["blocks"]:
        sizes = [b["bytes"] for b in d["blocks"]]
        click.echo(f"\nper block: {format_bytes(min(sizes))} to {format_bytes(max(sizes))}")
    if d["split"]["count"] > 1:
        click.echo("files:")
        for f in d["split"]["files"]:
            click.echo(f"  {f}")


@gguf_group.command(
    "merge",
    epilog="""\b
The result is what llama-gguf-split --merge writes, streamed with constant memory.
The output is written under a hidden temporary name and renamed when complete; after
a crash or Ctrl-C, rerun the same command and the merge continues with the next shard.
With --delete-shards each shard is deleted only once its bytes are safely in the
output, so the extra disk needed is about one shard.

\b
Examples:
  dslocal gguf merge DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf -o DeepSeek-R1-UD-IQ1_S.gguf
  dslocal gguf merge X-00002-of-00005.gguf -o /data/X.gguf --delete-shards --sha256
""",
)
@click.argument("any_shard", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="The merged file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--delete-shards", is_flag=True, help="Delete each shard once its bytes are durably merged.")
@click.option("--sha256", "sha256", is_flag=True, help="Compute the output's sha256 on the way (slower).")
@quiet_option
@json_option
def merge_cmd(
    any_shard: Path, output: Path, force: bool, delete_shards: bool, sha256: bool, quiet: bool, as_json: bool
) -> None:
    """Merge a split GGUF set into one file."""
    from dslocal.gguf_tools.merge import merge_shards

    with progress_bar("merging", quiet=quiet) as sink:
        result = merge_shards(
            any_shard, output, force=force, delete_shards=delete_shards, compute_sha256=sha256, progress=sink
        )
    data = {
        "output": str(result.path),
        "bytes": result.size,
        "sha256": result.sha256,
        "shards": list(result.shards),
        "tensor_count": result.tensor_count,
        "resumed_at_tensor": result.resumed_at_tensor,
        "deleted_shards": result.deleted_shards,
    }

    def human() -> None:
        if result.resumed_at_tensor:
            note(f"continued an interrupted merge after {result.resumed_at_tensor} tensors")
        click.echo(f"{result.path}  ({format_bytes(result.size)}, {result.tensor_count} tensors from {len(result.shards)} shards)")
        if result.sha256:
            click.echo(f"sha256 {result.sha256}")

    emit("gguf merge", data, as_json=as_json, human=human)


@gguf_group.command(
    "split",
    epilog="""\b
Sizes are decimal as in llama-gguf-split (48G = 48,000,000,000 bytes; 40GiB is binary)
and count the whole shard file, header included; a tensor is never split, so --max-size
must hold the largest one (the error says how much that is). Shards are named
PREFIX-00001-of-0000N.gguf and appear only when all of them are complete.

\b
Examples:
  dslocal gguf split model.gguf --max-size 48G
  dslocal gguf split model.gguf --max-size 4000M --prefix /media/usb/model    FAT32 drive
  dslocal gguf split model.gguf --max-tensors 128
""",
)
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--max-size", help="Largest shard, e.g. 48G, 4000M or 40GiB.")
@click.option("--max-tensors", type=click.IntRange(min=1), help="Most tensors per shard.")
@click.option("--prefix", type=click.Path(path_type=Path), help="Output path prefix (default: SOURCE without .gguf).")
@click.option("--force", is_flag=True, help="Replace existing shards of the same name.")
@quiet_option
@json_option
def split_cmd(
    source: Path, max_size: str | None, max_tensors: int | None, prefix: Path | None, force: bool, quiet: bool,
    as_json: bool,
) -> None:
    """Split one GGUF into a llama.cpp-style shard set."""
    from dslocal.gguf_tools.split import split_file

    size = parse_size(max_size) if max_size is not None else None
    if size is not None:
        _check_max_size(source, size)
    with progress_bar("splitting", quiet=quiet) as sink:
        result = split_file(source, max_size=size, max_tensors=max_tensors, out_prefix=prefix, force=force, progress=sink)
    over = [n for n in result.sizes if size is not None and n > size]
    if over:
        note(f"warning: {len(over)} shard(s) are larger than --max-size {format_bytes(size)} "
             f"(the largest is {format_bytes(max(over))}): a shard holds whole tensors")
    data = {"files": [{"path": str(p), "bytes": n} for p, n in zip(result.files, result.sizes)]}

    def human() -> None:
        for path, n in zip(result.files, result.sizes):
            click.echo(f"{path}  ({format_bytes(n)})")

    emit("gguf split", data, as_json=as_json, human=human)


def _check_max_size(source: Path, size: int) -> None:
    """Refuse a --max-size that the largest tensor (which is never split) cannot fit in."""
    from dslocal.errors import UsageError
    from dslocal.gguf_tools.header import align, read_file_header

    header = read_file_header(source)
    if not header.tensors:
        return
    largest = max(header.tensors, key=lambda t: t.n_bytes)
    # a shard holding it alone: at most the whole header (metadata and every tensor info), split.* keys, the tensor
    needed = align(len(header.raw) + 256, header.alignment) + align(largest.n_bytes, header.alignment)
    if align(largest.n_bytes, header.alignment) <= size:
        return
    raise UsageError(
        f"--max-size {format_bytes(size)} is smaller than the largest tensor, {largest.name} "
        f"({format_bytes(largest.n_bytes)}); a tensor is never split",
        f"give --max-size {_decimal_size(needed)} or more (a shard with that tensor and its header "
        f"needs up to {needed:,} bytes)",
    )


def _decimal_size(n: int) -> str:
    """The smallest ``NK``/``NM``/``NG`` (decimal, as --max-size reads them) that is at least ``n`` bytes."""
    for unit, factor in (("K", 10**3), ("M", 10**6), ("G", 10**9)):
        if n < factor * 1000 or unit == "G":
            return f"{-(-n // factor)}{unit}"
    raise AssertionError("unreachable")
