"""A double of the DeepSeek API's chat completions, on loopback, for dslocal's tests.

This is a test double, not the DeepSeek API (which cannot be reached from the tests). It follows
DeepSeek's public documentation at api-docs.deepseek.com, read 2026-12:

* ``api/create-chat-completion``: ``POST /chat/completions`` (the base URL may carry ``/v1``, which
  "has nothing to do with the model's version"), Bearer auth, the request fields, the
  ``chat.completion.chunk`` stream ending with ``data: [DONE]``, ``stream_options.include_usage`` (one
  more chunk before ``[DONE]`` with ``choices: []`` and the usage; every other chunk has
  ``"usage": null``), the finish reasons ``stop``, ``length``, ``content_filter``,
  ``insufficient_system_resource`` ("the request is interrupted due to insufficient resource of the
  inference system"), and the usage fields ``prompt_tokens`` (= ``prompt_cache_hit_tokens`` +
  ``prompt_cache_miss_tokens``), ``completion_tokens`` (reasoning included),
  ``completion_tokens_details.reasoning_tokens``, ``total_tokens``;
* ``quick_start/pricing`` (Models & Pricing): the models are ``deepseek-flash`` (DeepSeek-V4.1-Flash) and
  ``deepseek-v4-pro``; footnote (1): "use deepseek-flash as the model name"; the legacy names
  ``deepseek-v4-flash`` and ``deepseek-v4-flash-vision-exp`` "are still accepted", served by the Flash
  model. ``deepseek-chat`` and ``deepseek-reasoner`` are no longer listed: ``updates`` (2026-04-24, the
  V4 release) made them aliases of V4-Flash's non-thinking and thinking modes until 2026-07-24 15:59 UTC,
  after which they are inaccessible; since then the API answers them as any unknown model, 400 "Model Not
  Exist" (reported in public issues, e.g. NousResearch/hermes-agent#71212: "API calls with those IDs now
  return HTTP 400");
* ``guides/thinking_mode``: thinking is toggled with
  ``{"thinking": {"type": "enabled"|"disabled"}}`` and its effort set with ``reasoning_effort``
  (``low``/``high``/``max``); thinking is on by default at effort ``high``; a requested effort is mapped:
  ``minimal`` and ``low`` run as ``low``, ``medium``, ``high`` and ``xhigh`` as ``high``, ``max`` and
  ``ultra`` as ``max``. With thinking on, ``delta.reasoning_content`` streams before ``delta.content``;
  with it off there is no reasoning; ``max_tokens`` counts the reasoning too. ``reasoning_content`` in
  the input messages of a conversation without tool calls "will be ignored" (it must be passed back only
  after a tool call, which the double does not serve). ``temperature`` and the penalties have no effect
  in thinking mode, without an error. (``guides/reasoning_model`` described the retired
  ``deepseek-reasoner``, whose 400 for ``reasoning_content`` in the input no longer holds);
* ``quick_start/rate_limit``: while a request waits the API keeps the connection open, sending empty
  lines (non-streaming) or SSE comments ``: keep-alive`` (streaming);
* ``quick_start/error_codes``: 400 Invalid Format, 401 Authentication Fails, 402 Insufficient Balance,
  422 Invalid Parameters, 429 Rate Limit Reached, 500 Server Error, 503 Server Overloaded;
* ``guides/kv_cache``: a request persists cache prefix units at the end of the user input and at the
  end of the model output; a later request hits the cache for a unit it fully matches.

Error bodies have the API's shape, ``{"error": {"message", "type", "param": null, "code":
"invalid_request_error"}}``. The messages the API is seen to send (quoted in public bug reports) are
used where known: "Model Not Exist" (400, an unknown model), "Authentication Fails, Your api key:
****abcd is invalid" (401: the API echoes the key's last four characters, masked), "Authentication
Fails (auth header format should be Bearer sk-...)" (401, no Bearer header), "Insufficient Balance"
(402, type ``unknown_error``), "Failed to parse the request body as JSON: ..." (400) and "Failed to
deserialize the JSON body into the target type: ..." (422; also for a ``thinking`` or
``reasoning_effort`` value outside the documented ones: the docs do not say, so this is the double's
choice). Elsewhere the message is the docs' own name for the code ("Rate Limit Reached", "Server
Error", "Server Overloaded") or the double's own wording (parameter ranges, 404 for other paths).

Tokens are counted by the double's own rule: words, runs of spaces and single punctuation marks are one
token each (``"OK!"`` is 2); a message costs 4 more. Each token is streamed as one delta.

Scripts (``double.script(...)`` for every following request, ``double.enqueue(...)`` for the next one):
``reasoning`` and ``answer`` (default "Hm." and "OK!"), ``fail`` (an HTTP status from the list above,
answered with its documented body), ``keepalives`` (``: keep-alive`` comments sent before the first
chunk, ``keepalive_interval`` apart), ``delay`` (seconds between chunks), ``drop_after`` (the
connection is cut, without the chunked terminator, after that many deltas; at or past the last one,
before the finish chunk), ``finish_reason``.

``generic=True`` makes it a plain OpenAI-compatible server for the other dialects: no key needed
(unless one is given), any model name, every model reasons, the reasoning delivered as
``reasoning_field``: ``reasoning_content`` (llama-server, vLLM), ``reasoning`` (Ollama's ``/v1``),
``inline`` (``<think>...</think>`` in ``content``, llama-server ``--reasoning-format none``) or None;
``timings=True`` adds llama-server's ``timings`` to the last chunk.

For tests: ``requests`` (each a :class:`Recorded`: method, path, headers, JSON body, how the auth
went and the effort the double ran, after the documented mapping, or None without thinking; the
Authorization header itself is never kept: the key is read only by the auth check),
``disconnects`` / ``disconnected`` (the client went away mid-stream), ``completed`` (streams that
reached ``[DONE]``), ``dropped`` (connections the double cut on purpose).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ("deepseek-flash", "deepseek-v4-pro")
LEGACY_MODELS = ("deepseek-v4-flash", "deepseek-v4-flash-vision-exp")  # still accepted (quick_start/pricing)
RETIRED_MODELS = ("deepseek-chat", "deepseek-reasoner")  # inaccessible since 2026-07-24: "Model Not Exist"
EFFORTS = {"minimal": "low", "low": "low", "medium": "high", "high": "high", "xhigh": "high",
           "max": "max", "ultra": "max"}  # requested -> run (guides/thinking_mode)
DEFAULT_EFFORT = "high"
PATHS = ("/chat/completions", "/v1/chat/completions")
DEFAULT_KEY = "sk-double0123456789abcdef0123456789"
FINGERPRINT = "fp_double_prod0000"

_ERRORS: dict[int, tuple[str, str]] = {  # status -> (message, type); see the module docstring
    400: ("Failed to parse the request body as JSON", "invalid_request_error"),
    401: ("Authentication Fails (auth header format should be Bearer sk-...)", "authentication_error"),
    402: ("Insufficient Balance", "unknown_error"),
    422: ("Failed to deserialize the JSON body into the target type", "invalid_request_error"),
    429: ("Rate Limit Reached", "rate_limit_error"),
    500: ("Server Error", "api_error"),
    503: ("Server Overloaded", "api_error"),
}
_REASONS = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 404: "Not Found",
            422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
_TOKEN = re.compile(r"\w+|\s+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """The double's tokens: words, runs of whitespace, single other characters."""
    return _TOKEN.findall(text or "")


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    default, kind = _ERRORS.get(status, ("Not Found", "invalid_request_error"))
    return {"error": {"message": message or default, "type": kind, "param": None, "code": "invalid_request_error"}}


