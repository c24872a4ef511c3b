"""Chat with any OpenAI-compatible server: llama-server, vLLM, SGLang, Ollama's ``/v1`` and the DeepSeek API.

``POST {base}/chat/completions`` with ``stream: true`` answers with server-sent events, ``data: {json}``
lines ending with ``data: [DONE]``. Reasoning arrives in ``delta.reasoning_content`` (llama-server with
``--reasoning-format deepseek``, vLLM, SGLang, the DeepSeek API) or ``delta.reasoning`` (Ollama's
``/v1``, openai/openai.go), or inline as ``<think>`` in ``delta.content`` (llama-server with
``--reasoning-format none``). Counts come from the ``usage`` chunk (``stream_options.include_usage``;
Ollama >= 0.32.6 sends it with ``choices: []``) and llama-server's ``timings``.

How each server is asked to think (field refresh 2026-12, sections 1.3, 2.4, 2.7):
* llama-server: ``chat_template_kwargs: {"enable_thinking": bool, "reasoning_effort": level}``
  (llama.cpp maps ``enable_thinking`` to V3.1's ``thinking``);
* vLLM and SGLang: ``chat_template_kwargs: {"thinking": bool}`` (DeepSeek's own jinja variable);
* Ollama's ``/v1``: ``reasoning_effort``: ``none`` for off, or the level;
* the DeepSeek API: the model name (``deepseek-reasoner`` thinks, ``deepseek-chat`` does not).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests

from dslocal.chat.backends.assemble import Assembler
from dslocal.chat.events import ChatError, ChatEvent, ChatOptions, Done, Message, wire_history

DIALECTS = ("llama-server", "vllm", "ollama", "deepseek", "generic")
CONNECT_TIMEOUT = 5.0


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def think_fields(dialect: str, think: bool | str | None) -> dict[str, Any]:
    """The request fields that turn reasoning on, off or to a level, per server."""
    if think is None:
        return {}
    on = think is not False
    level = think if isinstance(think, str) else None
    if dialect == "ollama":
        return {"reasoning_effort": "none"} if not on else ({"reasoning_effort": level} if level else {})
    if dialect == "deepseek":
        return {}  # the model name decides (DeepSeekChat)
    kwargs: dict[str, Any] = {"enable_thinking": on, "thinking": on}
    if level:
        kwargs["reasoning_effort"] = level
    fields: dict[str, Any] = {"chat_template_kwargs": kwargs}
    if level and dialect in ("vllm", "generic"):
        fields["reasoning_effort"] = level
    return fields


def completion_request(model: str, messages: Sequence[Message], options: ChatOptions, dialect: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": wire_history(messages), "stream": True,
                            "stream_options": {"include_usage": True}}
    sampling = options.sampling()
    if dialect == "deepseek":  # the API takes the OpenAI fields only
        sampling = {k: v for k, v in sampling.items() if k in ("temperature", "top_p")}
    body.update(sampling)
    if options.max_tokens is not None:
        body["max_tokens"] = options.max_tokens
    if options.stop:
        body["stop"] = list(options.stop)
    body.update(think_fields(dialect, options.think))
    body.update(options.extra)
    return body


def _sse_events(response: requests.Response) -> Iterator[dict[str, Any] | None]:
    """The JSON payload of each ``data:`` line; None for ``[DONE]``."""
    for raw in response.iter_lines(decode_unicode=False):
        if not raw or raw.startswith(b":"):
            continue
        line = raw.decode("utf-8", "replace")
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            yield None
            return
        try:
            yield json.loads(data)
        except ValueError:
            continue


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or f"HTTP {response.status_code}"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


class OpenAIChat:
    """``api_key`` goes in the Authorization header and nowhere else (never in messages or logs)."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, dialect: str = "generic",
                 start: str = "detect", read_timeout: float = 600.0) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"dialect must be one of {DIALECTS}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dialect = dialect
        self.start = start
        self.read_timeout = read_timeout
        self.session = requests.Session()
        self.session.trust_env = not is_loopback(self.base_url)  # no proxy between us and a local server
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r}, {self.model!r}, dialect={self.dialect!r})"

    def request_model(self, options: ChatOptions) -> str:
        return self.model

    def stream(self, messages: Sequence[Message], options: ChatOptions) -> Iterator[ChatEvent]:
        body = completion_request(self.request_model(options), messages, options, self.dialect)
        assembler = Assembler(self.start)
        url = f"{self.base_url}/chat/completions"
        try:
            response = self.session.post(url, json=body, headers=self._headers, stream=True,
                                         timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.ConnectionError:
            yield ChatError(f"nothing answers at {self.base_url}", "is the server running? check the --url",
                            kind="connection")
            return
        except requests.Timeout:
            yield ChatError(f"{self.base_url} did not answer in {self.read_timeout:g} s", "retry, or check the server",
                            kind="connection")
            return
        with response:
            if response.status_code >= 400:
                yield self._refusal(response)
                return
            yield from self._read(response, assembler)

    def _refusal(self, response: requests.Response) -> ChatError:
        text = _error_text(response)
        status = response.status_code
        if status in (401, 403):
            return ChatError(f"{self.base_url} refused the API key (HTTP {status})",
                             "check the key: 'dslocal key status'", kind="refused")
        if status == 404 or "not found" in text.lower() or "does not exist" in text.lower():
            return ChatError(f"{self.base_url} has no model {self.model!r}: {text}",
                             "list the server's models with GET /v1/models", kind="not_found")
        return ChatError(f"{self.base_url} refused the request (HTTP {status}): {text}", None, kind="refused")

    def _read(self, response: requests.Response, assembler: Assembler) -> Iterator[ChatEvent]:
        finish: str | None = None
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        done = False
        try:
            for event in _sse_events(response):
                if event is None:
                    done = True
                    break
                if "error" in event:
                    yield from assembler.finish()
                    yield ChatError(f"the server failed mid-answer: {_error_text_of(event)}", None, kind="backend")
                    return
                for choice in event.get("choices") or []:
                    delta = choice.get("delta") or {}
                    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
                    yield from assembler.thinking(str(reasoning))
                    yield from assembler.content(str(delta.get("content") or ""))
                    finish = choice.get("finish_reason") or finish
                usage = event.get("usage") or usage
                timings = event.get("timings") or timings
        except requests.RequestException as exc:
            yield from assembler.finish()
            yield ChatError(f"the connection to {self.base_url} broke mid-answer ({type(exc).__name__})",
                            "the partial answer is kept; retry with /retry", kind="connection")
            return
        yield from assembler.finish()
        if not done and finish is None:
            yield ChatError(f"{self.base_url} ended the stream without finishing the answer",
                            "the partial answer is kept; retry with /retry", kind="connection")
            return
        yield Done(assembler.stats(**_counters(usage, timings)), reason=_reason(finish),
                   thinking_unterminated=assembler.thinking_unterminated)


def _error_text_of(event: dict[str, Any]) -> str:
    error = event.get("error")
    return str(error.get("message") if isinstance(error, dict) else error)


def _reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


def _counters(usage: dict[str, Any], timings: dict[str, Any]) -> dict[str, Any]:
    """``usage`` (OpenAI) and llama-server's ``timings`` (milliseconds)."""
    counters: dict[str, Any] = {
        "prompt_tokens": usage.get("prompt_tokens", timings.get("prompt_n")),
        "answer_tokens": usage.get("completion_tokens", timings.get("predicted_n")),
    }
    if timings.get("prompt_ms"):
        counters["prompt_seconds"] = timings["prompt_ms"] / 1000
    if timings.get("predicted_ms"):
        counters["decode_seconds"] = timings["predicted_ms"] / 1000
    return {k: v for k, v in counters.items() if v is not None}
