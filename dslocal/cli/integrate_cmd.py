"""``dslocal integrate``: settings for Dify, Open WebUI, OpenAI SDKs and Continue, and a live check.

Also ``dslocal ollama expose`` (registered on the ollama group): the managed Ollama beyond loopback.
"""

from __future__ import annotations

import os
import sys

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, key_values, note

ENGINE_HELP = "ollama, serve (dslocal serve's OpenAI API) or deepseek (the cloud API). Default: the one that answers."

EPILOG = """\b
Examples:
  dslocal integrate dify r1-distill-qwen-7b           Dify's Ollama provider form, field by field
  dslocal integrate openwebui --json                  OLLAMA_BASE_URL and a compose file, for scripts
  dslocal integrate openai r1 --engine serve          base URL, key and the reasoning field
  dslocal integrate continue --cloud                  the same for the DeepSeek API (key never printed)
  dslocal integrate check r1-distill-qwen-7b --lan    does it answer from the host, Docker, the LAN?
"""


def _url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An http(s) URL with a host (or host:port), or a usage error naming it."""
    from dslocal.cli.urls import http_url

    if value is None:
        return None
    try:
        return http_url(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}, e.g. http://127.0.0.1:11434") from None


def _origin(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A browser origin (scheme://host[:port], ASCII as in an HTTP header), or a usage error."""
    if value is None:
        return None
    if not value.isascii():
        raise click.BadParameter(f"{value!r} is not an origin: write the host in ASCII (punycode), "
                                 "e.g. http://xn--fsqu00a.example:3000")
    return _url(ctx, param, value)


def _options(func):  # noqa: ANN001, ANN202
    for option in reversed([
        click.argument("model", required=False),
        click.option("--engine", type=click.Choice(["ollama", "serve", "deepseek"]), help=ENGINE_HELP),
        click.option("--cloud", is_flag=True, help="The DeepSeek API instead of a local server (= --engine deepseek)."),
        click.option("--url", callback=_url,
                     help="The server's URL (default: ollama_host, http://127.0.0.1:8080 for serve)."),
        click.option("--where", type=click.Choice(["docker", "host", "lan"]),
                     help="Where the client runs (default: docker for Dify and Open WebUI, host for the others)."),
        click.option("--ctx", type=click.IntRange(256, 1 << 24), help="Plan for this context (a model not pulled yet)."),
        click.option("--hw", metavar="FILE|PRESET", help="Plan for a saved profile or a preset instead of this machine."),
        click.option("--check", "live", is_flag=True, help="Run the live check afterwards."),
        json_option,
    ]):
        func = option(func)
    return func


@click.group("integrate", epilog=EPILOG)
def integrate_group() -> None:
    """Settings for Dify, Open WebUI, OpenAI SDKs and Continue, and a live check."""


def _client_command(client: str, summary: str):  # noqa: ANN202
    @integrate_group.command(client, help=summary, epilog=EPILOG)
    @_options
    @click.pass_obj
    def command(app: AppContext, model: str | None, engine: str | None, cloud: bool, url: str | None,
                where: str | None, ctx: int | None, hw: str | None, live: bool, as_json: bool) -> None:
        _settings_report(app, client, model, "deepseek" if cloud else engine, url, where, ctx, hw, live, as_json)

    return command


_client_command("dify", "Every field of Dify's model provider form (Ollama, OpenAI-API-compatible or DeepSeek).")
_client_command("openwebui", "Open WebUI's OLLAMA_BASE_URL (or OpenAI URL and key) and a docker compose file.")
_client_command("openai", "Base URL, key and the reasoning field for OpenAI SDKs.")
_client_command("continue", "A Continue config.yaml model block.")


def _endpoint(app: AppContext, engine: str | None, url: str | None):  # noqa: ANN202
    from dslocal.integrate.endpoint import resolve

    return resolve(engine, str(app.settings()["ollama_host"]), url)


