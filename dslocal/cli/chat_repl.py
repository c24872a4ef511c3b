"""The interactive chat: a line editor, slash commands, and Ctrl+C that stops the answer, not the program."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.text import Text

from dslocal.chat.rules import parse_think, resolve_think
from dslocal.chat.session import ChatSession
from dslocal.cli.chat_render import (
    THINKING_MODES,
    PlainRenderer,
    RichRenderer,
    stats_line,
)
from dslocal.errors import DslocalError

HELP = """\
/think on|off|LEVEL    reasoning on, off, or a level (low, medium, high, max) where the model has levels
/thinking show|fold|hide   how reasoning is shown; /thinking alone prints the last reasoning in full
/set KEY VALUE         temperature, top_p, min_p, top_k, ctx, max_tokens, seed (/set alone lists them)
/system [TEXT|off]     show, set or remove the system prompt
/clear                 start a new conversation (the old one stays in 'dslocal history')
/retry                 answer the last question again
/save [FILE]           write this conversation as Markdown
/stats                 the last answer's figures
/model [NAME]          the model in use, or switch to another (the conversation goes on)
/bye                   leave (also /exit, Ctrl+D)
Enter sends; Alt+Enter (or Esc then Enter) adds a line; \"\"\" starts and ends a multi-line message.
Ctrl+C stops an answer (what streamed is kept) and clears the line at the prompt."""

SETTABLE = {"temperature": ("temperature", float), "top_p": ("top_p", float), "min_p": ("min_p", float),
            "top_k": ("top_k", int), "ctx": ("num_ctx", int), "num_ctx": ("num_ctx", int),
            "max_tokens": ("max_tokens", int), "num_predict": ("max_tokens", int), "seed": ("seed", int)}


def line_reader(console: Console) -> Callable[[str], str]:
    """prompt_toolkit on a terminal (history, Alt+Enter for a new line); plain lines from a pipe."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        from prompt_toolkit import PromptSession
        from prompt_toolkit.key_binding import KeyBindings

        bindings = KeyBindings()

        @bindings.add("escape", "enter")
        def _newline(event) -> None:
            event.current_buffer.insert_text("\n")

        prompt_session: PromptSession = PromptSession(key_bindings=bindings)
        return lambda prompt: prompt_session.prompt(prompt)

    def read(prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    return read


def read_message(read: Callable[[str], str]) -> str:
    """One message; a line starting with \"\"\" reads on until a line ending with \"\"\"."""
    first = read(">>> ")
    if not first.lstrip().startswith('"""'):
        return first
    lines = [first.lstrip()[3:]]
    if lines[0].rstrip().endswith('"""') and len(lines[0].rstrip()) >= 3:
        return lines[0].rstrip()[:-3]
    while True:
        line = read("... ")
        if line.rstrip().endswith('"""'):
            lines.append(line.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(line)


class Repl:
    def __init__(self, session: ChatSession, console: Console, *, rich: bool, thinking_mode: str = "fold",
                 save: Callable[[ChatSession, Path | None], Path] | None = None,
                 switch: Callable[[str], Any] | None = None,
                 read: Callable[[str], str] | None = None) -> None:
        self.session = session
        self.console = console
        self.rich = rich
        self.thinking_mode = thinking_mode
        self.save = save
        self.switch = switch  # model name -> dslocal.chat.connect.Target
        self.read = read or line_reader(console)

    # -- output
    def say(self, text: str, style: str = "dim") -> None:
        self.console.print(Text(text, style=style))

    def renderer(self) -> RichRenderer | PlainRenderer:
        if self.rich:
            return RichRenderer(self.console, self.thinking_mode)
        return PlainRenderer(sys.stdout, sys.stderr, self.thinking_mode, thinking_out=sys.stdout)

    def show_transcript(self) -> None:
        for message in self.session.messages:
            if message.role == "user":
                self.console.print(Text(f">>> {message.content}", style="bold"))
            elif message.role == "assistant":
                if message.thinking and self.thinking_mode == "show":
                    self.console.print(Text(message.thinking, style="dim italic"))
                if self.rich:
                    self.console.print(Markdown(message.content or ""))
                else:
                    self.console.print(message.content)
                if message.partial:
                    self.say("(this answer was cut short)", "yellow")

    # -- the loop
    def run(self, resumed: str | None = None) -> int:
        """Read and answer until /bye or Ctrl+D; ``resumed`` introduces the transcript shown first."""
        backend = self.session.backend
        self.say(f"{backend.model} via {backend.name}. /help for commands, /bye to leave.")
        if resumed:
            self.say(resumed)
            self.show_transcript()
        for note in self.session.request()[2]:
            self.say(note, "yellow")
        while True:
            try:
                text = read_message(self.read)
            except KeyboardInterrupt:
                self.say("(Ctrl+D or /bye to leave)")
                continue
            except EOFError:
                return 0
            if not text.strip():
                continue
            if text.startswith("/"):
                try:
                    if not self.command(text):
                        return 0
                except DslocalError as exc:
                    self.say(f"{exc.message}" + (f" ({exc.hint})" if exc.hint else ""), "red")
                continue
            self.answer(self.session.send(text))

    def answer(self, events: Iterator) -> None:
        for note in self.session.notes:
            self.say(note, "yellow")
        renderer = self.renderer()
        with renderer:
            try:
                for event in events:
                    renderer.event(event)
            except KeyboardInterrupt:
                renderer.cancel()
                events.close()  # type: ignore[attr-defined]
        current = renderer.current
        if current is not None and current.error is not None and current.error.kind == "no_thinking":
            self.say("tip: /think off", "yellow")

    # -- slash commands; False ends the chat
    def command(self, line: str) -> bool:
        name, _, arg = line[1:].partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("bye", "exit", "quit"):
            return False
        handler = getattr(self, f"cmd_{name}", None)
        if handler is None:
            raise DslocalError(f"unknown command /{name}", "/help lists them")
        handler(arg)
        return True

    def cmd_help(self, arg: str) -> None:
        self.console.print(HELP)

    def cmd_think(self, arg: str) -> None:
        if not arg:
            self.say(f"think: {self.session.options.think if self.session.options.think is not None else 'model default'}")
            return
        value = parse_think(arg)
        _, notes = resolve_think(self.session.rules, value, self.session.options.num_ctx)
        self.session.set_options(think=value)
        for note in notes:
            self.say(note, "yellow")
        self.say(f"think: {arg}")

    def cmd_thinking(self, arg: str) -> None:
        if not arg:
            last = next((m for m in reversed(self.session.messages) if m.role == "assistant"), None)
            self.console.print(Text(last.thinking if last and last.thinking else "(no reasoning in the last answer)",
                                    style="italic"))
            return
        if arg not in THINKING_MODES:
            raise DslocalError(f"/thinking takes {', '.join(THINKING_MODES)}", None)
        self.thinking_mode = arg
        self.say(f"reasoning: {arg}")

    def cmd_set(self, arg: str) -> None:
        options = self.session.options
        if not arg:
            for key, (field, _) in SETTABLE.items():
                if key in ("num_ctx", "num_predict"):
                    continue
                self.say(f"{key} = {getattr(options, field)}")
            return
        key, _, value = arg.partition(" ")
        if key not in SETTABLE:
            raise DslocalError(f"/set knows {', '.join(k for k in SETTABLE if k not in ('num_ctx', 'num_predict'))}, "
                               f"not {key!r}", None)
        field, kind = SETTABLE[key]
        try:
            number = kind(value) if value.strip() not in ("", "default") else None
        except ValueError:
            raise DslocalError(f"/set {key} needs a number, not {value!r}", None) from None
        self.session.set_options(**{field: number})
        self.say(f"{key} = {number if number is not None else 'default'}")

    def cmd_system(self, arg: str) -> None:
        if not arg:
            self.say(f"system prompt: {self.session.system or '(none)'}")
            return
        self.session.set_system(None if arg == "off" else arg)
        for note in self.session.request()[2]:
            self.say(note, "yellow")
        self.say("system prompt removed" if arg == "off" else "system prompt set")

    def cmd_clear(self, arg: str) -> None:
        self.session.clear()
        self.say("a new conversation (the last one is in 'dslocal history')")

    def cmd_retry(self, arg: str) -> None:
        self.answer(self.session.retry())

    def cmd_stats(self, arg: str) -> None:
        stats = self.session.last_stats
        self.say(stats_line(stats) if stats else "(no answer yet)", "")

    def cmd_model(self, arg: str) -> None:
        if arg:
            if self.switch is None:
                raise DslocalError("this backend cannot switch models here", "start another 'dslocal chat MODEL'")
            target = self.switch(arg)
            self.session.backend, self.session.rules = target.backend, target.rules
            for note in self.session.request()[2]:
                self.say(note, "yellow")
        rules = self.session.rules
        self.say(f"{self.session.backend.model} via {self.session.backend.name}; rules of {rules.family} "
                 f"(thinking {rules.thinking}, temperature {rules.temperature}, top_p {rules.top_p})", "")

    def cmd_save(self, arg: str) -> None:
        if self.save is None:
            raise DslocalError("this chat is not kept in the history, so there is nothing to save", "leave out --no-history")
        path = self.save(self.session, Path(arg).expanduser() if arg else None)
        self.say(f"saved {path}")