@dataclass(frozen=True)
class Script:
    reasoning: str = "Hm."
    answer: str = "OK!"
    fail: int | None = None
    fail_message: str | None = None
    keepalives: int = 0
    keepalive_interval: float = 0.0
    delay: float = 0.0
    drop_after: int | None = None
    finish_reason: str = "stop"


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; no Authorization
    body: Any  # the parsed JSON, or None
    auth: str  # "ok", "missing", "wrong", "none needed" or "sent" (a header no one asked for)
    status: int = 0
    effort: str | None = None  # the effort the double ran (after the documented mapping); None: no thinking


@dataclass
class _Turn:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int | None
    script: Script
    thinks: bool
    cache_hit: int = 0


class DeepSeekDouble:
    def __init__(self, *, api_key: str | None = DEFAULT_KEY, generic: bool = False,
                 reasoning_field: str | None = "reasoning_content", timings: bool = False) -> None:
        self._key = api_key
        self.generic = generic
        self.reasoning_field = reasoning_field if generic else "reasoning_content"
        self.timings = timings
        self.default = Script()
        self._queue: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.disconnects = 0
        self.disconnected = threading.Event()
        self.completed = 0
        self.dropped = 0
        self._cache: list[tuple[tuple[str, str], ...]] = []
        self._lock = threading.Lock()
        double = self

        class Handler(_Handler):
            owner = double

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    # -- for tests
    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def script(self, **fields: Any) -> Script:
        self.default = replace(Script(), **fields)
        return self.default

    def enqueue(self, **fields: Any) -> Script:
        one = replace(self.default, **fields)
        self._queue.append(one)
        return one

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> DeepSeekDouble:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- for the handler
    def _next_script(self) -> Script:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _check_key(self, header: str | None) -> tuple[str, str | None]:
        """("ok" | "missing" | "wrong" | "none needed" | "sent", the 401 message). The only place the key is read.

        "sent": no key is needed, yet the client sent an Authorization header."""
        if self._key is None:
            return ("sent" if header else "none needed"), None
        if not header or not header.startswith("Bearer ") or not header[7:].strip():
            return "missing", None
        given = header[7:].strip()
        if given == self._key:
            return "ok", None
        return "wrong", f"Authentication Fails, Your api key: ****{given[-4:]} is invalid"

    def _cache_hit(self, messages: list[dict[str, Any]]) -> int:
        seq = tuple((str(m.get("role")), str(m.get("content"))) for m in messages)
        with self._lock:
            units = [u for u in self._cache if seq[: len(u)] == u]
        return max((_prompt_tokens(u) for u in units), default=0)

    def _persist(self, messages: list[dict[str, Any]], answer: str) -> None:
        seq = tuple((str(m.get("role")), str(m.get("content"))) for m in messages)
        with self._lock:
            self._cache.extend([seq, seq + (("assistant", answer),)])


