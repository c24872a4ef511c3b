"""``dslocal chat`` (the interactive chat) and ``dslocal ask`` (one question, for scripts)."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext, FiniteFloatRange
from dslocal.cli.output import emit, json_option, note

LEVELS = ("low", "medium", "high", "max")


def _chat_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options chat and ask share: where the model runs, thinking, sampling."""
    decorators = [
        click.option("--backend", type=click.Choice(["ollama", "embedded", "openai", "deepseek"]), default="ollama",
                     show_default=True, help="Ollama; 'embedded': llama.cpp in dslocal itself (no Ollama needed; MODEL "
                     "may be a GGUF path); any OpenAI-compatible server (--url); or the DeepSeek API (needs a key; MODEL: "
                     "deepseek-flash unless named, e.g. deepseek-v4-pro)."),
        click.option("--url", help="The OpenAI-compatible server's base URL, e.g. http://127.0.0.1:8080/v1."),
        click.option("--dialect", type=click.Choice(["llama-server", "vllm", "ollama", "generic"]), default="generic",
                     show_default=True, help="How the --url server is asked to think or not."),
        click.option("--think/--no-think", "think", default=None, help="Reasoning on or off (default: the model's own)."),
        click.option("--think-level", type=click.Choice(LEVELS),
                     help="Reasoning effort, for models with levels (V4: high, max; the DeepSeek API: low, high, max)."),
        click.option("--temperature", type=FiniteFloatRange(0.0, 2.0), help="Default: the model card's value."),
        click.option("--top-p", type=FiniteFloatRange(0.0, 1.0), help="Default: the model card's value."),
        click.option("--ctx", type=click.IntRange(256, 1 << 24), help="Context window (Ollama's num_ctx)."),
        click.option("--max-tokens", type=click.IntRange(-2, 1 << 24), help="Most tokens to generate (-1: no limit)."),
        click.option("--seed", type=int, help="Sampling seed, for repeatable answers."),
        click.option("--system", "system", help="A system prompt (folded into the first turn for R1 and its distills)."),
    ]
    return functools.reduce(lambda f, d: d(f), reversed(decorators), command)


def _options(think: bool | None, think_level: str | None, temperature: float | None, top_p: float | None,
             ctx: int | None, max_tokens: int | None, seed: int | None):  # -> ChatOptions
    from dslocal.chat.events import ChatOptions

    return ChatOptions(think=think_level if think_level and think is not False else think, temperature=temperature,
                       top_p=top_p, num_ctx=ctx, max_tokens=max_tokens, seed=seed)


def _target(app: AppContext, backend: str, model: str | None, url: str | None, dialect: str, think: bool | None,
            last_used: str | None = None):  # -> Target
    from dslocal.chat.connect import deepseek_target, ollama_target, openai_target
    from dslocal.chat.keys import get_key
    from dslocal.errors import UsageError

    if backend == "ollama":
        if url:
            raise UsageError("--url is for --backend openai or deepseek", "Ollama's address is the ollama_host setting")
        return ollama_target(app.settings(), model, last_used=last_used)
    if backend == "deepseek":
        return deepseek_target(model, url=url)
    if backend == "embedded":
        return _embedded_target(app, model, think)
    if not url:
        raise UsageError("--backend openai needs --url", "e.g. --url http://127.0.0.1:8080/v1")
    return openai_target(url, model, api_key=get_key("openai"), dialect=dialect, think=think)


def _embedded_target(app: AppContext, model: str | None, think: bool | None):  # -> Target
    """llama.cpp's server from xllamacpp in a child process, for this chat only (loopback, a random key)."""
    import atexit

    from dslocal.chat.connect import Target
    from dslocal.chat.rules import rules_for
    from dslocal.engines.embedded import for_chat, require
    from dslocal.engines.models import resolve_model
    from dslocal.engines.prepare import launch_for
    from dslocal.errors import UsageError
    from dslocal.hardware.detect import detect

    require()
    if not model:
        raise UsageError("--backend embedded needs a model", "a catalog id, an Ollama model name or a GGUF path")
    settings = app.settings()
    files = resolve_model(settings, model)
    launch, _ = launch_for(settings, files, detect(settings.models_dir))
    server = for_chat(launch, app.paths.log_dir / "embedded.log")
    atexit.register(server.stop)
    server.start(progress=note)
    catalog_id = files.variant.id if files.variant else None
    return Target(server.chat_backend(), rules_for(files.alias, catalog_id=catalog_id), files.alias, catalog_id)


def _store(app: AppContext):  # -> HistoryStore
    from dslocal.chat.history import HistoryStore, history_path

    return HistoryStore(history_path(app.paths.data_dir))


