"""A double of one SGLang or vLLM OpenAI-compatible server, on loopback, for 'dslocal cluster check'.

This is a test double, not SGLang or vLLM (they need GPUs and the model). It answers as their sources
say they do (sglang 0.5.23 sglang/srt/entrypoints/http_server.py and openai/protocol.py; vllm 0.33.0
vllm/entrypoints/serve/instrumentator/health.py, serve/engine/protocol.py, openai/chat_completion/protocol.py):

* ``GET /health``: 200 with an empty body when up, 503 while starting (``starting=True``);
* ``GET /v1/models``: ``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by":
  "sglang"|"vllm", "root", "max_model_len"}]}``;
* ``POST /v1/chat/completions``: a ``chat.completion`` whose message has the reasoning in
  ``reasoning_content`` (SGLang) or ``reasoning`` (vLLM), the answer in ``content``; an unknown model is
  a 404 (vLLM: "The model `X` does not exist.");
* with ``api_key`` set, ``/v1/*`` without ``Authorization: Bearer KEY`` is a 401 ``{"error": "Unauthorized"}``
  (both engines leave ``/health`` open).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EngineDouble:
    def __init__(self, flavor: str = "sglang", model: str = "deepseek-ai/DeepSeek-R1", max_model_len: int = 32768,
                 api_key: str | None = None, reasoning: str = "17 + 25 = 42.", answer: str = "42") -> None:
        self.flavor, self.model, self.max_model_len, self.api_key = flavor, model, max_model_len, api_key
        self.reasoning, self.answer, self.starting = reasoning, answer, False
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, headers)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> EngineDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: dict | None = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if double.api_key is None or not self.path.startswith("/v1/"):
                    return True
                return self.headers.get("Authorization") == f"Bearer {double.api_key}"

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                double.requests.append(("GET", self.path, dict(self.headers)))
                if self.path == "/health":
                    return self._send(503 if double.starting else 200)
                if not self._authorized():
                    return self._send(401, {"error": "Unauthorized"})
                if self.path == "/v1/models":
                    card = {"id": double.model, "object": "model", "created": int(time.time()),
                            "owned_by": double.flavor, "root": double.model, "max_model_len": double.max_model_len}
                    return self._send(200, {"object": "list", "data": [card]})
                self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                double.requests.append(("POST", self.path, dict(self.headers)))
                if not self._authorized():
                    return self._send(401, {"error": "Unauthorized"})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"detail": "Not Found"})
                if body.get("model") != double.model:
                    return self._send(404, {"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                                      "type": "NotFoundError", "param": "model", "code": 404}})
                field = "reasoning_content" if double.flavor == "sglang" else "reasoning"
                message = {"role": "assistant", "content": double.answer, field: double.reasoning}
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": int(time.time()),
                                 "model": double.model,
                                 "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                                 "usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}})

        return Handler
