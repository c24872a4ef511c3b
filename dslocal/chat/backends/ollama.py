"""Chat through Ollama's ``/api/chat``: ``think`` as a bool or a level, reasoning from ``message.thinking``
and, for older servers and templates without ``.Thinking``, from inline ``<think>`` tags in the content.

Errors follow the server's source (server/routes.go ChatHandler): an unknown model is a 404
``model 'X' not found``; ``think`` for a model without the thinking capability is a 400
``"X" does not support thinking``; after the first line an error arrives as an ``{"error": ...}`` line.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from dslocal.chat.backends.assemble import Assembler
from dslocal.chat.events import ChatError, ChatEvent, ChatOptions, Done, Message, wire_history
from dslocal.errors import DslocalError, NotFoundError
from dslocal.ollama.client import OllamaClient


def ollama_options(options: ChatOptions) -> dict[str, Any]:
    body = options.sampling()
    if options.num_ctx:
        body["num_ctx"] = options.num_ctx
    if options.max_tokens is not None:
        body["num_predict"] = options.max_tokens
    if options.stop:
        body["stop"] = list(options.stop)
    body.update(options.extra)
    return body


def chat_request(model: str, messages: Sequence[Message], options: ChatOptions,
                 keep_alive: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": wire_history(messages), "stream": True}
    if options.think is not None:
        body["think"] = options.think
    sent = ollama_options(options)
    if sent:
        body["options"] = sent
    if keep_alive is not None:
        body["keep_alive"] = keep_alive
    return body


def _error_event(exc: DslocalError, model: str, think: Any) -> ChatError:
    text = exc.message
    if isinstance(exc, NotFoundError) or "not found" in text:
        return ChatError(f"Ollama has no model {model!r}", "see 'dslocal ls', or pull it with 'dslocal pull ID'",
                         kind="not_found")
    if "does not support thinking" in text:
        return ChatError(f"{model} does not support thinking (think={think!r} was asked)",
                         "turn it off with /think off (or --no-think)", kind="no_thinking")
    if "no Ollama server answers" in text:
        return ChatError(text, exc.hint, kind="connection")
    if "stopped answering" in text or "connection" in text and "broke" in text:
        return ChatError(f"Ollama went away in the middle of the answer ({text})",
                         "the partial answer is kept; check 'dslocal ollama status', then /retry", kind="connection")
    return ChatError(text, exc.hint, kind="refused" if "refused" in text else "backend")


class OllamaChat:
    """``stream()`` yields thinking and answer deltas, then Done with the server's own counters."""

    name = "ollama"

    def __init__(self, client: OllamaClient, model: str, *, keep_alive: str | None = None,
                 start: str = "detect", read_timeout: float = 600.0) -> None:
        self.client = client
        self.model = model
        self.keep_alive = keep_alive
        self.start = start  # how inline content is parsed when the server does not split the reasoning
        self.read_timeout = read_timeout

    def stream(self, messages: Sequence[Message], options: ChatOptions) -> Iterator[ChatEvent]:
        body = chat_request(self.model, messages, options, self.keep_alive)
        assembler = Assembler(self.start)
        final: dict[str, Any] = {}
        try:
            for line in self.client.chat_stream(body, timeout=self.read_timeout):
                message = line.get("message") or {}
                yield from assembler.thinking(str(message.get("thinking") or ""))
                yield from assembler.content(str(message.get("content") or ""))
                if line.get("done"):
                    final = line
                    break
        except DslocalError as exc:
            yield from assembler.finish()
            yield _error_event(exc, self.model, options.think)
            return
        yield from assembler.finish()
        if not final:
            yield ChatError("Ollama ended the answer without its final line", "check 'dslocal ollama logs'",
                            kind="connection")
            return
        yield Done(assembler.stats(**_counters(final)), reason=str(final.get("done_reason") or "stop"),
                   thinking_unterminated=assembler.thinking_unterminated)


def _seconds(ns: Any) -> float | None:
    return ns / 1e9 if isinstance(ns, (int, float)) and ns > 0 else None


def _counters(final: dict[str, Any]) -> dict[str, Any]:
    """The final line's counters (api/types.go Metrics): durations in nanoseconds."""
    return {
        "prompt_tokens": final.get("prompt_eval_count"),
        "answer_tokens": final.get("eval_count"),
        "prompt_seconds": _seconds(final.get("prompt_eval_duration")),
        "decode_seconds": _seconds(final.get("eval_duration")),
        "load_seconds": _seconds(final.get("load_duration")),
    }