CHAT_EPILOG = """\b
Thinking is shown dimmed while the model reasons and folds to one line when the answer starts
(/thinking show keeps it). DeepSeek's usage rules apply by default: the catalog's temperature and
top_p, no system prompt for R1 and its distills (a given one goes into the first user turn), and
the model's own thinking switch (V3.1/V3.2: on or off; V4: high or max). Every conversation is kept
in dslocal's history ('dslocal history ls'); an answer cut short by Ctrl+C or an error is kept, marked.

\b
Examples:
  dslocal chat                       the model used last, or the only one in Ollama
  dslocal chat r1-distill-qwen-7b    a catalog id finds the model 'dslocal pull' made
  dslocal chat deepseek-v3.1 --no-think
  dslocal chat --resume              carry on with the last conversation
  dslocal chat --resume 3f9a         ... or the one whose id starts with 3f9a
  dslocal chat qwen --backend openai --url http://127.0.0.1:8080/v1 --dialect llama-server
  dslocal chat --backend deepseek    the DeepSeek API (key: DEEPSEEK_API_KEY or 'dslocal key set deepseek')
  dslocal chat deepseek-v4-pro --backend deepseek --think-level max

\b
In the chat: /help lists the commands (/think, /set temperature 0.5, /system, /clear, /retry,
/save, /stats, /model, /bye). Ctrl+C stops an answer; Ctrl+D leaves.
"""


@click.command("chat", epilog=CHAT_EPILOG)
@click.argument("model", required=False)
@_chat_options
@click.option("--resume", "resume", is_flag=False, flag_value="", default=None, metavar="[ID]",
              help="Continue a conversation: the last one, or the one with this id (or id prefix).")
@click.option("--no-history", is_flag=True, help="Keep nothing of this chat on disk.")
@click.option("--thinking", "thinking_mode", type=click.Choice(["fold", "show", "hide"]), default="fold", show_default=True,
              help="How reasoning is shown.")
@click.pass_obj
def chat_cmd(app: AppContext, model: str | None, backend: str, url: str | None, dialect: str, think: bool | None,
             think_level: str | None, temperature: float | None, top_p: float | None, ctx: int | None,
             max_tokens: int | None, seed: int | None, system: str | None, resume: str | None, no_history: bool,
             thinking_mode: str) -> None:
    """Chat with a local DeepSeek: streaming Markdown, reasoning shown properly, history kept."""
    from rich.console import Console

    from dslocal.chat.session import ChatSession
    from dslocal.cli.chat_repl import Repl
    from dslocal.errors import UsageError

    if resume is not None and no_history:
        raise UsageError("--resume reads the history, --no-history keeps none", "give one of them")
    store = None if no_history else _store(app)
    previous = None
    if resume is not None:
        previous = store.get(store.resolve(resume)) if resume else store.latest()
        if previous is None:
            raise UsageError("there is no conversation to resume yet", "start one with 'dslocal chat'")
        model = model or previous.model
        backend = previous.backend if backend == "ollama" and previous.backend in ("ollama", "deepseek") else backend
    last_used = None if model or store is None else _last_model(store)
    target = _target(app, backend, model, url, dialect, think, last_used)
    options = _options(think, think_level, temperature, top_p, ctx, max_tokens, seed)
    if previous is not None:
        options = _merge_saved(previous.settings, options)
    session = ChatSession(target.backend, target.rules, options=options,
                          system=system if system is not None else (previous.settings or {}).get("system") if previous else system,
                          store=store, conversation_id=previous.id if previous else None,
                          messages=previous.messages if previous else ())
    console = Console(highlight=False)
    repl = Repl(session, console, rich=console.is_terminal, thinking_mode=thinking_mode,
                save=None if store is None else functools.partial(_save, store),
                switch=lambda name: _target(app, backend, name, url, dialect, think))
    intro = f"resuming {previous.id} ({len(previous.messages)} messages)" if previous is not None else None
    try:
        repl.run(intro)
    finally:
        if store is not None:
            store.close()


def _last_model(store) -> str | None:  # noqa: ANN001
    latest = store.latest()
    return latest.model if latest is not None else None


def _merge_saved(settings: dict | None, options):  # noqa: ANN001
    """A resumed conversation keeps its options, except those given on this command line."""
    import dataclasses

    saved = (settings or {}).get("options") or {}
    changes = {}
    for field in dataclasses.fields(options):
        if getattr(options, field.name) in (None, (), {}) and saved.get(field.name) not in (None, [], {}):
            value = saved[field.name]
            changes[field.name] = tuple(value) if field.name == "stop" else value
    return dataclasses.replace(options, **changes)


