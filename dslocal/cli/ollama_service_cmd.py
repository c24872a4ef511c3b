"""``dslocal ollama service``: the managed Ollama as a systemd user unit (starts with the session)."""

from __future__ import annotations

from dataclasses import asdict

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values, note


def _keep_alive(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from dslocal.cli.ollama_cmd import (
        _keep_alive as check,  # the same check as 'dslocal ollama start'
    )

    return check(ctx, param, value)


@click.group("service", epilog="""\b
Examples:
  dslocal ollama service install                 write, enable and start dslocal-ollama.service
  dslocal ollama service install --kv-cache-type q8_0 --no-start
  dslocal ollama service status --json
  dslocal ollama service uninstall
""")
def service_group() -> None:
    """Run the managed Ollama as a systemd user service that starts with your session."""


@service_group.command("install")
@click.option("--kv-cache-type", type=click.Choice(["f16", "q8_0", "q4_0"]), help="OLLAMA_KV_CACHE_TYPE.")
@click.option("--context-length", type=click.IntRange(256, 1 << 24), help="OLLAMA_CONTEXT_LENGTH.")
@click.option("--keep-alive", default="30m", show_default=True, callback=_keep_alive, help="OLLAMA_KEEP_ALIVE.")
@click.option("--start/--no-start", default=True, show_default=True, help="Start it now as well as enabling it.")
@click.option("--print", "print_only", is_flag=True, help="Print the unit file and change nothing.")
@json_option
@click.pass_obj
def install_cmd(app: AppContext, kv_cache_type: str | None, context_length: int | None, keep_alive: str,
                start: bool, print_only: bool, as_json: bool) -> None:
    """Write ~/.config/systemd/user/dslocal-ollama.service and enable it.

    The unit runs 'ollama serve' with the environment 'dslocal ollama start' gives it (host and models
    folder from the settings, flash attention, no calls to ollama.com) and appends to the same log.
    Where systemd --user is not running (containers, other init systems) the file is still written.
    """
    from pathlib import Path

    from dslocal.errors import OllamaError
    from dslocal.ollama import service
    from dslocal.ollama.daemon import DaemonFiles, is_loopback, running_managed

    settings = app.settings()
    host = str(settings["ollama_host"])
    files = DaemonFiles.of(app.paths)
    text = service.render(files, host, Path(settings["ollama_models"]), kv_cache_type=kv_cache_type,
                          context_length=context_length, keep_alive=keep_alive)
    if print_only:
        click.echo(text, nl=False)
        return
    if not is_loopback(host):
        note(f"warning: the service's Ollama will listen on {host}, reachable from other machines; it has no authentication")
    systemctl = service.Systemctl.find()
    running = running_managed(files, host)
    if running and start and systemctl.available:
        raise OllamaError(f"dslocal's Ollama server already runs outside systemd (pid {running}) at {host}",
                          "stop it first with 'dslocal ollama stop', or install with --no-start")
    result = service.install(text, start=start, systemctl=systemctl)

    def human() -> None:
        click.echo(result.unit_file)
        if not result.systemd_user:
            note(f"{result.problem}: the unit is written but not enabled; in a login session run "
                 f"'systemctl --user daemon-reload && systemctl --user enable --now {service.UNIT_NAME}'")
            return
        note(f"enabled ({result.active}); to start it at boot without logging in: loginctl enable-linger")

    emit("ollama service install", asdict(result), as_json=as_json, human=human)


@service_group.command("uninstall")
@json_option
@click.pass_obj
def uninstall_cmd(app: AppContext, as_json: bool) -> None:
    """Stop and disable the service, and remove its unit file."""
    from dslocal.ollama import service

    systemctl = service.Systemctl.find()
    removed = service.uninstall(systemctl)
    data = {"removed": removed, "unit_file": str(service.unit_path()), "systemd_user": systemctl.available}

    def human() -> None:
        if not removed:
            note("the service was not installed; nothing to remove")
        elif not systemctl.available:
            note(f"removed {data['unit_file']} ({systemctl.problem}, so nothing was stopped)")
        else:
            note(f"stopped, disabled and removed {data['unit_file']}")

    emit("ollama service uninstall", data, as_json=as_json, human=human)


@service_group.command("status")
@json_option
@click.pass_obj
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Whether the unit is installed, enabled and active (and whether systemd --user can be asked)."""
    from dslocal.ollama import service

    result = service.status()

    def human() -> None:
        unknown = "unknown: systemd --user is not available"
        key_values([
            ("unit file", f"{result.unit_file} ({'installed' if result.installed else 'not installed'})"),
            ("systemd --user", "available" if result.systemd_user else str(result.problem)),
            ("enabled", result.enabled or unknown),
            ("active", result.active or unknown),
        ])

    emit("ollama service status", asdict(result), as_json=as_json, human=human)
