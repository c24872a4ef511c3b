"""Ollama's OpenAI-compatible endpoints, with real inference of a scripted model.

Written from Ollama v0.32.15's source, not from the double: middleware/openai.go (ChatMiddleware,
ChatWriter, ListWriter, RetrieveWriter) over openai/openai.go (FromChatRequest,
thinkFromReasoningEffort, ToChatCompletion, ToStreamChunks, FinishChunk, NewError). The model
(``write_scripted_model``) answers ``<think>\\nHm.</think>OK!`` after ``<｜Assistant｜>``, so with dslocal's
R1 TEMPLATE the server splits it into reasoning "Hm." and content "OK!"; with thinking off the
template pre-fills an empty think block and the content is ``Hm.</think>OK!``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
from contract.api import import_files

from dslocal.ollama.modelfile import load_family
from dslocal.testing.ggufgen import write_scripted_model

DSLOCAL_R1 = load_family("deepseek-r1").template
PLAIN = "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"  # no .Thinking: not a thinking model
ASK = [{"role": "user", "content": "Why is the sky blue?"}]
CHUNK_KEYS = {"id", "object", "created", "model", "system_fingerprint", "choices"}


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_scripted_model(tmp_path_factory.mktemp("scripted") / "scripted.gguf", arch="deepseek2")


@pytest.fixture
def r1(ollama, scripted):
    server = ollama()
    import_files(server.url, "r1", [scripted], template=DSLOCAL_R1)
    return server


def complete(server, body: dict[str, Any] | bytes, **extra: Any) -> requests.Response:
    url = f"{server.url}/v1/chat/completions"
    if isinstance(body, bytes):
        return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=600)
    return requests.post(url, json={**body, **extra}, timeout=600)


def events(response: requests.Response) -> list:
    """The SSE stream: each event ``data: <json>\\n\\n``, the last ``data: [DONE]\\n\\n``."""
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    out = []
    for event in response.text.split("\n\n")[:-1]:
        assert event.startswith("data: "), event
        payload = event[len("data: "):]
        out.append(payload if payload == "[DONE]" else json.loads(payload))
    assert out.count("[DONE]") == 1 and out[-1] == "[DONE]"
    return out[:-1]


def joined(chunks: list[dict], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key, "") for c in chunks if c["choices"])


def assert_error(response: requests.Response, status: int, kind: str, message: str | None = None) -> str:
    """OpenAI's error shape, as openai.NewError builds it."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == kind and body["error"]["param"] is None and body["error"]["code"] is None
    if message is not None:
        assert body["error"]["message"] == message
    assert body["error"]["message"]
    return body["error"]["message"]