def _check_thinking(body: dict[str, Any]) -> tuple[int, str] | None:
    """The ``thinking`` object and ``reasoning_effort``, as guides/thinking_mode documents them."""
    deser = "Failed to deserialize the JSON body into the target type: "
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or "type" not in thinking:
            return 422, deser + "thinking: missing field `type`"
        if thinking["type"] not in ("enabled", "disabled"):
            return 422, deser + f"thinking.type: unknown variant `{thinking['type']}`, expected `enabled` or `disabled`"
    effort = body.get("reasoning_effort")
    if effort is not None and effort not in EFFORTS:
        return 422, deser + f"reasoning_effort: unknown variant `{effort}`, expected one of {', '.join(EFFORTS)}"
    return None


def _prompt_tokens(seq: tuple[tuple[str, str], ...] | list[dict[str, Any]]) -> int:
    total = 0
    for item in seq:
        content = item[1] if isinstance(item, tuple) else str(item.get("content") or "")
        total += 4 + len(tokens(content))
    return total


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: DeepSeekDouble

    def log_message(self, format: str, *args: Any) -> None:  # quiet, and never a header
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            pass  # a client that went away between requests on a kept-alive connection

    # -- plumbing
    def _json(self, status: int, payload: Any, record: Recorded | None = None) -> None:
        data = json.dumps(payload).encode()
        if record is not None:
            record.status = status
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        self._chunk(b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")

    def do_GET(self) -> None:
        self._not_found()

    def _not_found(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._json(404, error_body(404, f"no route {self.command} {self.path} (the double serves POST /chat/completions)"))

    def do_POST(self) -> None:
        owner = self.owner
        path = self.path.split("?", 1)[0]
        if path not in PATHS:
            self._not_found()
            return
        auth, auth_message = owner._check_key(self.headers.get("Authorization"))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items() if k.lower() != "authorization"}
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            body, syntax = None, str(exc)
        else:
            syntax = "" if raw else "EOF while parsing a value at line 1 column 0"
        record = Recorded(self.command, path, headers, body, auth)
        with owner._lock:
            owner.requests.append(record)
        if auth in ("missing", "wrong"):
            self._json(401, error_body(401, auth_message), record)
            return
        if syntax:
            self._json(400, error_body(400, f"Failed to parse the request body as JSON: {syntax}"), record)
            return
        problem = self._validate(body)
        if problem:
            self._json(problem[0], error_body(*problem), record)
            return
        script = owner._next_script()
        if script.fail:
            self._json(script.fail, error_body(script.fail, script.fail_message), record)
            return
        model = body["model"]
        if owner.generic:
            thinks = owner.reasoning_field is not None
        else:
            thinks = (body.get("thinking") or {}).get("type", "enabled") == "enabled"
            record.effort = EFFORTS[body.get("reasoning_effort") or DEFAULT_EFFORT] if thinks else None
        turn = _Turn(model=model, messages=body["messages"], stream=bool(body.get("stream")),
                     include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
                     max_tokens=body.get("max_tokens"), script=script, thinks=thinks,
                     cache_hit=owner._cache_hit(body["messages"]))
        record.status = 200
        if turn.stream:
            self._stream(turn)
        else:
            self._whole(turn)

    def _validate(self, body: Any) -> tuple[int, str] | None:
        deser = "Failed to deserialize the JSON body into the target type: "
        if not isinstance(body, dict):
            return 422, deser + "invalid type: expected struct ChatCompletionRequest"
        if "messages" not in body:
            return 422, deser + "missing field `messages`"
        if "model" not in body:
            return 422, deser + "missing field `model`"
        messages = body["messages"]
        if not isinstance(messages, list):
            return 422, deser + "messages: invalid type: expected a sequence"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                return 422, deser + f"messages[{i}]: invalid type: sequence, expected a string"
            if message.get("role") not in ("system", "user", "assistant", "tool"):
                return 422, deser + f"messages[{i}]: unknown variant `{message.get('role')}`"
        if not messages:
            return 400, "messages must not be empty (the double's wording)"
        if not self.owner.generic:
            problem = _check_thinking(body)
            if problem:
                return problem
            if body["model"] not in MODELS + LEGACY_MODELS:
                return 400, "Model Not Exist"
        temperature, top_p = body.get("temperature"), body.get("top_p")
        if temperature is not None and not (isinstance(temperature, (int, float)) and 0 <= temperature <= 2):
            return 422, f"Invalid temperature {temperature!r}: it must be between 0 and 2 (the double's wording)"
        if top_p is not None and not (isinstance(top_p, (int, float)) and 0 <= top_p <= 1):
            return 422, f"Invalid top_p {top_p!r}: it must be between 0 and 1 (the double's wording)"
        max_tokens = body.get("max_tokens")
        if max_tokens is not None and not (isinstance(max_tokens, int) and max_tokens >= 1):
            return 422, f"Invalid max_tokens {max_tokens!r}: it must be at least 1 (the double's wording)"
        return None

    # -- generation
    def _pieces(self, turn: _Turn) -> tuple[list[str], list[str], str]:
        """(reasoning tokens, answer tokens, finish reason) after max_tokens."""
        script = turn.script
        reasoning = tokens(script.reasoning) if turn.thinks else []
        answer = tokens(script.answer)
        finish = script.finish_reason
        if turn.max_tokens is not None and len(reasoning) + len(answer) > turn.max_tokens:
            budget = turn.max_tokens
            reasoning, answer = reasoning[:budget], answer[: max(budget - len(reasoning), 0)]
            finish = "length"
        return reasoning, answer, finish

    def _usage(self, turn: _Turn, reasoning: list[str], answer: list[str]) -> dict[str, Any]:
        prompt = _prompt_tokens(turn.messages)
        hit = turn.cache_hit
        completion = len(reasoning) + len(answer)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": hit},
                                 "prompt_cache_hit_tokens": hit, "prompt_cache_miss_tokens": prompt - hit}
        if turn.thinks:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning)}
        return usage

    def _timings(self, turn: _Turn, reasoning: list[str], answer: list[str]) -> dict[str, Any]:
        n = len(reasoning) + len(answer)
        prompt = _prompt_tokens(turn.messages)
        return {"prompt_n": prompt, "prompt_ms": 2.0 * prompt, "predicted_n": n, "predicted_ms": 10.0 * n,
                "prompt_per_second": 500.0, "predicted_per_second": 100.0}

    def _whole(self, turn: _Turn) -> None:
        reasoning, answer, finish = self._pieces(turn)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer)}
        if turn.thinks:
            message["reasoning_content"] = "".join(reasoning)
        payload = {"id": str(uuid.uuid4()), "object": "chat.completion", "created": int(time.time()),
                   "model": turn.model, "system_fingerprint": FINGERPRINT,
                   "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                   "usage": self._usage(turn, reasoning, answer)}
        self.owner._persist(turn.messages, "".join(answer))
        if not turn.script.keepalives:
            self._json(200, payload)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for _ in range(turn.script.keepalives):
            self._chunk(b"\n")
            time.sleep(turn.script.keepalive_interval)
        self._chunk(json.dumps(payload).encode())
        self.wfile.write(b"0\r\n\r\n")

    def _stream(self, turn: _Turn) -> None:
        owner, script = self.owner, turn.script
        reasoning, answer, finish = self._pieces(turn)
        ident, created = str(uuid.uuid4()), int(time.time())
        usage_null = {"usage": None} if turn.include_usage else {}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict[str, Any]:
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": turn.model,
                    "system_fingerprint": FINGERPRINT,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                    **usage_null, **extra}

        field_name = owner.reasoning_field if turn.thinks else None
        inline = field_name == "inline"
        deltas: list[dict[str, Any]] = []
        if inline:
            pieces = ["<think>", *reasoning, "</think>", *answer] if reasoning else answer
            deltas = [{"content": p} for p in pieces]
        else:
            if field_name:
                deltas += [{"content": None, field_name: p} for p in reasoning]
            deltas += [{"content": p, field_name: None} if field_name else {"content": p} for p in answer]
        first: dict[str, Any] = {"role": "assistant", "content": None if field_name and not inline else ""}
        if field_name and not inline:
            first[field_name] = ""
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(script.keepalives):
                self._chunk(b": keep-alive\n\n")
                time.sleep(script.keepalive_interval)
            self._event(chunk(first))
            for sent, delta in enumerate(deltas):
                if script.drop_after is not None and sent >= script.drop_after:
                    self._drop()
                    return
                time.sleep(script.delay)
                self._event(chunk(delta))
            if script.drop_after is not None:  # at or past the last delta: cut before the finish chunk
                self._drop()
                return
            last_delta: dict[str, Any] = {"content": ""}
            if field_name and not inline:
                last_delta[field_name] = None
            extra: dict[str, Any] = {}
            if owner.timings:
                extra["timings"] = self._timings(turn, reasoning, answer)
            self._event(chunk(last_delta, finish, **extra))
            owner._persist(turn.messages, "".join(answer))
            if turn.include_usage:
                self._event({"id": ident, "object": "chat.completion.chunk", "created": created, "model": turn.model,
                             "system_fingerprint": FINGERPRINT, "choices": [],
                             "usage": self._usage(turn, reasoning, answer)})
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            with owner._lock:
                owner.completed += 1
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            with owner._lock:
                owner.disconnects += 1
            owner.disconnected.set()
            self.close_connection = True

    def _drop(self) -> None:
        """Cut the connection mid-stream: no chunked terminator, so the client sees a broken body."""
        with self.owner._lock:
            self.owner.dropped += 1
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
