"""The chat interface's values: what a backend streams, and the options it is asked with.

A backend's ``stream(messages, options)`` yields :data:`ChatEvent` values: thinking and answer
deltas as they arrive, then exactly one :class:`Done` or :class:`ChatError`. Closing the iterator
cancels the answer (the backend closes its connection). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, Union

THINK_LEVELS = ("low", "medium", "high", "max")


@dataclass(frozen=True)
class ThinkingDelta:
    text: str


@dataclass(frozen=True)
class AnswerDelta:
    text: str


@dataclass(frozen=True)
class ThinkingWasAnswer:
    """The text streamed so far as the answer was reasoning after all: a ``</think>`` arrived with no
    ``<think>`` before it (a template that pre-filled the opening tag). Renderers move it."""

    text: str


@dataclass(frozen=True)
class Stats:
    """Per-answer figures. Counts and durations come from the backend's own counters when it gives
    them (``source`` says which); time to first token and thinking time are measured by the client."""

    prompt_tokens: int | None = None
    answer_tokens: int | None = None  # every generated token, thinking included
    prompt_seconds: float | None = None
    decode_seconds: float | None = None
    load_seconds: float | None = None
    first_token_seconds: float | None = None
    thinking_seconds: float | None = None
    total_seconds: float | None = None
    source: str = "client"  # "backend" when the counts are the server's own

    @property
    def decode_tps(self) -> float | None:
        if self.answer_tokens and self.decode_seconds:
            return self.answer_tokens / self.decode_seconds
        return None

    @property
    def prompt_tps(self) -> float | None:
        if self.prompt_tokens and self.prompt_seconds:
            return self.prompt_tokens / self.prompt_seconds
        return None

    def summary(self, *, detail: bool = False, reason: str = "stop") -> str:
        """``Thought for 12.3 s · 25.1 tok/s · 412 tokens`` with the figures that are known; ``detail`` adds
        the prompt, the time to first token and a cut-off answer."""
        parts = []
        if self.thinking_seconds:
            parts.append(f"Thought for {self.thinking_seconds:.1f} s")
        if self.decode_tps:
            parts.append(f"{self.decode_tps:.1f} tok/s")
        if self.answer_tokens:
            parts.append(f"{self.answer_tokens} tokens")
        if detail and self.prompt_tokens:
            rate = f" at {self.prompt_tps:.0f} tok/s" if self.prompt_tps else ""
            parts.append(f"prompt {self.prompt_tokens} tokens{rate}")
        if detail and self.first_token_seconds is not None:
            parts.append(f"first token {self.first_token_seconds:.2f} s")
        if detail and reason == "length":
            parts.append("cut off at the token limit")
        return " · ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decode_tps"] = self.decode_tps
        data["prompt_tps"] = self.prompt_tps
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Stats | None:
        if not data:
            return None
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Done:
    """The answer ended. ``reason``: ``stop`` (the model finished), ``length`` (num_predict or the
    context ran out), ``cancelled`` (the user stopped it). ``thinking_unterminated``: the reasoning
    never closed (the answer is then empty)."""

    stats: Stats
    reason: str = "stop"
    thinking_unterminated: bool = False


@dataclass(frozen=True)
class ChatError:
    """The answer failed; what streamed before it is kept by the session, marked partial."""

    message: str
    hint: str | None = None
    kind: str = "backend"  # "connection", "not_found", "no_thinking", "refused", "backend"


ChatEvent = Union[ThinkingDelta, AnswerDelta, ThinkingWasAnswer, Done, ChatError]


@dataclass(frozen=True)
class Message:
    """One turn. ``thinking`` is kept in the transcript but never sent back to the model."""

    role: str  # "system", "user" or "assistant"
    content: str
    thinking: str = ""
    partial: bool = False  # the answer was cut short (cancelled, an error, a crash)
    stats: Stats | None = None
    model: str = ""

    def wire(self) -> dict[str, str]:
        """The message as it is sent back: role and content only (DeepSeek: no reasoning in history)."""
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatOptions:
    """What one generation is asked with. ``think``: None leaves it to the model's default, a bool
    turns reasoning on or off, a level (``low``..``max``) asks for that much where the model has levels."""

    think: bool | str | None = None
    temperature: float | None = None
    top_p: float | None = None
    min_p: float | None = None
    top_k: int | None = None
    num_ctx: int | None = None
    max_tokens: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # more backend options, passed through as-is

    def sampling(self) -> dict[str, Any]:
        pairs = {"temperature": self.temperature, "top_p": self.top_p, "min_p": self.min_p, "top_k": self.top_k,
                 "seed": self.seed}
        return {k: v for k, v in pairs.items() if v is not None}


class ChatBackend(Protocol):
    """Anything that can answer: Ollama, an OpenAI-compatible server, the DeepSeek API, llama.cpp."""

    name: str  # "ollama", "openai", "deepseek", "embedded"
    model: str

    def stream(self, messages: Sequence[Message], options: ChatOptions) -> Iterator[ChatEvent]: ...


def wire_history(messages: Sequence[Message]) -> list[dict[str, str]]:
    """The history sent to a model: no thinking, and no empty partial answers."""
    return [m.wire() for m in messages if not (m.role == "assistant" and m.partial and not m.content)]
