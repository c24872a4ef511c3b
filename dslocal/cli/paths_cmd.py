"""``dslocal paths``: where everything lives."""

from __future__ import annotations

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values


@click.command(
    "paths",
    epilog="""\b
Examples:
  dslocal paths
  dslocal paths --json | jq -r .data.models_dir
  DSLOCAL_HOME=/srv/dslocal dslocal paths     everything under one folder
""",
)
@json_option
@click.pass_obj
def paths_cmd(app: AppContext, as_json: bool) -> None:
    """Show where dslocal keeps config, models, cache and logs."""
    settings = app.settings()
    data = {
        **app.paths.as_dict(),
        "models_dir": str(settings.models_dir),
        "ollama_models": str(settings["ollama_models"]),
    }
    emit("paths", data, as_json=as_json, human=lambda: key_values(list(data.items())))
