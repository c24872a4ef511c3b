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
* the DeepSeek API: ``thinking: {"type": "enabled"|"disabled"}`` and ``reasoning_effort`` ``low``, ``high``
  or ``max`` (api-docs.deepseek.com guides/thinking_mode: on by default at ``high``; a requested
  ``medium`` or ``xhigh`` is run as ``high``, ``minimal`` as ``low``, ``ultra`` as ``max``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.auth

from dslocal.chat.backends.assemble import Assembler
from dslocal.chat.events import ChatError, ChatEvent, ChatOptions, Done, Message, wire_history
from dslocal.errors import ConfigError

DIALECTS = ("llama-server", "vllm", "ollama", "deepseek", "generic")
CONNECT_TIMEOUT = 5.0
# The DeepSeek API's documented mapping of a requested effort to the one it runs (guides/thinking_mode);
# sent already mapped, so the request says what runs.
DEEPSEEK_EFFORT = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high",
                   "max": "max", "ultra": "max"}
_KEY_CHARS = re.compile(r"[\x21-\x7e]+")  # what an Authorization header can carry as-is

# What to do next, by HTTP status (the DeepSeek API's error codes, which OpenAI-compatible servers share).
_STATUS_HINTS = {
    400: "the server could not read the request; check the model name and the options",
    402: "the account's balance is used up; top it up (for the DeepSeek API: https://platform.deepseek.com/top_up)",
    413: "the conversation is too long for the server; start a new one or shorten it",
    422: "an option has a value the server does not accept; check the options given",
    429: "too many requests at once; wait a moment, then /retry",
    500: "the server failed; wait a moment, then /retry",
    502: "the server (or a proxy in front of it) failed; wait a moment, then /retry",
    503: "the server is overloaded; wait a moment, then /retry",
    504: "the server (or a proxy in front of it) timed out; wait a moment, then /retry",
}
# finish_reason values that cut the answer short (DeepSeek documents both): an error, not a Done.
_CUT_SHORT = {
    "insufficient_system_resource": "the server ran out of resources and interrupted the answer",
    "content_filter": "the server's content filter stopped the answer",
}


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
        if not on:
            return {"thinking": {"type": "disabled"}}
        enabled: dict[str, Any] = {"thinking": {"type": "enabled"}}
        return {**enabled, "reasoning_effort": DEEPSEEK_EFFORT.get(level, level)} if level else enabled
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


def one_line(text: str, limit: int = 300) -> str:
    """Server text made fit for one line of a message: whitespace collapsed, cut at ``limit``."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _error_text(response: requests.Response) -> str:
    """The server's error message, whole (cut only once a key in it is hidden: OpenAIChat._clean)."""
    try:
        body = response.json()
    except ValueError:
        return one_line(response.text, 10_000) or f"HTTP {response.status_code}"
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        return one_line(str(error.get("message") or error), 10_000)
    return one_line(str(error), 10_000)


class _Bearer(requests.auth.AuthBase):
    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(****)"


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
        if api_key and not _KEY_CHARS.fullmatch(api_key):
            # requests would refuse the header with an error that quotes it, key and all
            raise ConfigError("the API key has characters an API key cannot have (spaces, line breaks or non-ASCII)",
                              "paste the key again, exactly as the provider shows it")
        self._key = api_key or ""
        # As the request's auth, so that a ~/.netrc entry for the host cannot replace it (requests applies
        # netrc only when no auth is given), and requests drops it on a redirect to another host.
        self._auth = _Bearer(api_key) if api_key else None

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({self.base_url!r}, {self.model!r}, dialect={self.dialect!r})"

    def request_model(self, options: ChatOptions) -> str:
        return self.model

    def _clean(self, text: str) -> str:
        """Server text for a message: one line, and never the key (some servers echo what they were sent)."""
        if self._key and self._key in text:
            text = text.replace(self._key, "****")
        return one_line(text)

    def stream(self, messages: Sequence[Message], options: ChatOptions) -> Iterator[ChatEvent]:
        model = self.request_model(options)
        body = completion_request(model, messages, options, self.dialect)
        assembler = Assembler(self.start)
        url = f"{self.base_url}/chat/completions"
        try:
            response = self.session.post(url, json=body, auth=self._auth, stream=True,
                                         timeout=(CONNECT_TIMEOUT, self.read_timeout))
        except requests.ConnectionError:
            yield ChatError(f"nothing answers at {self.base_url}", "is the server running? check the --url",
                            kind="connection")
            return
        except requests.Timeout:
            yield ChatError(f"{self.base_url} did not answer in {self.read_timeout:g} s", "retry, or check the server",
                            kind="connection")
            return
        except requests.RequestException as exc:  # a bad URL or header; str(exc) may quote the headers
            yield ChatError(f"the request to {self.base_url} could not be sent ({type(exc).__name__})",
                            "check the --url", kind="connection")
            return
        with response:
            if response.status_code >= 400:
                yield self._refusal(response, model)
                return
            yield from self._read(response, assembler)

    def model_hint(self) -> str:
        return "list the server's models with GET /v1/models"

    def _refusal(self, response: requests.Response, model: str | None = None) -> ChatError:
        """One line and a hint; never the server's text for a refused key (DeepSeek echoes part of it)."""
        model = model or self.model
        status = response.status_code
        if status in (401, 403):
            return ChatError(f"{self.base_url} refused the API key (HTTP {status})",
                             "check the key: 'dslocal key status'", kind="refused")
        text = self._clean(_error_text(response))
        lowered = text.lower()
        if status in (404, 405) and "model" not in lowered:  # llama-server "File Not Found", FastAPI "Not Found"
            return ChatError(f"{self.base_url} has no chat completions endpoint (HTTP {status}: {text})",
                             "check --url: OpenAI-compatible servers usually serve it under /v1 "
                             "(e.g. http://127.0.0.1:8080/v1)", kind="refused")
        if status == 404 or "not found" in lowered or "not exist" in lowered:
            return ChatError(f"{self.base_url} has no model {model!r} (HTTP {status}): {text}", self.model_hint(),
                             kind="not_found")
        hint = _STATUS_HINTS.get(status) or ("wait a moment, then /retry" if status >= 500 else None)
        return ChatError(f"{self.base_url} refused the request (HTTP {status}): {text}", hint, kind="refused")

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
                    yield ChatError(f"the server failed mid-answer: {self._clean(_error_text_of(event))}",
                                    "the partial answer is kept; retry with /retry", kind="backend")
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
        if finish in _CUT_SHORT:
            yield ChatError(f"{_CUT_SHORT[finish]} (finish_reason {finish})",
                            "the partial answer is kept; retry with /retry", kind="backend")
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
