"""``dslocal demo``: the whole pipeline on a tiny generated model, offline, to prove an installation works."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dslocal.cli.context import AppContext
from dslocal.cli.output import emit, json_option, note


def folded_modelfile(text: str) -> list[str]:
    """The Modelfile's lines, a multi-line TEMPLATE folded to one (its text is in --json)."""
    lines: list[str] = []
    folding: list[str] | None = None
    for line in text.rstrip("\n").splitlines():
        if folding is not None:
            folding.append(line)
            if '"""' in line:
                lines.append(f'TEMPLATE """..."""  ({len(folding)} lines of Go template: DeepSeek\'s chat format)')
                folding = None
            continue
        if line.startswith('TEMPLATE """') and line.count('"""') == 1:
            folding = [line]
            continue
        if line.strip():
            lines.append(line)
    return lines


class _Printer:
    """One line per step on stderr as it ends (with its time), the answer streamed on stdout."""

    def __init__(self, *, stream_answer: bool) -> None:
        self.stream_answer = stream_answer
        self.count = 0
        self.part: str | None = None  # "thinking" or "answer": what the streamed line holds

    def __call__(self, event: Any) -> None:
        from dslocal.chat.events import AnswerDelta, ThinkingDelta, ThinkingWasAnswer
        from dslocal.demo import ModelfileReady, StepDone

        if isinstance(event, ModelfileReady):
            if self.stream_answer:
                for line in folded_modelfile(event.text):
                    note(f"        {line}")
        elif isinstance(event, StepDone):
            self._end_line()
            self.count += 1
            step = event.step
            line = f"  ok  {step.key:<9} {step.seconds:6.2f} s  {step.detail or step.title}"
            note(line)
        elif isinstance(event, (ThinkingDelta, ThinkingWasAnswer)) and self.stream_answer:
            self._switch("thinking", click.style("  thinking: ", dim=True))
            click.echo(click.style(event.text.lstrip("\n") if self.part == "thinking" else event.text, dim=True),
                       nl=False)
        elif isinstance(event, AnswerDelta) and self.stream_answer:
            self._switch("answer", "  answer:   ")
            click.echo(event.text, nl=False)

    def question(self, text: str) -> None:
        if self.stream_answer:
            click.echo(f"\n  >>> {text}")

    def _switch(self, part: str, label: str) -> None:
        if self.part != part:
            if self.part is not None:
                click.echo()
            click.echo(label, nl=False)
            self.part = part

    def _end_line(self) -> None:
        if self.part is not None:
            click.echo()
            self.part = None


@click.command(
    "demo",
    epilog="""\b
It generates a tiny model of DeepSeek's architecture (deepseek2: MLA attention,
a mixture of experts, DeepSeek's tokenizer) whose weights are made up: it always
reasons 'Hm.' and answers 'OK!'. The model is published as a split set on a
loopback Hugging Face double, then downloaded, verified and merged by dslocal's
own pipeline, given a Modelfile, loaded by an engine and asked one question.
Ollama is used when it runs (or is installed: a private server is started on
loopback for the demo), with the model pulled as 'dslocal-demo' and removed
afterwards; otherwise the embedded engine (pip install 'dslocal[embedded]').
Nothing leaves the machine, and the config file is not changed.

\b
Examples:
  dslocal demo
  dslocal demo --engine embedded       without Ollama even where it is installed
  dslocal demo --keep ./demo           keep the files (and the model in Ollama)
  dslocal demo --json | jq '.data.steps[] | [.key, .seconds]'
""",
)
@click.option("--engine", type=click.Choice(["auto", "ollama", "embedded"]), default="auto", show_default=True,
              help="auto: Ollama when it runs or is installed, else the embedded engine.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path),
              help="Work in this new or empty folder and keep it (and the model in Ollama).")
@json_option
@click.pass_obj
def demo_cmd(app: AppContext, engine: str, keep: Path | None, as_json: bool) -> None:
    """Prove this installation works: a tiny DeepSeek, pulled from a loopback hub, answers (offline)."""
    from dslocal.demo import DEMO_NAME, HONEST, QUESTION, DemoOptions, StepStarted, run_demo

    printer = _Printer(stream_answer=not as_json)
    if not as_json:
        note(f"dslocal demo: {HONEST}.")
        note("Everything runs on this machine (loopback only), in a temporary folder unless --keep.")

    def sink(event: Any) -> None:
        if isinstance(event, StepStarted) and event.key == "chat":
            printer.question(QUESTION)
        printer(event)

    result = run_demo(app.settings(), DemoOptions(engine=engine, keep=keep), sink=sink)

    def human() -> None:
        click.echo(f"\nSummary (engine: {result.engine_reason})")
        width = max(len(s.key) for s in result.steps)
        click.echo(f"  {'step'.ljust(width)}  {'seconds':>7}  what it did")
        for step in result.steps:
            click.echo(f"  {step.key.ljust(width)}  {step.seconds:7.2f}  {step.title}")
        click.echo(f"  {'total'.ljust(width)}  {result.total_seconds:7.2f}")
        if result.kept:
            click.echo(f"Kept in {result.folder}" + (f" (the Modelfile: {result.modelfile_path})"
                                                     if result.modelfile_path else ""))
        if result.kept and result.engine == "ollama":
            if result.ollama_store is not None:
                click.echo(f"{result.model} stays in the demo's own Ollama store: serve it with "
                           f"OLLAMA_MODELS={result.ollama_store} ollama serve")
            else:
                click.echo(f"{result.model} stays in Ollama: 'dslocal chat {DEMO_NAME}', "
                           f"and 'dslocal rm {DEMO_NAME}' removes it")
        click.echo("\nThis installation works: download, verification, merge, Modelfile, engine and chat all ran.")
        click.echo("Next: 'dslocal recommend' shows which real DeepSeek runs best on this machine.")

    emit("demo", result.as_dict(), as_json=as_json, human=human)
