"""``dslocal pull``: a catalog id, hf: repository or local GGUF to a ready Ollama model."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note
from dslocal.cli.planning import hw_option, load_hw
from dslocal.cli.progress import step_bars
from dslocal.units import format_bytes, format_rate


@click.command(
    "pull",
    epilog="""\b
ID is a catalog id or alias (see 'dslocal list'), hf:ORG/REPO[:QUANT] on any
Hugging Face-compatible source, or a local GGUF file or folder (air-gapped installs).
Without :QUANT, a repository that holds more than one model is refused with the
list of its quants and their sizes. A plan that cannot load here, or would only
stream from disk or crawl (under 1 tok/s), stops before the download: --force
goes ahead anyway. A rerun after a crash continues at the step that was interrupted,
and a pull under another --name reuses what was already downloaded and merged.

\b
Examples:
  dslocal pull r1-distill-qwen-7b
  dslocal pull r1-671b-q2 --source hf-mirror
  dslocal pull hf:unsloth/DeepSeek-R1-0528-GGUF:UD-IQ1_S --name r1-0528
  dslocal pull /media/usb/DeepSeek-R1-UD-IQ1_S/ --name r1
  dslocal pull r1-671b-iq1s --direct        when even Ollama's own copy would not fit
  dslocal pull r1-671b-q2 --dry-run         the plan and the disk it needs, nothing else
  dslocal pull r1-671b-iq1s --force         even though it only streams from disk here
""",
)
@click.argument("model")
@click.option("--ctx", type=click.IntRange(min=256), help="Context length (default: the largest that fits).")
@click.option("--source", help="hf, hf-mirror, modelscope, URL, PATH or auto (default: the setting).")
@click.option("--name", help="The Ollama model name (default: the catalog alias).")
@click.option("--keep-shards", is_flag=True, help="Keep the downloaded shards after merging.")
@click.option("--direct", is_flag=True, help="Write the blob and manifest into OLLAMA_MODELS (least disk; skips the server's checks).")
@click.option("--dry-run", is_flag=True, help="Show the plan and the disk plan, then stop.")
@click.option("--no-smoke-test", is_flag=True, help="Skip the short generation at the end.")
@click.option("--force", is_flag=True,
              help="Pull even when the plan says the model cannot load here, or would only stream from disk or crawl.")
@hw_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@json_option
@click.pass_obj
def pull_cmd(app: AppContext, model: str, ctx: int | None, source: str | None, name: str | None, keep_shards: bool,
             direct: bool, dry_run: bool, no_smoke_test: bool, force: bool, hw: str | None, quiet: bool,
             as_json: bool) -> None:
    """Download, verify, merge and import a DeepSeek model into Ollama, with the least disk."""
    from dslocal.pipeline import PullRequest, pull
    from dslocal.pipeline.steps import PullEvent, StepNote

    settings = app.settings({"source": source})
    request = PullRequest(model=model, name=name, ctx=ctx, source=source, keep_shards=keep_shards, direct=direct,
                          dry_run=dry_run, smoke_test=not no_smoke_test, force=force)
    with step_bars(quiet=quiet or as_json) as bars:

        def render(event: PullEvent) -> None:
            if isinstance(event, StepNote):
                note(event.text)  # the lines on stderr, as a pull always said them
            bars(event)

        result = pull(request, settings, load_hw(app, hw), events=render)
    data = {
        "name": result.name, "digest": result.digest, "blob_bytes": result.blob_bytes, "dry_run": result.dry_run,
        "steps": result.steps, "resumed": result.resumed, "disk_plan": result.disk_plan, "plan": result.plan,
        "plan_note": result.plan_note, "smoke": result.smoke,
    }

    def human() -> None:
        if result.dry_run:
            p = result.plan
            if p:
                click.echo(f"{result.name}: {p['placement']}, num_ctx {p['num_ctx']}, ~{format_rate(p['decode_tokens_per_s'])} tok/s")
            elif result.plan_note:
                click.echo(f"{result.name}: {result.plan_note}")
            click.echo(f"disk: {format_bytes(result.disk_plan['needed_bytes'])} needed")
            return
        click.echo(f"{result.name} is ready ({format_bytes(result.blob_bytes)}, {result.digest})")
        if result.smoke:
            click.echo(f"smoke test: {result.smoke['tokens']} tokens in {result.smoke['seconds']} s")
        click.echo(f"chat with it: dslocal chat {result.name.removesuffix(':latest')}")

    emit("pull", data, as_json=as_json, human=human)