def test_a_streamed_answer_chunk_by_chunk(r1):
    """v0.32.6+ (#17485): role on the first chunk only, reasoning in ``delta.reasoning``, the finish
    reason on a chunk of its own with an empty delta, the usage on a last chunk without choices."""
    chunks = events(complete(r1, {"model": "r1", "messages": ASK, "stream": True,
                                  "stream_options": {"include_usage": True}}))
    *answer, finish, usage = chunks
    assert len(answer) >= 2
    for chunk in chunks:
        assert set(chunk) == CHUNK_KEYS | ({"usage"} if chunk is usage else set())
        assert chunk["object"] == "chat.completion.chunk" and chunk["model"] == "r1"
        assert chunk["system_fingerprint"] == "fp_ollama"
        assert chunk["id"] == chunks[0]["id"] and chunk["id"].startswith("chatcmpl-")
        assert chunk["created"] == chunks[0]["created"] and isinstance(chunk["created"], int)
        assert "reasoning_content" not in json.dumps(chunk)
    for chunk in answer:
        (choice,) = chunk["choices"]
        assert choice["index"] == 0 and choice["finish_reason"] is None and "finish_reason" in choice
        assert choice["delta"] and set(choice["delta"]) <= {"role", "content", "reasoning"}
    assert answer[0]["choices"][0]["delta"]["role"] == "assistant"
    assert not any("role" in c["choices"][0]["delta"] for c in answer[1:]), "role only on the first chunk"
    assert joined(answer, "reasoning") == "Hm."
    assert joined(answer, "content") == "OK!"
    first_content = next(i for i, c in enumerate(answer) if c["choices"][0]["delta"].get("content"))
    assert not any(c["choices"][0]["delta"].get("reasoning") for c in answer[first_content:]), "reasoning first"
    assert finish["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert usage["choices"] == []
    assert set(usage["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert usage["usage"]["prompt_tokens"] > 5 and usage["usage"]["completion_tokens"] >= 7
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]


def test_no_usage_chunk_unless_asked(r1):
    chunks = events(complete(r1, {"model": "r1", "messages": ASK, "stream": True}))
    assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert not any("usage" in c for c in chunks)
    off = events(complete(r1, {"model": "r1", "messages": ASK, "stream": True,
                               "stream_options": {"include_usage": False}}))
    assert not any("usage" in c for c in off)


def test_a_non_streamed_answer(r1):
    """``stream`` defaults to false here (unlike /api/chat): one chat.completion."""
    r = complete(r1, {"model": "r1", "messages": ASK})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"id", "object", "created", "model", "system_fingerprint", "choices", "usage"}
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "r1" and body["system_fingerprint"] == "fp_ollama" and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "OK!", "reasoning": "Hm."},
                                "finish_reason": "stop"}]
    usage = body["usage"]
    assert usage["completion_tokens"] >= 7 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_reasoning_effort_none_turns_thinking_off(r1):
    """none -> think false: no thinking parser, the template pre-fills an empty block, this model
    reasons anyway, so its text, tag and all, is content."""
    for body in ({"reasoning_effort": "none"}, {"reasoning": {"effort": "none"}}):
        chunks = events(complete(r1, {"model": "r1", "messages": ASK, "stream": True, **body}))
        assert not any("reasoning" in c["choices"][0]["delta"] for c in chunks), body
        assert joined(chunks, "content") == "Hm.</think>OK!"
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        assert chunks[-1]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    message = complete(r1, {"model": "r1", "messages": ASK, "reasoning_effort": "none"}).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Hm.</think>OK!"}


def test_reasoning_efforts_that_think(r1):
    """minimal -> low, xhigh and ultra -> max, low/medium/high/max as they are; an empty effort leaves
    the model's default (on); ``reasoning.effort`` is read before ``reasoning_effort``."""
    thinking = {"role": "assistant", "content": "OK!", "reasoning": "Hm."}
    for body in ({"reasoning_effort": "minimal"}, {"reasoning_effort": "xhigh"}, {"reasoning_effort": "ultra"},
                 {"reasoning_effort": "max"}, {"reasoning_effort": "low"}, {"reasoning_effort": ""},
                 {"reasoning": {"effort": "high"}, "reasoning_effort": "none"},
                 {"reasoning": {}, "reasoning_effort": "none"}):
        r = complete(r1, {"model": "r1", "messages": ASK, **body})
        assert r.status_code == 200, (body, r.text)
        assert r.json()["choices"][0]["message"] == thinking, body


def test_invalid_reasoning_values(r1):
    r = complete(r1, {"model": "r1", "messages": ASK, "reasoning_effort": "loud"})
    assert_error(r, 400, "invalid_request_error", 'invalid reasoning value: "loud" (must be "minimal", "low", '
                 '"medium", "high", "xhigh", "ultra", "max", or "none")')
    r = complete(r1, {"model": "r1", "messages": ASK, "reasoning": {"effort": "Max"}})
    assert "invalid reasoning value" in assert_error(r, 400, "invalid_request_error")


