"""The wire behaviour of a real llama-server (llama.cpp's, embedded by xllamacpp) that dslocal's
OpenAI-compatible client relies on, with real inference on a scripted model (tests/llama_server.py).

The model is ggufgen's scripted deepseek2 (MLA) in Q8_0: from the chat template's generation prompt
(ending in ``<think>\\n``) its greedy answer is exactly ``Hm.</think>OK!`` then EOS, one token a
character (``</think>`` is one token): 8 answer tokens. After ``</think>`` it says ``OK!``.

Pinned: the SSE framing (``data: {json}`` blocks, ``data: [DONE]`` last), where the reasoning arrives
per ``reasoning_format`` (server default and per request), ``chat_template_kwargs.enable_thinking``,
the ``include_usage`` chunk and ``timings``, ``/v1/models``, error statuses and bodies, a client that
disconnects mid-answer, and that the generated models' own chat template gets no reasoning split.
"""

from __future__ import annotations

import json
import re
import socket
import time
from typing import Any

import pytest
import requests

pytest.importorskip("xllamacpp")

from llama_server import (  # noqa: E402
    STOPPED,
    THINKING_TEMPLATE,
    gbnf_literal,
    run_llama_server,
    start_llama_server,
)

from dslocal.testing.ggufgen import ModelSpec, write_model, write_scripted_model  # noqa: E402

HI = [{"role": "user", "content": "Hi"}]
ALIAS = "dslocal-test"
TIMEOUT = 30
TIMING_KEYS = {"cache_n", "prompt_n", "prompt_ms", "prompt_per_token_ms", "prompt_per_second",
               "predicted_n", "predicted_ms", "predicted_per_token_ms", "predicted_per_second"}


def direct() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # loopback: no proxy from the environment
    return session


@pytest.fixture(scope="module")
def http() -> requests.Session:
    return direct()


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory):
    return write_scripted_model(tmp_path_factory.mktemp("llama-server") / "scripted.gguf", arch="deepseek2",
                                dtype="q8_0")


def _server(model, **kw: Any):
    return start_llama_server(model, alias=ALIAS, n_ctx=512, **kw)


@pytest.fixture(scope="module")
def split(scripted):
    """reasoning_format deepseek with a template llama.cpp recognises as thinking."""
    server = _server(scripted, chat_template=THINKING_TEMPLATE, reasoning_format="deepseek")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def inline(scripted):
    """reasoning_format none: the reasoning stays in content, <think> and all."""
    server = _server(scripted, chat_template=THINKING_TEMPLATE, reasoning_format="none")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def own_template(scripted):
    """The GGUF's own chat template (ggufgen.CHAT_TEMPLATE), reasoning_format deepseek."""
    server = _server(scripted, reasoning_format="deepseek")
    yield server
    server.stop()


def post(http: requests.Session, server, body: dict[str, Any], path: str = "/v1/chat/completions",
         **kw: Any) -> requests.Response:
    return http.post(server.url(path), json={"messages": HI, "temperature": 0, **body}, timeout=TIMEOUT, **kw)


def stream(server, body: dict[str, Any] | None = None,
           path: str = "/v1/chat/completions") -> tuple[requests.Response, str, list[Any]]:
    """The raw SSE text and its events: the JSON of each ``data:`` block, ``"[DONE]"`` as is.

    On a connection of its own: llama-server closes the connection after a stream, and a pooled one
    could be reused before its close arrives (test_the_connection_is_closed_after_a_stream)."""
    with direct() as own:
        response = post(own, server, {"stream": True, **(body or {})}, path=path)
        raw = response.content.decode()
    assert raw.endswith("\n\n")
    events: list[Any] = []
    for block in raw[:-2].split("\n\n"):
        assert "\n" not in block and block.startswith("data: "), block  # one data line per event
        data = block[len("data: "):]
        events.append(data if data == "[DONE]" else json.loads(data))
    return response, raw, events


def deltas(events: list[Any], key: str) -> str:
    return "".join(c["delta"].get(key) or "" for e in events if isinstance(e, dict) for c in e["choices"])


def delta_keys(events: list[Any]) -> set[str]:
    return {k for e in events if isinstance(e, dict) for c in e["choices"] for k in c["delta"]}


# --- the fixture itself ----------------------------------------------------------------------------


