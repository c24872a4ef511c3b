"""DeepSeek's reasoning, split from the answer: a streaming parser and the whole-text rule it must match.

The rule (``split_reasoning``), by where the prompt left the model:

* ``start="thinking"``: the template pre-filled ``<think>`` (R1's GGUF jinja, V3.1 in thinking mode).
  Everything up to the first ``</think>`` is reasoning; a repeated ``<think>`` at the start is dropped.
* ``start="detect"``: the output opens with ``<think>`` (the model wrote it) -> as above; otherwise a
  ``</think>`` with no opening tag means the opening was pre-filled after all (the text before it is
  reasoning; a bare ``</think>`` prefix, V3.1 without thinking, is empty reasoning); with neither tag the
  whole text is the answer.
* ``start="answer"``: no reasoning at all; the text is the answer verbatim.

Reasoning is stripped of surrounding whitespace; the answer of leading whitespace only. Only the first
``</think>`` counts: after it the answer is verbatim. A block that never closes is reasoning, and the
answer is empty (``unterminated``).

:class:`ReasoningParser` applies the same rule to a stream cut anywhere (tags split across chunks, or
bytes split inside a character with :meth:`ReasoningParser.feed_bytes`): partial tags and trailing
whitespace are held back, so tags never reach the answer and the deltas add up to the whole-text result.
When ``detect`` streamed text as the answer and a bare ``</think>`` then arrives, it emits
:class:`ThinkingWasAnswer` with the reasoning that text turned out to be.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from dslocal.chat.events import AnswerDelta, ThinkingDelta, ThinkingWasAnswer

OPEN = "<think>"
CLOSE = "</think>"
STARTS = ("detect", "thinking", "answer")

Delta = ThinkingDelta | AnswerDelta | ThinkingWasAnswer


@dataclass(frozen=True)
class Reasoned:
    thinking: str
    answer: str
    closed: bool  # a </think> ended the reasoning
    had_reasoning: bool  # the output carried reasoning (possibly empty), as opposed to an answer only

    @property
    def unterminated(self) -> bool:
        return self.had_reasoning and not self.closed


def _check_start(start: str) -> None:
    if start not in STARTS:
        raise ValueError(f"start must be one of {STARTS}, not {start!r}")


def _after_open(text: str) -> Reasoned:
    """``text`` begins inside the reasoning."""
    end = text.find(CLOSE)
    if end < 0:
        return Reasoned(text.strip(), "", closed=False, had_reasoning=True)
    return Reasoned(text[:end].strip(), text[end + len(CLOSE):].lstrip(), closed=True, had_reasoning=True)


def split_reasoning(text: str, start: str = "detect") -> Reasoned:
    """The whole-text rule (module docstring)."""
    _check_start(start)
    if start == "answer":
        return Reasoned("", text, closed=False, had_reasoning=False)
    stripped = text.lstrip()
    if stripped.startswith(OPEN):
        return _after_open(stripped[len(OPEN):])
    if start == "thinking":
        return _after_open(stripped)
    if CLOSE in stripped:
        return _after_open(stripped)
    return Reasoned("", stripped, closed=False, had_reasoning=False)


def _tag_tail(buf: str, tag: str) -> int:
    """Length of the longest end of ``buf`` that begins ``tag`` (a tag that may still be arriving)."""
    for n in range(min(len(buf), len(tag) - 1), 0, -1):
        if tag.startswith(buf[-n:]):
            return n
    return 0


class ReasoningParser:
    """Streaming :func:`split_reasoning`: ``feed(text)`` and ``finish()`` return the deltas to show."""

    def __init__(self, start: str = "detect") -> None:
        _check_start(start)
        self.start = start
        self.state = {"detect": "lead", "thinking": "think_lead", "answer": "answer"}[start]
        self.buf = ""
        self.thinking_started = False  # a non-blank reasoning character was emitted
        self.emitted_answer = ""  # what "maybe_answer" streamed, in case it turns out to be reasoning
        self.closed = False
        self.had_reasoning = False
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    # -- input
    def feed_bytes(self, data: bytes) -> list[Delta]:
        return self.feed(self._decoder.decode(data))

    def feed(self, text: str) -> list[Delta]:
        if not text or self.state == "ended":
            return []
        if self.state == "answer":
            return [AnswerDelta(text)]
        self.buf += text
        out: list[Delta] = []
        while self._step(out):
            pass
        return out

    def finish(self) -> list[Delta]:
        """The end of the stream: release what was held back, by the whole-text rule."""
        out = self.feed(self._decoder.decode(b"", final=True))
        rest, self.buf = self.buf, ""
        if self.state == "lead":
            if rest:
                out.append(AnswerDelta(rest))
        elif self.state in ("think_lead", "thinking"):
            self.had_reasoning = True
            text = rest.strip() if not self.thinking_started else rest.rstrip()
            if text:
                out.append(ThinkingDelta(text))
        elif self.state == "maybe_answer":
            if rest:
                out.append(AnswerDelta(rest))
        self.state = "ended"
        return out

    @property
    def result_flags(self) -> tuple[bool, bool]:
        """(closed, had_reasoning) so far."""
        return self.closed, self.had_reasoning

    # -- states; each returns True when it changed state and the buffer should be looked at again
    def _step(self, out: list[Delta]) -> bool:
        return getattr(self, f"_{self.state}")(out)

    def _lead(self, out: list[Delta]) -> bool:
        self.buf = self.buf.lstrip()
        if not self.buf:
            return False
        if self.buf.startswith(OPEN):
            self.buf = self.buf[len(OPEN):]
            self.state, self.had_reasoning = "thinking", True
            return True
        if self.buf.startswith(CLOSE):
            self.buf = self.buf[len(CLOSE):]
            self.state, self.had_reasoning, self.closed = "after", True, True
            return True
        if OPEN.startswith(self.buf) or CLOSE.startswith(self.buf):
            return False  # a tag may be arriving
        self.state = "maybe_answer"
        return True

    def _think_lead(self, out: list[Delta]) -> bool:
        self.had_reasoning = True
        self.buf = self.buf.lstrip()
        if not self.buf:
            return False
        if self.buf.startswith(OPEN):
            self.buf = self.buf[len(OPEN):]
            self.state = "thinking"
            return True
        if OPEN.startswith(self.buf):
            return False
        self.state = "thinking"
        return True

    def _thinking(self, out: list[Delta]) -> bool:
        end = self.buf.find(CLOSE)
        if end >= 0:
            text = self.buf[:end].rstrip()
            if not self.thinking_started:
                text = text.lstrip()
            if text:
                out.append(ThinkingDelta(text))
            self.buf = self.buf[end + len(CLOSE):]
            self.state, self.closed = "after", True
            return True
        keep = _tag_tail(self.buf, CLOSE)
        body = self.buf[: len(self.buf) - keep]
        if not self.thinking_started:
            stripped = body.lstrip()
            self.buf = self.buf[len(body) - len(stripped):]
            body = stripped
        ready = body.rstrip()
        if ready:
            out.append(ThinkingDelta(ready))
            self.thinking_started = True
            self.buf = self.buf[len(ready):]
        return False

    def _maybe_answer(self, out: list[Delta]) -> bool:
        end = self.buf.find(CLOSE)
        if end >= 0:
            reasoning = (self.emitted_answer + self.buf[:end]).strip()
            out.append(ThinkingWasAnswer(reasoning))
            self.emitted_answer = ""
            self.buf = self.buf[end + len(CLOSE):]
            self.state, self.closed, self.had_reasoning = "after", True, True
            return True
        keep = _tag_tail(self.buf, CLOSE)
        ready = self.buf[: len(self.buf) - keep]
        if ready:
            out.append(AnswerDelta(ready))
            self.emitted_answer += ready
            self.buf = self.buf[len(ready):]
        return False

    def _after(self, out: list[Delta]) -> bool:
        self.buf = self.buf.lstrip()
        if not self.buf:
            return False
        out.append(AnswerDelta(self.buf))
        self.buf, self.state = "", "answer"
        return False

    def _answer(self, out: list[Delta]) -> bool:  # reached only from feed's buffer path
        if self.buf:
            out.append(AnswerDelta(self.buf))
            self.buf = ""
        return False



def collect(deltas: list[Delta]) -> tuple[str, str]:
    """(thinking, answer) from a run of deltas, applying :class:`ThinkingWasAnswer` as renderers do."""
    thinking, answer = [], []
    for delta in deltas:
        if isinstance(delta, ThinkingDelta):
            thinking.append(delta.text)
        elif isinstance(delta, AnswerDelta):
            answer.append(delta.text)
        else:
            thinking, answer = [delta.text], []
    return "".join(thinking), "".join(answer)
