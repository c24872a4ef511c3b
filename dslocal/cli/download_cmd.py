"""``dslocal download``: fetch a repository's files, resumable and verified."""

from __future__ import annotations

from pathlib import Path

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note
from dslocal.cli.progress import transfer_bars
from dslocal.units import format_bytes


@click.command(
    "download",
    epilog="""\b
REPO is a catalog id or alias (see 'dslocal list': its files are chosen for you) or a
repository on the hub (ORG/NAME, or hf:ORG/NAME). Files land in
--dir (default: the models folder / ORG/NAME). Interrupted downloads resume where
they stopped; every file is checked against its sha256; verified files are never
fetched again. One download per folder at a time: a second one waits.

\b
Sources (--source): hf (the configured hf_endpoint), hf-mirror, modelscope, a URL
of an HF-compatible mirror or of a plain file server with a SHA256SUMS listing, a
local folder (USB drive, share), or auto (probe and pick the fastest; the default).

\b
Examples:
  dslocal download r1-671b-iq1s
  dslocal download unsloth/DeepSeek-R1-GGUF --include 'DeepSeek-R1-UD-IQ1_S/*'
  dslocal download unsloth/DeepSeek-R1-Distill-Qwen-7B-GGUF --include '*Q4_K_M.gguf' --source modelscope
  dslocal download unsloth/DeepSeek-R1-GGUF --include '*IQ1_S*' --source /media/usb/models --dir /data/r1
""",
)
@click.argument("repo")
@click.option("--include", "include", multiple=True, metavar="GLOB", help="Only files matching GLOB (repeatable).")
@click.option("--revision", default=None, help="Branch, tag or commit (default: main; master on ModelScope).")
@click.option("--source", default=None, help="hf, hf-mirror, modelscope, URL, PATH or auto (default: the setting).")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), help="Where to put the files.")
@click.option("--connections", type=click.IntRange(1, 64), default=None, help="Connections per file (default 4).")
@click.option("--no-wait", is_flag=True, help="Fail instead of waiting when another download holds the folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@json_option
@click.pass_obj
def download_cmd(
    app: AppContext, repo: str, include: tuple[str, ...], revision: str | None, source: str | None,
    folder: Path | None, connections: int | None, no_wait: bool, quiet: bool, as_json: bool,
) -> None:
    """Download a model repository's files (resumable, verified, mirror-aware)."""
    from dslocal.errors import NotFoundError
    from dslocal.sources.download import DownloadOptions, download
    from dslocal.sources.http import make_session
    from dslocal.sources.listing import select
    from dslocal.sources.select import choose

    from dslocal.catalog import load_catalog

    settings = app.settings({"source": source, "connections": connections})
    variant = load_catalog().find(repo)
    if variant is not None:
        if variant.multi_node:
            from dslocal.errors import UsageError

            raise UsageError(f"{variant.id} is the multi-node FP8 original", "see 'dslocal plan r1-671b-fp8 --cluster ...'")
        repo, include = variant.hf_repo, include or variant.include_globs()
    from dslocal.sources.listing import check_repo_id

    repo = check_repo_id(repo.removeprefix("hf:").strip("/"))
    options = DownloadOptions(connections=int(settings["connections"]), lock_wait=0 if no_wait else None)
    target = folder or settings.models_dir / repo  # bad settings fail here, before any network
    session = make_session()
    chosen = choose(str(settings["source"]), repo, revision, settings, session, notify=note)
    files = select(chosen.files, include)
    if not files:
        raise NotFoundError(f"no file of {repo} matches {' '.join(include) or 'anything'}", "check --include")
    total = sum(f.size for f in files)
    if not as_json and not quiet:
        note(f"{len(files)} file(s), {format_bytes(total)} from {chosen.source.name} into {target}")
    with transfer_bars(quiet=quiet or as_json) as sink:
        report = download(
            files, target, source=chosen.source.name, session=session, headers=chosen.source.headers(),
            options=options, progress=sink, notify=note, local=chosen.local,
        )
    data = {
        "repo": repo,
        "source": chosen.source.name,
        "reason": chosen.reason,
        "folder": str(report.folder),
        "fetched_bytes": report.fetched_bytes,
        "files": [
            {"path": f.path, "target": str(f.target), "bytes": f.size, "sha256": f.sha256, "status": f.status}
            for f in report.files
        ],
    }

    def human() -> None:
        for f in report.files:
            click.echo(f"{f.status:24s} {f.target}")
        click.echo(f"fetched {format_bytes(report.fetched_bytes)}; all {len(report.files)} file(s) verified")

    emit("download", data, as_json=as_json, human=human)