def test_the_fixture_serves_on_a_free_loopback_port_and_stops_cleanly(scripted, http):
    with run_llama_server(scripted, port=0) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.base_url) and server.port > 0
        for path in ("/health", "/v1/health"):
            answer = http.get(server.url(path), timeout=TIMEOUT)
            assert answer.status_code == 200 and answer.json() == {"status": "ok"}
        assert server.alive()
    assert server.returncode == 0  # stdin closed: the server destroyed, the child exited by itself
    assert server.log.rstrip().endswith(STOPPED)
    with pytest.raises(requests.ConnectionError):
        http.get(server.url("/health"), timeout=2)
    assert server.stop() == 0  # idempotent


def test_a_model_that_cannot_load_is_an_error_with_the_log(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(RuntimeError, match="exited with status 1 while starting") as caught:
        start_llama_server(bad, startup_timeout=30)
    assert "Failed to init server" in str(caught.value)


@pytest.mark.parametrize("dtype", ("f32", "q8_0"))
@pytest.mark.parametrize("no_repack", (True, False), ids=("no-repack", "repack"))
def test_weights_load_without_amx_or_repacked_buffers_and_generate(tmp_path, http, dtype, no_repack):
    """The prebuilt CPU wheel has no AMX kernels (its system info lists AVX2 and REPACK, no AMX), and
    here even Q8_0 with extra buffer types allowed loads into CPU_Mapped only: no crash either way."""
    model = write_scripted_model(tmp_path / f"s-{dtype}.gguf", arch="deepseek2", dtype=dtype)
    with run_llama_server(model, no_repack=no_repack, chat_template=THINKING_TEMPLATE, verbosity=4) as server:
        answer = post(http, server, {}).json()["choices"][0]["message"]
        log = server.log_text()
    assert answer == {"role": "assistant", "content": "OK!", "reasoning_content": "Hm."}
    assert "CPU_Mapped model buffer size" in log
    assert "AMX = 1" not in log
    if no_repack:
        assert "CPU_REPACK" not in log and "AMX model buffer" not in log


def test_random_weight_models_answer_what_a_grammar_forces(tmp_path, http):
    """Any generated model can be made to say an exact text: the request's ``grammar``."""
    model = write_model(tmp_path / "mla.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0")[0]
    with run_llama_server(model, chat_template=THINKING_TEMPLATE) as server:
        body = {"grammar": gbnf_literal('Hm, "quotes"\n</think>OK!'), "max_tokens": 40}
        message = post(http, server, body).json()["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "OK!", "reasoning_content": 'Hm, "quotes"\n'}


# --- streaming and reasoning -----------------------------------------------------------------------


def test_stream_deepseek_format_puts_reasoning_in_reasoning_content(split):
    response, raw, events = stream(split, {"stream_options": {"include_usage": True}})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert events[-1] == "[DONE]" and raw.endswith("data: [DONE]\n\n")
    chunks = events[:-1]
    assert {e["object"] for e in chunks} == {"chat.completion.chunk"}
    assert len({e["id"] for e in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert {e["model"] for e in chunks} == {ALIAS}
    # the first chunk only announces the role; then one token per chunk
    role = {"role": "assistant", "content": None}
    assert chunks[0]["choices"] == [{"finish_reason": None, "index": 0, "delta": role}]
    assert [c["choices"][0]["delta"] for c in chunks[1:4]] == [{"reasoning_content": t} for t in "Hm."]
    assert [c["choices"][0]["delta"] for c in chunks[4:7]] == [{"content": t} for t in "OK!"]
    assert deltas(events, "reasoning_content") == "Hm." and deltas(events, "content") == "OK!"
    assert "<think>" not in raw and "</think>" not in raw
    # the finish chunk has an empty delta; the usage chunk follows with no choices
    finish, usage = chunks[7], chunks[8]
    assert finish["choices"] == [{"finish_reason": "stop", "index": 0, "delta": {}}]
    assert "usage" not in finish and "timings" not in finish
    assert usage["choices"] == [] and set(usage) >= {"usage", "timings"}
    assert len(chunks) == 9


def test_stream_none_format_keeps_the_think_tags_inline_in_content(inline):
    _, _, events = stream(inline)
    assert delta_keys(events) == {"role", "content"}
    # the <think>\n that ended the prompt comes back in front of the first token
    assert events[1]["choices"][0]["delta"] == {"content": "<think>\nH"}
    assert events[4]["choices"][0]["delta"] == {"content": "</think>"}
    assert deltas(events, "content") == "<think>\nHm.</think>OK!"


@pytest.mark.parametrize("fmt, reasoning, content", [
    ("none", "", "<think>\nHm.</think>OK!"),
    ("deepseek", "Hm.", "OK!"),
    ("deepseek-legacy", "Hm.", "OK!"),  # this llama.cpp no longer keeps the tags in content for it
    ("auto", "Hm.", "OK!"),
])
@pytest.mark.parametrize("which", ("split", "inline"))
def test_a_request_reasoning_format_overrides_the_server_default(http, request, which, fmt, reasoning, content):
    server = request.getfixturevalue(which)
    _, _, events = stream(server, {"reasoning_format": fmt})
    assert deltas(events, "reasoning_content") == reasoning
    assert deltas(events, "content") == content
    message = post(http, server, {"reasoning_format": fmt}).json()["choices"][0]["message"]
    assert message.get("reasoning_content", "") == reasoning and message["content"] == content


def test_enable_thinking_false_reaches_the_template(http, split):
    off = {"chat_template_kwargs": {"enable_thinking": False, "thinking": False}}  # what dslocal sends
    prompt = post(http, split, off, path="/apply-template").json()["prompt"]
    assert prompt == "<｜User｜>Hi<｜Assistant｜></think>"
    assert post(http, split, {}, path="/apply-template").json()["prompt"] == "<｜User｜>Hi<｜Assistant｜><think>\n"
    _, _, events = stream(split, off)
    assert delta_keys(events) == {"role", "content"}
    assert deltas(events, "content") == "OK!"
    answer = post(http, split, off).json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "OK!"}
    assert answer["usage"]["completion_tokens"] == 3 + 1  # O K ! and EOS


def test_the_generated_models_own_template_gets_no_reasoning_split(http, own_template):
    """ggufgen.CHAT_TEMPLATE never renders reasoning and always opens <think>: llama.cpp's template
    analyser finds no reasoning markers in it, so even reasoning_format deepseek leaves the reasoning
    (minus the prompt's <think>\\n) and the </think> in content; enable_thinking changes nothing."""
    for body in ({}, {"reasoning_format": "deepseek"}, {"chat_template_kwargs": {"enable_thinking": False}}):
        _, _, events = stream(own_template, body)
        assert delta_keys(events) == {"role", "content"}
        assert deltas(events, "content") == "Hm.</think>OK!"
    prompt = post(http, own_template, {}, path="/apply-template").json()
    assert prompt == {"prompt": "<｜User｜>Hi<｜Assistant｜><think>\n"}


def test_an_answer_cut_inside_the_reasoning_has_no_content(http, split):
    _, _, events = stream(split, {"max_tokens": 2})
    assert deltas(events, "reasoning_content") == "Hm" and deltas(events, "content") == ""
    assert events[-2]["choices"][0]["finish_reason"] == "length"
    message = post(http, split, {"max_tokens": 2}).json()["choices"][0]
    assert message["finish_reason"] == "length"
    assert message["message"] == {"role": "assistant", "content": "", "reasoning_content": "Hm"}


def test_both_routes_answer_and_the_request_model_name_is_ignored(http, split):
    for path in ("/v1/chat/completions", "/chat/completions"):
        answer = post(http, split, {"model": "no-such-model"}, path=path)
        assert answer.status_code == 200
        assert answer.json()["model"] == ALIAS
        assert answer.json()["choices"][0]["message"]["content"] == "OK!"


# --- counts ----------------------------------------------------------------------------------------


def check_timings(timings: dict[str, Any], usage: dict[str, Any] | None = None) -> None:
    assert set(timings) == TIMING_KEYS
    assert timings["predicted_n"] == 8  # H m . </think> O K ! and the EOS
    assert timings["prompt_ms"] > 0 and timings["predicted_ms"] > 0
    assert timings["prompt_per_second"] == pytest.approx(1000 * timings["prompt_n"] / timings["prompt_ms"])
    assert timings["prompt_per_token_ms"] == pytest.approx(timings["prompt_ms"] / timings["prompt_n"])
    # the decode rate leaves out the first token (it came out of the prompt's evaluation)
    decoded = timings["predicted_n"] - 1
    assert timings["predicted_per_second"] == pytest.approx(1000 * decoded / timings["predicted_ms"])
    assert timings["predicted_per_token_ms"] == pytest.approx(timings["predicted_ms"] / decoded)
    if usage is not None:
        # prompt_n counts only the tokens evaluated now; the rest came from the prompt cache
        assert usage["prompt_tokens"] == timings["cache_n"] + timings["prompt_n"]
        assert usage["prompt_tokens_details"] == {"cached_tokens": timings["cache_n"]}
        assert usage["completion_tokens"] == timings["predicted_n"]


def test_usage_chunk_and_timings(split):
    body = {"messages": [{"role": "user", "content": "Count me"}], "stream_options": {"include_usage": True}}
    _, _, events = stream(split, body)
    last = events[-2]
    assert last["choices"] == []
    assert last["usage"] == {"completion_tokens": 8, "prompt_tokens": 12, "total_tokens": 20,
                             "prompt_tokens_details": {"cached_tokens": last["timings"]["cache_n"]}}
    check_timings(last["timings"], last["usage"])
    # the same prompt again: its tokens but the last come from the cache
    _, _, again = stream(split, body)
    assert again[-2]["timings"]["cache_n"] == 11 and again[-2]["timings"]["prompt_n"] == 1
    check_timings(again[-2]["timings"], again[-2]["usage"])


def test_without_include_usage_timings_ride_on_the_finish_chunk(http, split):
    _, _, events = stream(split)
    assert not any("usage" in e for e in events[:-1])
    finish = events[-2]
    assert finish["choices"][0]["finish_reason"] == "stop"
    check_timings(finish["timings"])
    answer = post(http, split, {}).json()
    assert answer["object"] == "chat.completion" and answer["choices"][0]["finish_reason"] == "stop"
    check_timings(answer["timings"], answer["usage"])


def test_timings_per_token_puts_timings_on_every_chunk(split):
    _, _, events = stream(split, {"timings_per_token": True})
    assert "timings" not in events[0]  # the role chunk
    # one chunk a token but </think>, which only ends the reasoning; the finish chunk counts the EOS
    assert [e["timings"]["predicted_n"] for e in events[1:-1]] == [1, 2, 3, 5, 6, 7, 8]
    assert events[-2]["choices"][0] == {"finish_reason": "stop", "index": 0, "delta": {}}


# --- models and errors -----------------------------------------------------------------------------


def test_v1_models_lists_the_alias(http, split):
    answer = http.get(split.url("/v1/models"), timeout=TIMEOUT)
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "list"
    (model,) = body["data"]
    assert model["id"] == ALIAS and model["object"] == "model" and model["owned_by"] == "llamacpp"
    assert model["aliases"] == [ALIAS]
    assert {"n_ctx_train", "n_vocab", "n_params", "size"} <= set(model["meta"])
    assert body["models"][0]["name"] == ALIAS  # an Ollama-style list as well


def error_of(response: requests.Response, status: int, kind: str) -> str:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == status and error["type"] == kind
    return error["message"]


def test_error_statuses_and_bodies(http, split):
    # an unknown route (or a GET where only POST is routed) is 404 "File Not Found"
    for method, path in (("GET", "/v1/nope"), ("POST", "/v1/nope"), ("GET", "/v1/chat/completions"),
                         ("POST", "/v1/v1/chat/completions")):
        answer = http.request(method, split.url(path), timeout=TIMEOUT)
        assert error_of(answer, 404, "not_found_error") == "File Not Found"
        assert answer.json() == {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}
    url = split.url("/v1/chat/completions")
    for data in (b"{not json", b'{"stream": true, "messages": ['):
        answer = http.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
        assert error_of(answer, 400, "invalid_request_error").startswith("[json.exception.parse_error.101]")
    assert error_of(http.post(url, json={"model": "x"}, timeout=TIMEOUT), 400,
                    "invalid_request_error") == "'messages' is required"
    assert error_of(http.post(url, json={"messages": "Hi"}, timeout=TIMEOUT), 400,
                    "invalid_request_error") == "Expected 'messages' to be an array"
    bad_grammar = post(http, split, {"grammar": "root ::= ("})
    message = error_of(bad_grammar, 400, "invalid_request_error")
    assert message == "Failed to initialize samplers: failed to parse grammar"


def test_a_prompt_longer_than_the_context_is_refused_before_any_event(http, split):
    long = [{"role": "user", "content": "the cat " * 300}]
    for body in ({"messages": long}, {"messages": long, "stream": True}):
        answer = post(http, split, body)
        message = error_of(answer, 400, "exceed_context_size_error")  # JSON, not text/event-stream
        assert re.fullmatch(r"request \(\d+ tokens\) exceeds the available context size \(512 tokens\), "
                            r"try increasing it", message)
        error = answer.json()["error"]
        assert error["n_ctx"] == 512 and error["n_prompt_tokens"] > 512


# --- connections -----------------------------------------------------------------------------------


def raw_request(body: dict[str, Any]) -> bytes:
    data = json.dumps({"messages": HI, "temperature": 0, **body}).encode()
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(data)) + data


def read_response(sock: socket.socket) -> tuple[str, bytes]:
    """One response with a Content-Length: its head and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head.decode(), body


def test_the_connection_is_closed_after_a_stream_but_kept_after_an_answer(split):
    """llama-server (cpp-httplib) answers a stream with ``Keep-Alive: timeout=5, max=100`` and no
    ``Connection: close``, yet closes the connection once the last chunk is out. A client that reads
    the stream to its end and pools the connection may send its next request into the closing socket
    and get ``RemoteDisconnected`` (requests: ConnectionError 'Connection aborted'). dslocal's client
    closes each streamed response instead, so its connection is never reused."""
    with socket.create_connection(("127.0.0.1", split.port), timeout=TIMEOUT) as sock:
        for _ in range(2):  # two answers on one connection
            sock.sendall(raw_request({}))
            head, body = read_response(sock)
            assert head.startswith("HTTP/1.1 200 OK") and "Keep-Alive: timeout=5, max=100" in head
            assert json.loads(body)["choices"][0]["message"]["content"] == "OK!"
    with socket.create_connection(("127.0.0.1", split.port), timeout=TIMEOUT) as sock:
        sock.sendall(raw_request({"stream": True}))
        data = b""
        while chunk := sock.recv(65536):  # until the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Keep-Alive: timeout=5, max=100" in head
    assert b"Connection: close" not in head
    assert body.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")


# --- a client that goes away -----------------------------------------------------------------------


def metric(http: requests.Session, server, name: str) -> float:
    text = http.get(server.url("/metrics"), timeout=TIMEOUT).text
    (line,) = [line for line in text.splitlines() if line.startswith(f"llamacpp:{name} ")]
    return float(line.split()[1])


def test_a_client_disconnect_cancels_the_answer_and_the_server_serves_the_next(scripted, http):
    """``ignore_eos`` makes the scripted model run on (4000 tokens take about 1.3 s here); closing the
    response after a few events cancels the task within a few tokens (6 here), and frees the only slot."""
    with run_llama_server(scripted, n_ctx=4096, n_parallel=1, chat_template=THINKING_TEMPLATE) as server:
        before = metric(http, server, "tokens_predicted_total")
        body = {"stream": True, "ignore_eos": True, "max_tokens": 4000}
        response = post(direct(), server, body, stream=True)
        seen = []
        for line in response.iter_lines():
            if line.startswith(b"data: "):
                seen.append(json.loads(line[6:]))
                if len(seen) == 5:
                    break
        response.close()  # what dslocal's client does on cancel
        assert deltas(seen, "reasoning_content") == "Hm."
        deadline = time.monotonic() + 5
        while any(slot["is_processing"] for slot in http.get(server.url("/slots"), timeout=TIMEOUT).json()):
            assert time.monotonic() < deadline, "the slot is still generating for nobody"
            time.sleep(0.05)
        assert metric(http, server, "tokens_predicted_total") - before < 500
        while "stop: cancel task" not in server.log_text():  # llama.cpp logs from a thread of its own
            assert time.monotonic() < deadline, "the server did not cancel the task"
            time.sleep(0.05)
        answer = post(http, server, {"max_tokens": 20})
        assert answer.json()["choices"][0]["message"] == {"role": "assistant", "content": "OK!",
                                                           "reasoning_content": "Hm."}
        assert server.alive()