def _model_info(app: AppContext, endpoint, model: str | None, ctx: int | None, hw: str | None):  # noqa: ANN001, ANN202
    from dslocal.catalog import load_catalog
    from dslocal.cli.planning import load_hw
    from dslocal.errors import NotFoundError, UsageError
    from dslocal.integrate import model as facts

    settings = app.settings()
    if endpoint.engine == "deepseek":
        from dslocal.integrate.settings import deepseek_model

        return deepseek_model()
    if endpoint.engine == "ollama":
        from dslocal.ollama.client import OllamaClient

        client = OllamaClient(endpoint.url, timeout=5)
        if model is None:
            model = _only_model(client)
        return facts.from_ollama(settings, client, model, lambda: load_hw(app, hw), ctx=ctx)
    if model is None:
        raise UsageError("which model does 'dslocal serve' serve?", "name it: dslocal integrate CLIENT MODEL --engine serve")
    variant = load_catalog().find(model)
    if variant is None:
        raise NotFoundError(f"{model!r} is not in the catalog", "name a catalog id ('dslocal list')")
    return facts.from_catalog(settings, variant, load_hw(app, hw), ctx=ctx, name=variant.id)


def _only_model(client) -> str:  # noqa: ANN001
    from dslocal.errors import OllamaError, UsageError

    try:
        names = [str(m.get("name") or m.get("model")) for m in client.tags()]
    except OllamaError:
        raise UsageError("which model? Ollama does not answer to say which it has",
                         "name one: dslocal integrate CLIENT MODEL (a catalog id works)") from None
    if len(names) == 1:
        return names[0]
    raise UsageError(f"which model? Ollama has {len(names)}" + (f": {', '.join(names[:6])}" if names else ""),
                     "name one: dslocal integrate CLIENT MODEL")


def _settings_report(app: AppContext, client: str, model: str | None, engine: str | None, url: str | None,
                     where: str | None, ctx: int | None, hw: str | None, live: bool, as_json: bool) -> None:
    from dslocal.integrate.network import lan_address
    from dslocal.integrate.settings import for_client

    endpoint = _endpoint(app, engine, url)
    info = _model_info(app, endpoint, model, ctx, hw)
    result = for_client(client, endpoint, info, where, lan_address() if where == "lan" else None)
    data = {"client": result.as_dict(), "endpoint": endpoint.as_dict(), "model": _model_dict(info)}
    report = None
    if live:
        report = _check(app, endpoint, info.name, client, lan_wanted=where == "lan")
        data["check"] = report.as_dict()
    emit(f"integrate {client}", data, as_json=as_json, human=lambda: _print_settings(result, report))
    if report is not None and not report.ok:
        _failed(report)


def _model_dict(info) -> dict[str, object]:  # noqa: ANN001
    from dataclasses import asdict

    return {**asdict(info), "max_tokens": info.max_tokens}


def _print_settings(result, report) -> None:  # noqa: ANN001
    click.echo(f"{result.provider}, on {result.engine} at {result.base_url}")
    click.echo("")
    key_values([(f"{f.label} ({f.key})", f.value + (f"    # {f.note}" if f.note else "")) for f in result.fields])
    if result.leave_unset:
        click.echo("\nLeave unset:")
        key_values([(f"{f.label} ({f.key})", f.note) for f in result.leave_unset])
    for title, text in result.snippets:
        click.echo(f"\n{title}:\n")
        click.echo(text.rstrip("\n"))
    if result.notes:
        click.echo("")
    for line in result.notes:
        click.echo(f"note: {line}")
    if report is not None:
        click.echo("")
        _print_report(report)


def _key(endpoint) -> str | None:  # noqa: ANN001
    if endpoint.engine == "deepseek":
        from dslocal.chat.keys import get_key

        return get_key("deepseek")
    return os.environ.get(endpoint.key_env, "").strip() or None if endpoint.key_env else None