def _save(store, session, path: Path | None) -> Path:  # noqa: ANN001
    from dslocal.chat.history import export_markdown
    from dslocal.errors import UsageError
    from dslocal.fsutil import atomic_write_bytes

    if session.conversation_id is None:
        raise UsageError("nothing to save yet", "ask something first")
    target = path or Path(f"dslocal-chat-{session.conversation_id}.md")
    atomic_write_bytes(target, export_markdown(store.get(session.conversation_id)).encode("utf-8"))
    return target


ASK_EPILOG = """\b
stdout is the answer alone (on a pipe it is written when the answer is complete, so reasoning
that arrives untagged can still be told apart); --json prints the answer with its reasoning and
figures. The prompt may come from stdin: with a PROMPT too, stdin is appended to it.

\b
Examples:
  dslocal ask r1-distill-qwen-7b "Why is the sky blue?"
  git diff | dslocal ask deepseek-v3.1 "Review this change:" --no-think
  dslocal ask r1-distill-qwen-7b "2+2?" --json | jq -r .data.thinking
  dslocal ask --backend deepseek "Summarise RFC 9110 in one line"
"""


@click.command("ask", epilog=ASK_EPILOG)
@click.argument("model", required=False)
@click.argument("prompt", required=False)
@_chat_options
@click.option("--show-thinking", is_flag=True, help="Also write the reasoning, on stderr.")
@click.option("--save", "keep", is_flag=True, help="Keep the question and answer in dslocal's history.")
@json_option
@click.pass_obj
def ask_cmd(app: AppContext, model: str | None, prompt: str | None, backend: str, url: str | None, dialect: str,
            think: bool | None, think_level: str | None, temperature: float | None, top_p: float | None,
            ctx: int | None, max_tokens: int | None, seed: int | None, system: str | None, show_thinking: bool,
            keep: bool, as_json: bool) -> None:
    """Ask one question and print the answer (for scripts)."""
    from dslocal.chat.session import ChatSession
    from dslocal.cli.chat_render import PlainRenderer
    from dslocal.errors import UsageError

    if backend == "deepseek" and prompt is None and model is not None:
        model, prompt = None, model  # dslocal ask --backend deepseek "question"
    text = _prompt_text(prompt)
    if not text.strip():
        raise UsageError("no prompt", 'give one: dslocal ask MODEL "question" (or pipe it on stdin)')
    target = _target(app, backend, model, url, dialect, think)
    store = _store(app) if keep else None
    session = ChatSession(target.backend, target.rules, options=_options(think, think_level, temperature, top_p, ctx,
                                                                           max_tokens, seed), system=system, store=store)
    stream_now = sys.stdout.isatty() and not as_json
    out = sys.stdout if stream_now else _Buffer()
    renderer = PlainRenderer(out, sys.stderr, "show" if show_thinking else "hide", thinking_out=sys.stderr,
                             live=stream_now)
    for line in session.request()[2]:
        note(line)
    try:
        with renderer:
            events = session.send(text)
            try:
                for event in events:
                    renderer.event(event)
            except KeyboardInterrupt:
                renderer.cancel()
                events.close()
                raise
    finally:
        if store is not None:
            store.close()
    answer = renderer.current
    last = session.messages[-1]
    if answer is not None and answer.error is not None:
        raise _failure(answer.error, target.backend.name)
    done = answer.done if answer is not None else None
    if as_json:
        emit("ask", {"model": target.model, "backend": target.backend.name, "answer": last.content,
                     "thinking": last.thinking, "done_reason": done.reason if done else None,
                     "thinking_unterminated": bool(done and done.thinking_unterminated),
                     "stats": last.stats.as_dict() if last.stats else None,
                     "conversation": session.conversation_id}, as_json=True, human=lambda: None)
    elif not stream_now:
        sys.stdout.write(out.getvalue())  # type: ignore[union-attr]
        sys.stdout.flush()
    if done is not None and done.thinking_unterminated:
        note("dslocal: the reasoning never finished (token limit?): no answer; raise --max-tokens")


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


def _failure(error, backend: str):  # noqa: ANN001 -> DslocalError
    """A ChatError as the error the boundary prints, with the exit code of its kind."""
    from dslocal.errors import DslocalError, NetworkError, NotFoundError, OllamaError, UsageError

    if error.kind == "not_found":
        return NotFoundError(error.message, error.hint)
    if error.kind == "no_thinking":
        return UsageError(error.message, "leave out --think (or give --no-think)")
    if backend == "ollama":
        return OllamaError(error.message, error.hint)
    if error.kind == "connection":
        return NetworkError(error.message, error.hint)
    return DslocalError(error.message, error.hint)


def _prompt_text(prompt: str | None) -> str:
    piped = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if prompt and piped.strip():
        return f"{prompt}\n\n{piped}"
    return prompt if prompt is not None else piped
