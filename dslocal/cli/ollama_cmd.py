"""``dslocal ollama``: a dslocal-managed Ollama daemon."""

from __future__ import annotations

import re

import click

from dslocal.cli.context import AppContext, FiniteFloatRange
from dslocal.cli.output import emit, json_option, key_values, note

# Go's time.ParseDuration ("30m", "1h30m", "-1s") or whole seconds ("3600", "-1"), as OLLAMA_KEEP_ALIVE takes
_KEEP_ALIVE = re.compile(r"-?(?:\d+|(?:\d+(?:\.\d*)?(?:ns|us|µs|ms|s|m|h))+)")
RELEASE_HINT = (
    "on an offline or air-gapped machine, serve the release files from a local mirror and point dslocal at it: "
    "dslocal config set ollama_release_base URL (or DSLOCAL_OLLAMA_RELEASE_BASE=URL)"
)


def _keep_alive(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not _KEEP_ALIVE.fullmatch(value.strip()):
        raise click.BadParameter(f"{value!r} is not a duration such as 30m, 1h, 3600 or -1 (forever)")
    return value.strip()


def _files(app: AppContext):
    from dslocal.ollama.daemon import DaemonFiles

    return DaemonFiles.of(app.paths)


@click.group("ollama", epilog="""\b
Examples:
  dslocal ollama start                 serve on 127.0.0.1:11434 with OLLAMA_MODELS from the settings
  dslocal ollama start --kv-cache-type q8_0 --context-length 16384
  dslocal ollama status --json
  dslocal ollama logs -n 100
""")
def ollama_group() -> None:
    """Start, stop and inspect a dslocal-managed Ollama server."""


@ollama_group.command("start")
@click.option("--kv-cache-type", type=click.Choice(["f16", "q8_0", "q4_0"]), help="OLLAMA_KV_CACHE_TYPE.")
@click.option("--context-length", type=click.IntRange(256, 1 << 24), help="OLLAMA_CONTEXT_LENGTH.")
@click.option("--keep-alive", default="30m", show_default=True, callback=_keep_alive, help="OLLAMA_KEEP_ALIVE.")
@click.option("--wait", type=FiniteFloatRange(0, 3600), default=30.0, show_default=True,
              help="Seconds to wait for readiness.")
@click.pass_obj
def start_cmd(app: AppContext, kv_cache_type: str | None, context_length: int | None, keep_alive: str, wait: float) -> None:
    """Start 'ollama serve' in the background, with a PID file and a log file.

    When dslocal's server already runs, it says so and changes nothing (exit 0).
    """
    from pathlib import Path

    from dslocal.ollama.daemon import is_loopback, running_managed, start

    settings = app.settings()
    host = str(settings["ollama_host"])
    running = running_managed(_files(app), host)
    if running:
        note(f"dslocal's Ollama server is already running (pid {running}) at {host}; "
             "'dslocal ollama restart' applies new settings")
        return
    if not is_loopback(host):
        note(f"warning: Ollama will listen on {host}, reachable from other machines; it has no authentication")
    pid = start(_files(app), host, Path(settings["ollama_models"]), wait=wait, kv_cache_type=kv_cache_type,
                context_length=context_length, keep_alive=keep_alive)
    note(f"Ollama is running (pid {pid}) at {host}; logs: {_files(app).log_file}")


@ollama_group.command("stop")
@click.pass_obj
def stop_cmd(app: AppContext) -> None:
    """Stop the managed server (SIGTERM, then SIGKILL after 10 s)."""
    from dslocal.ollama.daemon import stop

    note("stopped" if stop(_files(app)) else "dslocal's Ollama server was not running")


@ollama_group.command("restart")
@click.pass_context
def restart_cmd(ctx: click.Context) -> None:
    """Stop, then start, the managed server."""
    ctx.invoke(stop_cmd)
    ctx.invoke(start_cmd)


@ollama_group.command("status")
@json_option
@click.pass_obj
def status_cmd(app: AppContext, as_json: bool) -> None:
    """Whether a server answers, who runs it, and which versions."""
    from dataclasses import asdict

    from dslocal.ollama.daemon import status

    result = status(_files(app), str(app.settings()["ollama_host"]))
    data = asdict(result)

    def human() -> None:
        server = "running" if result.running else "not running"
        if result.silent:
            server = "accepts connections but does not answer (busy loading a model?)"
        key_values([
            ("server", f"{server} at {result.host}"),
            ("version", result.api_version or "-"),
            ("managed by dslocal", f"pid {result.managed_pid}" if result.managed_pid else "no"),
            ("system service", "yes" if result.system_service else "no"),
            ("binary", _binary_line(result)),
        ])

    emit("ollama status", data, as_json=as_json, human=human)


def _binary_line(result) -> str:
    if not result.binary:
        return "not found: 'dslocal ollama install'"
    if result.binary_version:
        return f"{result.binary} ({result.binary_version})"
    return f"{result.binary} (broken: {result.binary_error}; reinstall with 'dslocal ollama install')"


@ollama_group.command("logs")
@click.option("-n", "lines", type=click.IntRange(1, 1 << 20), default=50, show_default=True)
@click.pass_obj
def logs_cmd(app: AppContext, lines: int) -> None:
    """The last lines of the managed server's log."""
    from dslocal.ollama.daemon import tail_log

    for line in tail_log(_files(app), lines):
        click.echo(line)


@ollama_group.command("install", epilog="""\b
Examples:
  dslocal ollama install
  dslocal ollama install --version 0.32.15
  DSLOCAL_OLLAMA_RELEASE_BASE=https://mirror.example/ollama/releases/download dslocal ollama install
""")
@click.option("--version", "version", default=None, help="The release to install (default: 0.32.15).")
@click.pass_obj
def install_cmd(app: AppContext, version: str | None) -> None:
    """Install the official Ollama release for this OS and CPU under dslocal's data folder (Linux).

    It fetches ollama-linux-<arch>.tar.zst (.tgz for releases before 0.14.0, or when a mirror has
    no .tar.zst), checks it against the release's sha256sum.txt when the release serves one, and
    unpacks it into a new folder that replaces the old install only once it is complete.
    """
    from dslocal.cli.progress import transfer_bars
    from dslocal.errors import NetworkError
    from dslocal.ollama.install import DEFAULT_VERSION, install, parse_version

    settings = app.settings()
    parse_version(version or DEFAULT_VERSION)
    base = str(settings["ollama_release_base"])
    _reachable(base)
    dest = app.paths.data_dir / "ollama"
    try:
        with transfer_bars() as sink:
            binary = install(dest, version=version or DEFAULT_VERSION, base=base, progress=sink, notify=note)
    except NetworkError as exc:
        if "ollama_release_base" in (exc.hint or ""):
            raise
        raise type(exc)(exc.message, f"{exc.hint}; {RELEASE_HINT}" if exc.hint else RELEASE_HINT) from None
    note(f"installed {binary}; start it with 'dslocal ollama start'")


def _reachable(base: str, timeout: float = 3.0) -> None:
    """Fail at once, with the offline hint, when the release host cannot even be connected to.

    Behind a proxy (HTTPS_PROXY and friends) requests goes through it, so there is nothing to check.
    """
    import socket
    from urllib.parse import urlsplit

    import requests

    from dslocal.errors import NetworkError

    parts = urlsplit(base)
    if requests.utils.get_environ_proxies(base) or not parts.hostname:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NetworkError(f"cannot reach {parts.hostname}:{port} for the Ollama release ({reason})",
                           RELEASE_HINT) from None


from dslocal.cli.integrate_cmd import expose_cmd  # noqa: E402 - 'dslocal ollama expose' lives with the integrations

ollama_group.add_command(expose_cmd)


from dslocal.cli.ollama_service_cmd import service_group  # noqa: E402 - 'dslocal ollama service' in its own module

ollama_group.add_command(service_group)