def _check(app: AppContext, endpoint, model: str, client: str, *, lan_wanted: bool, origin: str | None = None,
           timeout: float = 300):  # noqa: ANN001, ANN202
    from dslocal.chat.connect import pulled_name
    from dslocal.integrate.check import run_check

    settings = app.settings()

    def resolve_name(names: list[str]) -> str | None:
        if endpoint.engine == "ollama":
            return pulled_name(settings, model, names)[0]
        return model if model in names else (names[0] if len(names) == 1 else None)

    return run_check(endpoint, model, _key(endpoint), native=client in ("dify", "openwebui"), lan_wanted=lan_wanted,
                     origin=origin, resolve_name=resolve_name, timeout=timeout)


def _print_report(report) -> None:  # noqa: ANN001
    marks = {"ok": "ok     ", "failed": "FAILED ", "skipped": "skipped"}
    for probe in report.probes:
        where = f" {probe.url}" if probe.url else ""
        click.echo(f"{marks[probe.state]} {probe.name}{where}: {probe.detail}")
        if probe.cause:
            click.echo(f"        cause: {probe.cause}")
        if probe.fix:
            click.echo(f"        fix: {probe.fix}")
    click.echo("all good" if report.ok else "some probes failed: see the fixes above")


@integrate_group.command("check", epilog=EPILOG)
@click.argument("model", required=False)
@click.option("--engine", type=click.Choice(["ollama", "serve", "deepseek"]), help=ENGINE_HELP)
@click.option("--cloud", is_flag=True, help="Check the DeepSeek API (= --engine deepseek).")
@click.option("--url", callback=_url, help="The server's URL (default: ollama_host, http://127.0.0.1:8080 for serve).")
@click.option("--lan", "lan_wanted", is_flag=True, help="Also try this machine's LAN address.")
@click.option("--client", type=click.Choice(["dify", "openwebui", "openai", "continue"]), default="openai",
              show_default=True, help="Chat as this client does (Dify and Open WebUI: Ollama's /api/chat).")
