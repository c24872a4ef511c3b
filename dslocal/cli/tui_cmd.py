"""``dslocal tui`` (and ``dslocal`` alone on a terminal): the Textual wizard and launcher."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext

SCREENS = ("hardware", "models", "chat", "ollama")


@click.command("tui", epilog="""\b
Keys: 1 hardware, 2 models, 5 chat, 6 Ollama, q quit; each screen's own keys are in its footer.
'dslocal' with no command opens it too when run on a terminal.

\b
Examples:
  dslocal tui
  dslocal tui --screen chat
""")
@click.option("--screen", type=click.Choice(SCREENS), default="hardware", show_default=True, help="The first screen.")
@click.pass_obj
def tui_cmd(app: AppContext, screen: str) -> None:
    """The wizard from this machine to a running chat, and a launcher afterwards."""
    run_tui(app, screen)


def run_tui(app: AppContext, screen: str = "hardware") -> None:
    import sys

    from dslocal.errors import UsageError

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("the TUI needs a terminal (stdin and stdout are not one)",
                         "run it in a terminal, or use the commands: 'dslocal --help'")
    from dslocal.tui.app import make_app
    from dslocal.tui.wiring import build

    make_app(build(app.config_file), first=screen).run()
