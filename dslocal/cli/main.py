"""The ``dslocal`` command: a lazily loaded command group behind the error boundary."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from dslocal import __version__
from dslocal.cli.boundary import run
from dslocal.cli.context import AppContext
from dslocal.cli.lazy import LazyCommand, LazyGroup, refuse_empty_arguments

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

COMMANDS: dict[str, LazyCommand] = {
    "paths": LazyCommand(
        "dslocal.cli.paths_cmd:paths_cmd", "Show where dslocal keeps config, models, cache and logs."
    ),
    "pull": LazyCommand("dslocal.cli.pull_cmd:pull_cmd", "Download, verify, merge and import a DeepSeek model into Ollama, with the least disk."),
    "ollama": LazyCommand("dslocal.cli.ollama_cmd:ollama_group", "Start, stop and inspect a dslocal-managed Ollama server."),
    "ls": LazyCommand("dslocal.cli.models_cmd:ls_cmd", "Ollama's models, with where dslocal got them from."),
    "rm": LazyCommand("dslocal.cli.models_cmd:rm_cmd", "Remove a model from Ollama; its blobs that no other model uses are deleted at once."),
    "ps": LazyCommand("dslocal.cli.models_cmd:ps_cmd", "Loaded models and their GPU share (size_vram / size)."),
    "tune": LazyCommand("dslocal.cli.models_cmd:tune_cmd", "Change a model's parameters; re-created cheaply from itself (no weights copied)."),
    "list": LazyCommand("dslocal.cli.catalog_cmd:list_cmd", "Every DeepSeek variant in the catalog, with its fit verdict for this machine."),
    "show": LazyCommand("dslocal.cli.catalog_cmd:show_cmd", "Everything the catalog knows about one variant."),
    "plan": LazyCommand("dslocal.cli.plan_cmd:plan_cmd", "Whether and where a model runs here, with its Ollama settings and expected speed."),
    "recommend": LazyCommand("dslocal.cli.plan_cmd:recommend_cmd", "Every variant ranked for this machine by quality, speed and fit, with a reason each."),
    "modelfile": LazyCommand("dslocal.cli.plan_cmd:modelfile_cmd", "An Ollama Modelfile for a model, with settings from the plan."),
    "hw": LazyCommand(
        "dslocal.cli.hw_cmd:hw_cmd", "Detect CPUs, memory, disk and GPUs/accelerators, with what Ollama can use."
    ),
    "download": LazyCommand(
        "dslocal.cli.download_cmd:download_cmd", "Download a model repository's files (resumable, verified, mirror-aware)."
    ),
    "gguf": LazyCommand(
        "dslocal.cli.gguf_cmd:gguf_group", "Inspect (and check), merge and split GGUF files and split sets."
    ),
    "recipe": LazyCommand("dslocal.cli.recipe_cmd:recipe_group", "Quant recipes: list, show, estimate a size, or read one from a GGUF."),
    "quantize": LazyCommand("dslocal.cli.recipe_cmd:quantize_cmd", "Quantize a GGUF with a recipe, through llama.cpp's own quantizer."),
    "chat": LazyCommand("dslocal.cli.chat_cmd:chat_cmd", "Chat with a local DeepSeek: streaming Markdown, reasoning shown properly, history kept."),
    "ask": LazyCommand("dslocal.cli.chat_cmd:ask_cmd", "Ask one question and print the answer (for scripts)."),
    "serve": LazyCommand("dslocal.cli.serve_cmd:serve_cmd", "Serve a model as an OpenAI-compatible API (chat completions with reasoning, models list)."),
    "integrate": LazyCommand("dslocal.cli.integrate_cmd:integrate_group", "Settings for Dify, Open WebUI, OpenAI SDKs and Continue, and a live check."),
    "cluster": LazyCommand("dslocal.cli.cluster_cmd:cluster_group", "DeepSeek across nodes: plan it on SGLang/vLLM/vLLM-Ascend, launch each node, check it answers."),
    "tui": LazyCommand("dslocal.cli.tui_cmd:tui_cmd", "The wizard from this machine to a running chat, and a launcher afterwards."),
    "key": LazyCommand("dslocal.cli.key_cmd:key_group", "API keys for the DeepSeek API and OpenAI-compatible servers, in the OS keyring."),
    "config": LazyCommand(
        "dslocal.cli.config_cmd:config_group", "Show or change settings (flags > env > file > defaults)."
    ),
    "history": LazyCommand(
        "dslocal.cli.history_cmd:history_group", "Saved chat conversations: list, show, export and remove them."
    ),
    "demo": LazyCommand(
        "dslocal.cli.demo_cmd:demo_cmd", "Prove this installation works: a tiny DeepSeek, pulled from a loopback hub, answers (offline)."
    ),
    "completion": LazyCommand("dslocal.cli.completion_cmd:completion_cmd", "Print the shell completion script for bash, zsh or fish."),
    "launcher": LazyCommand("dslocal.cli.launcher_cmd:launcher_group", "Add dslocal to the desktop's application menu, or remove it; open the TUI in a terminal."),
}

EPILOG = """\b
Examples:
  dslocal recommend             what runs best on this machine, and why
  dslocal pull r1-distill-qwen-7b
  dslocal chat r1-distill-qwen-7b
  dslocal ask r1-distill-qwen-7b "Why is the sky blue?" --json
  dslocal plan v4-flash-q2 --hw rtx4090-128gb
  dslocal hw --measure          what this machine has, its RAM bandwidth measured
  dslocal integrate dify r1-distill-qwen-7b   every field of Dify's Ollama form
  dslocal paths                 where config, models, cache and logs live
  dslocal config show --json    effective settings and where each came from
  dslocal config set hf_endpoint https://hf-mirror.com
  dslocal gguf inspect DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf
  dslocal gguf merge X-00001-of-00005.gguf -o X.gguf --delete-shards

\b
Environment: DSLOCAL_HOME puts every dslocal folder under one directory;
DSLOCAL_CONFIG names the config file; DSLOCAL_DEBUG=1 shows tracebacks. On a terminal,
'dslocal' alone opens the TUI (DSLOCAL_NO_TUI=1 prints this help instead).
"""


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    invoke_without_command=True,
    context_settings=CONTEXT_SETTINGS,
    epilog=EPILOG,
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this config file (default: see 'dslocal paths'; also DSLOCAL_CONFIG).",
)
@click.version_option(__version__, "-V", "--version", prog_name="dslocal", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """dslocal: run DeepSeek (R1, V3, V3.1, V3.2, V4 and the R1 distills) on your own machine."""
    ctx.obj = AppContext(config_file=config_file)
    if ctx.invoked_subcommand is None:
        if sys.stdin.isatty() and sys.stdout.isatty() and not os.environ.get("DSLOCAL_NO_TUI"):
            from dslocal.cli.tui_cmd import run_tui

            run_tui(ctx.obj)
            return
        click.echo(ctx.get_help())


refuse_empty_arguments(cli)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(cli, argv))