@click.option("--origin", callback=_origin, help="Also check that a browser page at this origin may call the API (OLLAMA_ORIGINS).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300, show_default=True, help="Seconds for the chat.")
@json_option
@click.pass_obj
def check_cmd(app: AppContext, model: str | None, engine: str | None, cloud: bool, url: str | None, lan_wanted: bool,
              client: str, origin: str | None, timeout: float, as_json: bool) -> None:
    """Does the endpoint answer from the host, the Docker bridge and the LAN, and does the model chat?

    Exits 1 when a probe fails; each failure names its cause and fix.
    """
    endpoint = _endpoint(app, "deepseek" if cloud else engine, url)
    if endpoint.engine == "deepseek":
        from dslocal.integrate.settings import DEEPSEEK_MODEL

        model = model or DEEPSEEK_MODEL
    elif model is None and endpoint.engine == "ollama":
        from dslocal.ollama.client import OllamaClient

        try:
            model = _only_model(OllamaClient(endpoint.url, timeout=5))
        except Exception:  # noqa: BLE001 - the probes say why
            model = "?"
    elif model is None:
        from dslocal.errors import UsageError

        raise UsageError("which model does the server serve?", "name it: dslocal integrate check MODEL --engine serve")
    report = _check(app, endpoint, model, client, lan_wanted=lan_wanted, origin=origin, timeout=timeout)
    emit("integrate check", report.as_dict(), as_json=as_json, human=lambda: _print_report(report))
    if not report.ok:
        _failed(report)


def _failed(report) -> None:  # noqa: ANN001 - dslocal.integrate.check.CheckReport
    """After the report: one error naming the first failed probe and its fix (exit 1). Under ``--json``
    the report already on stdout (its "ok" is false) stays the only document there."""
    from dslocal.errors import DslocalError

    failed = [p for p in report.probes if p.state == "failed"]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    raise DslocalError(f"the check failed at '{failed[0].name}': {failed[0].cause or failed[0].detail}{more}",
                       failed[0].fix or "see the report above")


# -- dslocal ollama expose ---------------------------------------------------------------------------------

@click.command("expose", epilog="""\b
Examples:
  dslocal ollama expose --docker        containers on this machine (Dify, Open WebUI), not the LAN
  dslocal ollama expose --lan           every machine that reaches this one (no authentication!)
  dslocal ollama expose --undo          back to what it was (127.0.0.1 by default)
""")
@click.option("--lan", "mode", flag_value="lan", help="Listen on every address (0.0.0.0).")
@click.option("--docker", "mode", flag_value="docker", help="Listen on the Docker bridge gateway only.")
@click.option("--undo", is_flag=True, help="Restore the listening address dslocal had before exposing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask; you have read the warning.")
@json_option
@click.pass_obj
def expose_cmd(app: AppContext, mode: str | None, undo: bool, yes: bool, as_json: bool) -> None:
    """Make the managed Ollama listen beyond 127.0.0.1 (with a warning and a confirmation), or undo it.

    It sets ollama_host in the config file (the OLLAMA_HOST the managed 'ollama serve' gets); a running
    server takes it at 'dslocal ollama restart'.
    """
    from dslocal.errors import UsageError
    from dslocal.integrate import expose

    paths = app.paths
    if undo:
        restored = expose.undo(paths.config_file, paths.state_dir)
        host = str(app.settings()["ollama_host"])
        if restored is None:
            note(f"dslocal had not exposed Ollama; it listens as set: {host}")
        else:
            note(f"Ollama's listening address is back to {host}")
            _restart_hint(app)
        emit("ollama expose", {"undone": restored is not None, "ollama_host": host}, as_json=as_json, human=lambda: None)
        return
    if mode is None:
        raise UsageError("expose where?", "--docker (containers on this machine) or --lan (every machine), or --undo")
    from dslocal.integrate.network import docker_status

    host = str(app.settings()["ollama_host"])
    gateway = docker_status().gateway if mode == "docker" else None
    if mode == "docker" and gateway is None:
        raise UsageError("no Docker daemon answers here, so there is no bridge to listen on",
                         "start Docker, or expose to the LAN: dslocal ollama expose --lan")
    listen = expose.listen_address(mode, host, gateway)
    note(expose.warning(mode, listen))
    for title, text in expose.proxy_snippets(expose.port_of(host)):
        note(f"\n{title} (keep Ollama on 127.0.0.1, share the proxy instead):\n{text.rstrip()}")
    _confirm(yes)
    done = expose.apply(paths.config_file, paths.state_dir, mode, listen)
    _origin_warning(app)
    note(f"set ollama_host = {listen} in {paths.config_file}; undo with 'dslocal ollama expose --undo'")
    _restart_hint(app)
    emit("ollama expose", {"mode": mode, "ollama_host": listen, "previous": done.previous}, as_json=as_json,
         human=lambda: None)


def _confirm(yes: bool) -> None:
    from dslocal.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError("exposing Ollama needs a confirmation", "read the warning above, then rerun with --yes")
    if not click.confirm("Expose Ollama like this?", default=False, err=True):
        raise UsageError("nothing changed", "rerun when you want it")


def _origin_warning(app: AppContext) -> None:
    origin = app.settings().origins.get("ollama_host", "")
    if origin.startswith("env:"):
        note(f"note: {origin.removeprefix('env:')} is set in this environment and wins over the config file; unset it")
    from dslocal.ollama.daemon import is_system_service

    if is_system_service():
        note("note: systemd runs an Ollama too; it reads OLLAMA_HOST from its unit: 'systemctl edit ollama', "
             "add Environment=\"OLLAMA_HOST=...\" under [Service], then 'systemctl restart ollama'")


def _restart_hint(app: AppContext) -> None:
    from dslocal.cli.ollama_cmd import _files
    from dslocal.ollama.daemon import _read_pid

    if _read_pid(_files(app)):
        note("dslocal's Ollama is running with the old address: 'dslocal ollama restart' applies the new one")
    from dslocal.ollama.service import unit_path

    if unit_path().is_file():  # the systemd user unit carries OLLAMA_HOST from when it was written
        note(f"the systemd user service ({unit_path()}) still has the old address: "
             "'dslocal ollama service install' rewrites it")
