"""``dslocal history``: the saved chat conversations (list, show, export as Markdown, remove)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note

MAX_LIMIT = 1 << 31


def _store(app: AppContext):
    from dslocal.chat.history import HistoryStore, history_path

    return HistoryStore(history_path(app.paths.data_dir))


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


@click.group("history", epilog="""\b
Conversations are kept in history.sqlite3 in dslocal's data folder ('dslocal paths'). An ID may be
given by its first few characters when no other conversation starts with them.

\b
Examples:
  dslocal history ls
  dslocal history show 3f2a
  dslocal history export 3f2a -o chat.md
  dslocal history rm 3f2a --yes
""")
def history_group() -> None:
    """Saved chat conversations: list, show, export and remove them."""


@history_group.command("ls", epilog="""\b
Examples:
  dslocal history ls --limit 10
  dslocal history ls --json | jq -r '.data.conversations[0].id'
""")
@click.option("--limit", "-n", type=click.IntRange(1, MAX_LIMIT), help="Show at most N conversations.")
@json_option
@click.pass_obj
def ls_cmd(app: AppContext, limit: int | None, as_json: bool) -> None:
    """The saved conversations, the most recently updated first."""
    from dslocal.chat.history import shown_time

    with _store(app) as store:
        summaries = store.list(limit=limit)
        data = {"path": str(store.path), "conversations": [s.as_dict() for s in summaries]}

    def human() -> None:
        if not summaries:
            click.echo("no saved conversations")
            return
        click.echo(f"{'ID':8s}  {'UPDATED':20s}  {'MSGS':>4s}  {'MODEL':24s}  TITLE")
        for s in summaries:
            click.echo(f"{s.id:8s}  {shown_time(s.updated_at):20s}  {s.message_count:>4d}  {s.model:24s}  "
                       f"{s.title or '(untitled)'}")

    emit("history ls", data, as_json=as_json, human=human)


@history_group.command("show", epilog="""\b
Examples:
  dslocal history show 3f2a
  dslocal history show 3f2a --no-thinking
  dslocal history show 3f2a --json | jq -r '.data.messages[-1].content'
""")
@click.argument("conversation_id", metavar="ID")
@click.option("--no-thinking", is_flag=True, help="Leave out the models' reasoning.")
@json_option
@click.pass_obj
def show_cmd(app: AppContext, conversation_id: str, no_thinking: bool, as_json: bool) -> None:
    """One conversation, turn by turn."""
    from dslocal.chat.history import shown_time, stats_line

    with _store(app) as store:
        conversation = store.get(store.resolve(conversation_id))

    def human() -> None:
        c = conversation
        click.echo(c.title or "(untitled)")
        click.echo(f"{c.id} · {c.model} via {c.backend} · started {shown_time(c.created_at)} · "
                   f"updated {shown_time(c.updated_at)}")
        for message in c.messages:
            label = message.role + (f" ({message.model})" if message.model and message.model != c.model else "")
            click.echo(f"\n[{label}]")
            if message.thinking.strip() and not no_thinking:
                click.echo("thinking:")
                for line in message.thinking.strip("\n").splitlines():
                    click.echo(f"  > {line}".rstrip())
                click.echo("")
            if message.content.strip():
                click.echo(message.content.strip("\n"))
            if message.partial:
                click.echo("(cut short)")
            figures = stats_line(message.stats)
            if figures:
                click.echo(figures)

    emit("history show", conversation.as_dict(thinking=not no_thinking), as_json=as_json, human=human)


@history_group.command("export", epilog="""\b
Markdown is the only format for now: the reasoning goes in collapsed <details> blocks.

\b
Examples:
  dslocal history export 3f2a > chat.md
  dslocal history export 3f2a --md -o chat.md
  dslocal history export 3f2a --no-thinking -o answers.md --force
""")
@click.argument("conversation_id", metavar="ID")
@click.option("--md", "markdown", is_flag=True, default=True, help="Markdown (the default, and the only format).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write to FILE instead of stdout (atomically).")
@click.option("--force", is_flag=True, help="Replace FILE when it exists.")
@click.option("--no-thinking", is_flag=True, help="Leave out the models' reasoning.")
@click.pass_obj
def export_cmd(app: AppContext, conversation_id: str, markdown: bool, output: Path | None, force: bool,
               no_thinking: bool) -> None:
    """Write a conversation as Markdown, to stdout or a file."""
    from dslocal.chat.history import export_markdown
    from dslocal.errors import InputError
    from dslocal.fsutil import atomic_write_bytes

    to_stdout = output is None or str(output) == "-"
    if not to_stdout and output.exists() and not force:
        raise InputError(f"{output} already exists", "pass --force to replace it, or choose another -o")
    with _store(app) as store:
        conversation = store.get(store.resolve(conversation_id))
    text = export_markdown(conversation, thinking=not no_thinking)
    if to_stdout:
        click.echo(text, nl=False)
        return
    atomic_write_bytes(output, text.encode("utf-8"))
    note(f"wrote {output}")


@history_group.command("rm", epilog="""\b
Asks before deleting when run in a terminal; elsewhere (a script, a pipe) it needs --yes.

\b
Examples:
  dslocal history rm 3f2a
  dslocal history rm 3f2a 9c01 --yes
""")
@click.argument("conversation_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
@click.pass_context
def rm_cmd(ctx: click.Context, conversation_ids: tuple[str, ...], yes: bool) -> None:
    """Delete conversations and their messages."""
    from dslocal.errors import UsageError

    app: AppContext = ctx.obj
    with _store(app) as store:
        wanted: dict[str, None] = {}
        for given in conversation_ids:  # every ID is checked before anything is deleted
            wanted[store.resolve(given)] = None
        ids = list(wanted)
        titles = {s.id: s.title for s in store.list()}
        count = f"{len(ids)} conversation{'s' if len(ids) != 1 else ''}"
        if not yes:
            if not _stdin_is_tty():
                raise UsageError(f"not deleting {count} without --yes: stdin is not a terminal, so dslocal cannot ask",
                                 "add --yes to delete without asking")
            for conversation_id in ids:
                click.echo(f"  {conversation_id}  {titles.get(conversation_id) or '(untitled)'}", err=True)
            if not click.confirm(f"Delete {count}?", default=False, err=True):
                note("nothing deleted")
                ctx.exit(1)
        for conversation_id in ids:
            if store.delete(conversation_id):
                note(f"deleted {conversation_id} ({titles.get(conversation_id) or 'untitled'})")