def test_thinking_on_a_model_without_it(ollama, scripted):
    server = ollama()
    import_files(server.url, "plain", [scripted], template=PLAIN)
    r = complete(server, {"model": "plain", "messages": ASK, "reasoning_effort": "high"})
    assert_error(r, 400, "invalid_request_error", '"plain" does not support thinking')
    r = complete(server, {"model": "plain", "messages": ASK, "reasoning_effort": "none"})
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert "reasoning" not in message and message["content"].endswith("OK!"), "no thinking: the tags stay in the text"


def test_errors_in_openais_shape(r1):
    r = complete(r1, {"model": "ghost", "messages": ASK})
    assert_error(r, 404, "not_found_error", "model 'ghost' not found")
    r = complete(r1, {"model": "ghost", "messages": ASK, "stream": True})
    assert_error(r, 404, "not_found_error", "model 'ghost' not found")
    for body in ({"model": "r1"}, {"model": "r1", "messages": []}, {"model": "r1", "messages": None}):
        assert_error(complete(r1, body), 400, "invalid_request_error", "[] is too short - 'messages'")
    assert_error(complete(r1, b""), 400, "invalid_request_error", "EOF")
    assert_error(complete(r1, b'{"model": "r1", "messages": ['), 400, "invalid_request_error", "unexpected EOF")
    assert assert_error(complete(r1, b"{model: r1}"), 400, "invalid_request_error").startswith("invalid character")
    assert_error(complete(r1, {"model": "r1", "messages": "hi"}), 400, "invalid_request_error",
                 "json: cannot unmarshal string into Go struct field ChatCompletionRequest.messages of type "
                 "[]openai.Message")
    assert_error(complete(r1, {"model": "r1", "messages": [{"role": "user"}]}), 400, "invalid_request_error",
                 "invalid message content type: <nil>")
    assert_error(complete(r1, {"model": "r1", "messages": [{"role": "user", "content": [{"type": "video"}]}]}),
                 400, "invalid_request_error", "invalid message format")
    assert_error(complete(r1, {"model": "", "messages": ASK}), 400, "invalid_request_error")


def test_options_as_the_middleware_maps_them(r1):
    """max_tokens -> num_predict, stop as a string or a list; max_completion_tokens is not a field of
    this version's request, so it is ignored like any unknown field."""
    r = complete(r1, {"model": "r1", "messages": ASK, "max_tokens": 2})
    body = r.json()
    assert body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["message"]["content"] == ""
    for stop in ("K", ["K", 7]):
        body = complete(r1, {"model": "r1", "messages": ASK, "stop": stop}).json()
        assert body["choices"][0]["message"]["content"] == "O" and body["choices"][0]["finish_reason"] == "stop", stop
    body = complete(r1, {"model": "r1", "messages": ASK, "max_completion_tokens": 1, "temperature": 0.2,
                         "top_p": 0.5, "seed": 3, "frequency_penalty": 0.1, "presence_penalty": 0.1,
                         "logit_bias": {"1": 5}, "user": "someone"}).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "OK!", "reasoning": "Hm."}


def test_messages_as_content_parts_and_history(r1):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Why is the sky blue?"}]}]
    r = complete(r1, {"model": "r1", "messages": parts})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "OK!"
    history = [*ASK, {"role": "assistant", "content": "OK!", "reasoning": "Hm."}, {"role": "user", "content": "And?"}]
    r = complete(r1, {"model": "r1", "messages": history})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "OK!"


def test_models(r1):
    r = requests.get(f"{r1.url}/v1/models", timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "list"
    (entry,) = body["data"]
    assert set(entry) == {"id", "object", "created", "owned_by"}
    assert (entry["id"], entry["object"], entry["owned_by"]) == ("r1:latest", "model", "library")
    assert isinstance(entry["created"], int) and entry["created"] > 0
    one = requests.get(f"{r1.url}/v1/models/r1", timeout=30).json()
    assert one == {"id": "r1", "object": "model", "created": one["created"], "owned_by": "library"}
    assert_error(requests.get(f"{r1.url}/v1/models/ghost", timeout=30), 404, "not_found_error",
                 "model 'ghost:latest' not found")
