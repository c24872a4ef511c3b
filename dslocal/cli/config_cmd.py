"""``dslocal config``: show and change settings."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note
from dslocal.config import EXAMPLES, SETTINGS, set_config_value, unset_config_value


@click.group(
    "config",
    epilog="""\b
Precedence: command-line flags > environment variables > config file > defaults.
""",
)
def config_group() -> None:
    """Show or change settings (flags > env > file > defaults)."""


@config_group.command(
    "show",
    epilog="""\b
Examples:
  dslocal config show
  dslocal config show --json
  HF_ENDPOINT=https://hf-mirror.com dslocal config show   an env var wins over the file
""",
)
@json_option
@click.pass_obj
def show(app: AppContext, as_json: bool) -> None:
    """Show every setting, its value and where the value came from."""
    settings = app.settings()
    data = {"config_file": str(app.paths.config_file), "settings": settings.as_dict()}

    def human() -> None:
        width = max(len(spec.key) for spec in SETTINGS)
        click.echo(f"config file: {app.paths.config_file}")
        for spec in SETTINGS:
            origin = settings.origins[spec.key].replace("env:", "env ")
            click.echo(f"{spec.key.ljust(width)}  {settings[spec.key]}  ({origin})")
        click.echo("what each setting means: dslocal config set --help")

    emit("config show", data, as_json=as_json, human=human)


@config_group.command("path")
@click.pass_obj
def path(app: AppContext) -> None:
    """Print the config file's path (it may not exist yet)."""
    click.echo(str(app.paths.config_file))


def _settings_epilog() -> str:
    width = max(len(spec.key) for spec in SETTINGS)
    rows = "\n".join(f"  {spec.key.ljust(width)}  {spec.help}" for spec in SETTINGS)
    env = "\n".join(f"  {spec.key.ljust(width)}  {', '.join(spec.env)}" for spec in SETTINGS)
    return f"""\b
Settings:
{rows}

\b
Environment variables (they win over the file):
{env}

\b
Folders are stored as absolute paths.

\b
Examples:
  dslocal config set hf_endpoint {EXAMPLES['hf_endpoint']}
  dslocal config set models_dir {EXAMPLES['models_dir']}
  dslocal config set connections {EXAMPLES['connections']}
"""


@config_group.command("set", epilog=_settings_epilog(), context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.pass_obj
def set_(app: AppContext, key: str, value: str) -> None:
    """Store KEY = VALUE in the config file.

    VALUE is checked before it is stored, and is never read as an option (-3 is a value).
    """
    stored = set_config_value(app.paths.config_file, key, value)
    note(f"set {key} = {stored} in {app.paths.config_file}")


@config_group.command("unset")
@click.argument("key")
@click.pass_obj
def unset(app: AppContext, key: str) -> None:
    """Remove KEY from the config file (its default applies again)."""
    if unset_config_value(app.paths.config_file, key):
        note(f"removed {key} from {app.paths.config_file}")
    else:
        note(f"{key} was not set in {app.paths.config_file}")
