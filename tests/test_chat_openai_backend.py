"""OpenAIChat and DeepSeekChat against a loopback double of the DeepSeek API (tests/deepseek_api_double.py),
and against the same double as a plain OpenAI-compatible server for the other dialects' request fields.

Covered: thinking and answer events, stats from ``usage`` and llama-server's ``timings``, how each dialect is
asked to think, DeepSeek's thinking object and reasoning_effort, keep-alive comments, a cancelled stream (the double sees the
disconnect), a refused connection, a connection cut mid-answer, the API's error codes as one-line messages
with a hint and never the key, https for DeepSeek, and where the key comes from (environment, an in-memory
keyring, no keyring at all).
"""

from __future__ import annotations

import json
from typing import Any

import keyring
import keyring.backend
import keyring.errors
import pytest
import requests
from deepseek_api_double import DEFAULT_KEY, RETIRED_MODELS, DeepSeekDouble, tokens
from keyring.backends import fail
from toolbox import free_port

from dslocal.chat import keys
from dslocal.chat.backends.deepseek import DEFAULT_MODEL, MODELS, DeepSeekChat
from dslocal.chat.backends.openai import OpenAIChat, think_fields
from dslocal.chat.events import (
    AnswerDelta,
    ChatError,
    ChatOptions,
    Done,
    Message,
    ThinkingDelta,
    ThinkingWasAnswer,
)
from dslocal.chat.reasoning import collect
from dslocal.errors import ConfigError

HELLO = [Message("user", "Say OK.")]
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _no_keys_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEEPSEEK_API_KEY", "DSLOCAL_OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def double():
    with DeepSeekDouble() as server:
        yield server


@pytest.fixture
def generic():
    """``generic(**kw)``: the double as a plain OpenAI-compatible server (no key, any model)."""
    made: list[DeepSeekDouble] = []

    def make(**kw: Any) -> DeepSeekDouble:
        kw.setdefault("api_key", None)
        server = DeepSeekDouble(generic=True, **kw)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def deepseek(double: DeepSeekDouble, model: str | None = None, **kw: Any) -> DeepSeekChat:
    kw.setdefault("api_key", DEFAULT_KEY)
    return DeepSeekChat(model, base_url=kw.pop("base_url", double.url), read_timeout=TIMEOUT, **kw)


def run(backend: OpenAIChat, options: ChatOptions | None = None, messages: list[Message] | None = None) -> list[Any]:
    return list(backend.stream(messages or HELLO, options or ChatOptions()))


def texts(events: list[Any]) -> tuple[str, str]:
    return collect([e for e in events if isinstance(e, (ThinkingDelta, AnswerDelta, ThinkingWasAnswer))])


def assert_no_key(*things: object, key: str = DEFAULT_KEY) -> None:
    for thing in things:
        shown = thing if isinstance(thing, str) else repr(thing)
        assert key not in shown
        assert key[-4:] not in shown  # not even the tail the API echoes in its 401


def assert_one_line_error(event: object) -> ChatError:
    assert isinstance(event, ChatError)
    assert event.message and "\n" not in event.message
    assert event.hint and "\n" not in event.hint
    return event




# -- the DeepSeek API: thinking, answer, stats, the thinking switch ---------------------------------------


def test_deepseek_flash_streams_reasoning_before_the_answer_and_the_stats_come_from_usage(double):
    events = run(deepseek(double))
    deltas = [e for e in events if not isinstance(e, Done)]
    assert deltas == [ThinkingDelta("Hm"), ThinkingDelta("."), AnswerDelta("OK"), AnswerDelta("!")]
    assert texts(events) == ("Hm.", "OK!")
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "stop" and not done.thinking_unterminated
    stats = done.stats
    assert stats.source == "backend"
    assert stats.prompt_tokens == 4 + len(tokens("Say OK."))
    assert stats.answer_tokens == 4  # completion_tokens: the reasoning's 2 tokens included
    assert stats.first_token_seconds is not None and stats.thinking_seconds is not None
    assert stats.total_seconds >= stats.first_token_seconds

    sent = double.last
    assert sent.path == "/chat/completions" and sent.auth == "ok"
    assert sent.body["model"] == DEFAULT_MODEL == "deepseek-flash"
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [{"role": "user", "content": "Say OK."}]
    for field in ("chat_template_kwargs", "reasoning_effort", "thinking"):
        assert field not in sent.body  # think None: the API's own default, thinking on at effort high
    assert sent.effort == "high"


@pytest.mark.parametrize(("think", "thinking", "effort", "ran"), [
    (True, {"type": "enabled"}, None, "high"),
    ("high", {"type": "enabled"}, "high", "high"),
    ("low", {"type": "enabled"}, "low", "low"),
    ("medium", {"type": "enabled"}, "high", "high"),  # guides/thinking_mode: medium runs as high; sent so
    ("max", {"type": "enabled"}, "max", "max"),
    (False, {"type": "disabled"}, None, None),
])
def test_the_think_switch_is_the_thinking_object_and_reasoning_effort(double, think, thinking, effort, ran):
    events = run(deepseek(double), ChatOptions(think=think))
    body = double.last.body
    assert body["model"] == DEFAULT_MODEL  # the switch no longer changes the model
    assert body["thinking"] == thinking and body.get("reasoning_effort") == effort
    assert "chat_template_kwargs" not in body
    assert double.last.effort == ran and double.last.status == 200
    reasoning, answer = texts(events)
    assert answer == "OK!"
    assert reasoning == ("" if think is False else "Hm.")  # reasoning only when thinking is enabled
    assert isinstance(events[-1], Done)


@pytest.mark.parametrize("model", [*MODELS, "deepseek-v4-flash"])
def test_a_model_the_user_named_is_sent_as_given_with_the_think_switch(double, model):
    """deepseek-v4-flash is the legacy name the API still accepts (quick_start/pricing, footnote 1)."""
    assert texts(run(deepseek(double, model), ChatOptions(think="max"))) == ("Hm.", "OK!")
    assert (double.last.body["model"], double.last.body["reasoning_effort"]) == (model, "max")
    assert texts(run(deepseek(double, model), ChatOptions(think=False))) == ("", "OK!")
    assert (double.last.body["model"], double.last.body["thinking"]) == (model, {"type": "disabled"})


@pytest.mark.parametrize("model", RETIRED_MODELS)
def test_the_retired_model_names_are_refused_as_the_api_does(double, model):
    """Inaccessible since 2026-07-24 (the V4 release note): a 400 "Model Not Exist", not_found here."""
    error = assert_one_line_error(run(deepseek(double, model))[0])
    assert double.last.status == 400 and error.kind == "not_found"
    assert f"'{model}'" in error.message and "Model Not Exist" in error.message
    assert "deepseek-flash" in error.hint and "retired" in error.hint


@pytest.mark.parametrize(("field", "value"), [("thinking", {"type": "on"}), ("thinking", True),
                                              ("reasoning_effort", "extreme")])
def test_the_double_refuses_thinking_values_the_docs_do_not_list(double, field, value):
    response = requests.post(f"{double.url}/chat/completions", headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
                             json={"model": DEFAULT_MODEL, "messages": [{"role": "user", "content": "Hi"}],
                                   field: value}, timeout=TIMEOUT)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("Failed to deserialize the JSON body")


def test_a_v1_base_url_works_too(double):
    events = run(deepseek(double, base_url=double.url + "/v1/"))
    assert double.last.path == "/v1/chat/completions"
    assert texts(events) == ("Hm.", "OK!")


def test_the_history_never_carries_reasoning_back(double):
    """Without tool calls the API ignores reasoning_content in the input (guides/thinking_mode): never sent."""
    history = [Message("user", "Hi"), Message("assistant", "Hello", thinking="They greet me."),
               Message("user", "Again"), Message("assistant", "", partial=True), Message("user", "Say OK.")]
    events = run(deepseek(double), messages=history)
    assert isinstance(events[-1], Done)
    assert double.last.body["messages"] == [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Again"}, {"role": "user", "content": "Say OK."}]


def test_only_the_apis_own_sampling_fields_are_sent(double):
    options = ChatOptions(temperature=0.6, top_p=0.95, min_p=0.05, top_k=40, seed=7, max_tokens=100, stop=("END",))
    run(deepseek(double), options)
    body = double.last.body
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["stop"]) == (0.6, 0.95, 100, ["END"])
    for field in ("min_p", "top_k", "seed"):
        assert field not in body


def test_max_tokens_that_run_out_end_with_reason_length(double):
    events = run(deepseek(double), ChatOptions(max_tokens=3))
    assert texts(events) == ("Hm.", "OK")  # max_tokens counts the reasoning too
    assert isinstance(events[-1], Done) and events[-1].reason == "length"


def test_an_answer_about_think_tags_stays_the_answer(double):
    """The API's content is the answer verbatim: a ``</think>`` in it is text, not a tag."""
    double.script(answer="Close it with </think> then answer.")
    events = run(deepseek(double), ChatOptions(think=False))
    assert not any(isinstance(e, (ThinkingWasAnswer, ThinkingDelta)) for e in events)
    assert texts(events) == ("", "Close it with </think> then answer.")


def test_keep_alive_comments_while_the_api_waits_are_ignored(double):
    double.script(keepalives=5, keepalive_interval=0.01)
    events = run(deepseek(double))
    assert [e for e in events if not isinstance(e, Done)] == [
        ThinkingDelta("Hm"), ThinkingDelta("."), AnswerDelta("OK"), AnswerDelta("!")]
    assert isinstance(events[-1], Done)


def test_the_usage_the_double_reports_adds_up(double):
    """The double's own usage arithmetic (api/create-chat-completion, guides/kv_cache)."""
    first = [{"role": "user", "content": "Say OK."}]
    usage_first = _raw_usage(double, first)
    assert usage_first["prompt_cache_hit_tokens"] == 0
    second = first + [{"role": "assistant", "content": "OK!"}, {"role": "user", "content": "Again."}]
    usage = _raw_usage(double, second)
    assert usage["prompt_cache_hit_tokens"] + usage["prompt_cache_miss_tokens"] == usage["prompt_tokens"]
    assert usage["prompt_cache_hit_tokens"] == (4 + len(tokens("Say OK."))) + (4 + len(tokens("OK!")))
    assert usage["completion_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] + len(tokens("OK!"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _raw_usage(double: DeepSeekDouble, messages: list[dict[str, str]]) -> dict[str, Any]:
    response = requests.post(f"{double.url}/chat/completions", headers={"Authorization": f"Bearer {DEFAULT_KEY}"},
                             json={"model": DEFAULT_MODEL, "messages": messages, "stream": True,
                                   "stream_options": {"include_usage": True}}, timeout=TIMEOUT)
    chunks = [json.loads(line[6:]) for line in response.text.splitlines()
              if line.startswith("data: {")]
    assert chunks[-1]["choices"] == [] and all(c["usage"] is None for c in chunks[:-1])
    return chunks[-1]["usage"]


# -- cancelled, refused, cut ---------------------------------------------------------------------------------


def test_closing_the_stream_closes_the_connection(double):
    double.script(answer="word " * 400, delay=0.005)
    stream = deepseek(double).stream(HELLO, ChatOptions(think=False))
    first = next(stream)
    assert isinstance(first, AnswerDelta)
    stream.close()
    assert double.disconnected.wait(5), "the double never saw the client go away"
    assert double.completed == 0


def test_nothing_listening_is_a_connection_error(double):
    port = free_port()
    events = run(OpenAIChat(f"http://127.0.0.1:{port}/v1", "m", read_timeout=TIMEOUT))
    assert len(events) == 1
    error = assert_one_line_error(events[0])
    assert error.kind == "connection" and "nothing answers" in error.message


@pytest.mark.parametrize("drop_after", [1, 3])
def test_a_connection_cut_mid_answer_keeps_what_came_and_ends_in_a_connection_error(double, drop_after):
    double.script(drop_after=drop_after)
    events = run(deepseek(double))
    expected = [ThinkingDelta("Hm"), ThinkingDelta("."), AnswerDelta("OK")][:drop_after]
    assert events[:-1] == expected
    error = assert_one_line_error(events[-1])
    assert error.kind == "connection" and "partial answer is kept" in error.hint
    assert not any(isinstance(e, Done) for e in events)
    assert double.dropped == 1


def test_a_cut_after_every_delta_but_before_the_finish_is_still_an_error(double):
    double.script(drop_after=99)
    events = run(deepseek(double))
    assert texts(events[:-1]) == ("Hm.", "OK!")
    assert assert_one_line_error(events[-1]).kind == "connection"


def test_an_answer_the_api_interrupts_for_lack_of_resources_is_an_error(double):
    double.script(finish_reason="insufficient_system_resource")
    events = run(deepseek(double))
    assert texts(events[:-1]) == ("Hm.", "OK!")
    error = assert_one_line_error(events[-1])
    assert error.kind == "backend" and "insufficient_system_resource" in error.message


# -- the API's error codes -----------------------------------------------------------------------------------

_WANTED = {  # status -> (a word in the message, a word in the hint)
    400: ("Failed to parse", "request"),
    402: ("Insufficient Balance", "top it up"),
    422: ("Failed to deserialize", "option"),
    429: ("Rate Limit Reached", "wait"),
    500: ("Server Error", "retry"),
    503: ("Server Overloaded", "retry"),
}


@pytest.mark.parametrize("status", sorted(_WANTED))
def test_each_documented_error_code_is_one_line_with_a_hint_and_no_key(double, status):
    double.script(fail=status)
    backend = deepseek(double)
    events = run(backend)
    assert len(events) == 1
    error = assert_one_line_error(events[0])
    word, hint_word = _WANTED[status]
    assert f"HTTP {status}" in error.message and word in error.message
    assert hint_word in error.hint
    assert error.kind == "refused"
    assert_no_key(error.message, error.hint, error, backend)


def test_a_wrong_key_is_refused_without_echoing_any_of_it(double):
    wrong = "sk-wrong0000000000000000000000wxyz"
    backend = deepseek(double, api_key=wrong)
    events = run(backend)
    assert double.last.auth == "wrong"
    assert len(events) == 1
    error = assert_one_line_error(events[0])
    assert error.kind == "refused" and "HTTP 401" in error.message and "API key" in error.message
    assert "dslocal key status" in error.hint
    assert_no_key(error.message, error.hint, error, backend, key=wrong)  # the API's body had ****wxyz


def test_no_key_at_all_is_a_401_too(double):
    events = run(OpenAIChat(double.url, DEFAULT_MODEL, dialect="deepseek", read_timeout=TIMEOUT))
    assert double.last.auth == "missing"
    assert assert_one_line_error(events[0]).kind == "refused"


def test_an_unknown_model_is_not_found_with_the_apis_model_names(double):
    events = run(deepseek(double, "deepseek-r1"))
    error = assert_one_line_error(events[0])
    assert error.kind == "not_found"
    assert "'deepseek-r1'" in error.message and "Model Not Exist" in error.message
    assert all(name in error.hint for name in MODELS)


def test_a_key_the_server_echoes_is_hidden_from_the_message(double):
    double.script(fail=500, fail_message=f"upstream said: bad token {DEFAULT_KEY}\n(retry)")
    backend = deepseek(double)
    error = assert_one_line_error(run(backend)[0])
    assert DEFAULT_KEY not in error.message and "****" in error.message
    assert "upstream said" in error.message


def test_the_key_is_in_no_repr(double):
    backend = deepseek(double)
    assert_no_key(backend, backend._auth, backend.session)
    assert "Bearer" not in repr(backend)


def test_a_key_with_a_line_break_is_refused_before_any_request(double):
    with pytest.raises(ConfigError) as caught:
        deepseek(double, api_key=DEFAULT_KEY + "\nX-Evil: 1")
    assert_no_key(caught.value.message, caught.value.hint or "", str(caught.value))
    assert double.requests == []


# -- https for the DeepSeek API ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.deepseek.com", "http://localhost.example.com:8080", "http://10.0.0.1",
                                 "ftp://127.0.0.1", "api.deepseek.com"])
def test_the_deepseek_api_is_https_unless_on_loopback(url):
    with pytest.raises(ConfigError) as caught:
        DeepSeekChat(base_url=url, api_key=DEFAULT_KEY)
    assert "https" in caught.value.message and caught.value.hint
    assert_no_key(caught.value.message, caught.value.hint)


@pytest.mark.parametrize("url", ["https://api.deepseek.com", "http://127.0.0.1:9", "http://localhost:9",
                                 "http://[::1]:9/v1"])
def test_https_or_loopback_http_is_accepted(url):
    assert DeepSeekChat(base_url=url, api_key=DEFAULT_KEY).base_url == url.rstrip("/")


# -- the other dialects: how thinking is asked for, what comes back -------------------------------------------

_THINK_FIELDS = [
    ("llama-server", None, {}),
    ("llama-server", True, {"chat_template_kwargs": {"enable_thinking": True, "thinking": True}}),
    ("llama-server", False, {"chat_template_kwargs": {"enable_thinking": False, "thinking": False}}),
    ("llama-server", "high", {"chat_template_kwargs": {"enable_thinking": True, "thinking": True,
                                                       "reasoning_effort": "high"}}),
    ("vllm", None, {}),
    ("vllm", True, {"chat_template_kwargs": {"enable_thinking": True, "thinking": True}}),
    ("vllm", False, {"chat_template_kwargs": {"enable_thinking": False, "thinking": False}}),
    ("vllm", "low", {"chat_template_kwargs": {"enable_thinking": True, "thinking": True, "reasoning_effort": "low"},
                     "reasoning_effort": "low"}),
    ("generic", "max", {"chat_template_kwargs": {"enable_thinking": True, "thinking": True, "reasoning_effort": "max"},
                        "reasoning_effort": "max"}),
    ("ollama", None, {}),
    ("ollama", True, {}),
    ("ollama", False, {"reasoning_effort": "none"}),
    ("ollama", "medium", {"reasoning_effort": "medium"}),
    ("deepseek", None, {}),
    ("deepseek", True, {"thinking": {"type": "enabled"}}),
    ("deepseek", False, {"thinking": {"type": "disabled"}}),
    ("deepseek", "low", {"thinking": {"type": "enabled"}, "reasoning_effort": "low"}),
    ("deepseek", "medium", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
    ("deepseek", "high", {"thinking": {"type": "enabled"}, "reasoning_effort": "high"}),
    ("deepseek", "max", {"thinking": {"type": "enabled"}, "reasoning_effort": "max"}),
]


@pytest.mark.parametrize(("dialect", "think", "fields"), _THINK_FIELDS)
def test_think_fields_per_dialect(dialect, think, fields):
    assert think_fields(dialect, think) == fields


@pytest.mark.parametrize(("dialect", "think", "fields"), [row for row in _THINK_FIELDS if row[0] != "deepseek"])
def test_the_think_fields_are_what_goes_on_the_wire(generic, dialect, think, fields):
    server = generic()
    events = run(OpenAIChat(server.url + "/v1", "some-model", dialect=dialect, read_timeout=TIMEOUT),
                 ChatOptions(think=think))
    body = server.last.body
    for name in ("chat_template_kwargs", "reasoning_effort", "thinking"):
        assert body.get(name) == fields.get(name)
    assert body["model"] == "some-model"
    assert server.last.auth == "none needed"  # no key, no Authorization header
    assert isinstance(events[-1], Done)


def test_the_other_dialects_send_every_sampling_field(generic):
    server = generic()
    options = ChatOptions(temperature=0.6, top_p=0.9, min_p=0.05, top_k=40, seed=7, extra={"repeat_penalty": 1.1})
    run(OpenAIChat(server.url, "m", dialect="llama-server", read_timeout=TIMEOUT), options)
    body = server.last.body
    assert {k: body[k] for k in ("temperature", "top_p", "min_p", "top_k", "seed", "repeat_penalty")} == {
        "temperature": 0.6, "top_p": 0.9, "min_p": 0.05, "top_k": 40, "seed": 7, "repeat_penalty": 1.1}


@pytest.mark.parametrize(("field", "dialect"), [("reasoning_content", "vllm"), ("reasoning", "ollama"),
                                                ("inline", "llama-server")])
def test_reasoning_in_its_own_field_or_inline_tags_becomes_thinking(generic, field, dialect):
    server = generic(reasoning_field=field)
    server.script(reasoning="Let me see.", answer="OK!")
    events = run(OpenAIChat(server.url, "m", dialect=dialect, read_timeout=TIMEOUT))
    assert texts(events) == ("Let me see.", "OK!")
    assert all("think>" not in e.text for e in events if isinstance(e, (AnswerDelta, ThinkingDelta)))
    first_answer = next(i for i, e in enumerate(events) if isinstance(e, AnswerDelta))
    assert all(not isinstance(e, ThinkingDelta) for e in events[first_answer:])
    assert isinstance(events[-1], Done) and not events[-1].thinking_unterminated


def test_llama_server_timings_give_the_durations(generic):
    server = generic(reasoning_field="reasoning_content", timings=True)
    events = run(OpenAIChat(server.url, "m", dialect="llama-server", read_timeout=TIMEOUT))
    stats = events[-1].stats
    generated = len(tokens("Hm.")) + len(tokens("OK!"))
    prompt = 4 + len(tokens("Say OK."))
    assert stats.answer_tokens == generated and stats.prompt_tokens == prompt
    assert stats.decode_seconds == pytest.approx(10.0 * generated / 1000)
    assert stats.prompt_seconds == pytest.approx(2.0 * prompt / 1000)
    assert stats.decode_tps == pytest.approx(100.0)


def test_a_server_that_wants_a_key_gets_it_and_only_in_the_header(generic):
    server = generic(api_key="local-secret-123")
    events = run(OpenAIChat(server.url, "m", api_key="local-secret-123", read_timeout=TIMEOUT))
    assert server.last.auth == "ok" and isinstance(events[-1], Done)
    assert "local-secret-123" not in json.dumps(server.last.body)
    refused = run(OpenAIChat(server.url, "m", api_key="another-key-456", read_timeout=TIMEOUT))
    assert_no_key(refused[0], key="another-key-456")


# -- keys: the environment, the OS keyring, no keyring ---------------------------------------------------------


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An OS keyring in a dict. priority -1: never chosen by keyring itself, only set by the tests."""

    priority = -1

    def __init__(self, broken: bool = False) -> None:
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}
        self.broken = broken

    def get_password(self, service: str, username: str) -> str | None:
        if self.broken:
            raise keyring.errors.KeyringLocked("locked")
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.broken:
            raise keyring.errors.PasswordSetError("locked")
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if (service, username) not in self.store:
            raise keyring.errors.PasswordDeleteError("not there")
        del self.store[(service, username)]


@pytest.fixture
def use_keyring():
    previous = keyring.get_keyring()

    def use(ring: keyring.backend.KeyringBackend) -> keyring.backend.KeyringBackend:
        keyring.set_keyring(ring)
        return ring

    yield use
    keyring.set_keyring(previous)


def test_the_key_from_the_environment(double, monkeypatch, use_keyring):
    use_keyring(MemoryKeyring()).store[(keys.KEYRING_SERVICE, "deepseek")] = "sk-from-the-keyring-0000"
    monkeypatch.setenv("DEEPSEEK_API_KEY", f"  {DEFAULT_KEY}\n")
    assert keys.get_key("deepseek") == DEFAULT_KEY  # the environment wins, stripped
    where = keys.describe("deepseek")
    assert where == "set in the environment (DEEPSEEK_API_KEY)"
    backend = DeepSeekChat(base_url=double.url, read_timeout=TIMEOUT)
    events = run(backend)
    assert double.last.auth == "ok" and isinstance(events[-1], Done)
    assert_no_key(where, backend)


def test_the_key_from_an_os_keyring(double, use_keyring):
    ring = use_keyring(MemoryKeyring())
    assert keys.get_key("deepseek") is None
    assert keys.describe("deepseek") == "not set (dslocal key set deepseek, or DEEPSEEK_API_KEY)"
    keys.set_key("deepseek", f"  {DEFAULT_KEY} \n")
    assert ring.store == {(keys.KEYRING_SERVICE, "deepseek"): DEFAULT_KEY}
    assert keys.get_key("deepseek") == DEFAULT_KEY
    assert keys.describe("deepseek") == "stored in the OS keyring"
    events = run(DeepSeekChat(base_url=double.url, read_timeout=TIMEOUT))
    assert double.last.auth == "ok" and isinstance(events[-1], Done)
    assert keys.delete_key("deepseek") is True
    assert keys.delete_key("deepseek") is False
    assert keys.get_key("deepseek") is None


def test_an_empty_key_is_not_stored(use_keyring):
    ring = use_keyring(MemoryKeyring())
    with pytest.raises(ConfigError) as caught:
        keys.set_key("deepseek", "  \n")
    assert caught.value.hint
    assert ring.store == {}


def test_a_locked_keyring_is_no_key_and_says_so(use_keyring):
    use_keyring(MemoryKeyring(broken=True))
    assert keys.get_key("deepseek") is None
    assert keys.describe("deepseek") == "unknown: the keyring failed (KeyringLocked)"
    with pytest.raises(ConfigError) as caught:
        keys.set_key("deepseek", DEFAULT_KEY)
    assert "DEEPSEEK_API_KEY" in caught.value.hint
    assert_no_key(caught.value.message, caught.value.hint)


def test_no_keyring_at_all(double, use_keyring):
    use_keyring(fail.Keyring())
    assert keys.get_key("deepseek") is None
    where = keys.describe("deepseek")
    assert "no OS keyring" in where and "DEEPSEEK_API_KEY" in where
    with pytest.raises(ConfigError) as caught:
        keys.set_key("deepseek", DEFAULT_KEY)
    assert "no OS keyring" in caught.value.message
    assert caught.value.hint and "DEEPSEEK_API_KEY" in caught.value.hint
    assert_no_key(caught.value.message, caught.value.hint)
    assert keys.delete_key("deepseek") is False
    with pytest.raises(ConfigError) as missing:
        DeepSeekChat(base_url=double.url)
    assert missing.value.message == "no DeepSeek API key"
    assert "DEEPSEEK_API_KEY" in missing.value.hint and "dslocal key set deepseek" in missing.value.hint
    assert double.requests == []


def test_an_unknown_key_name_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        keys.get_key("anthropic")
    assert "deepseek" in caught.value.hint


def test_a_netrc_entry_for_the_api_host_cannot_replace_the_key(tmp_path, monkeypatch):
    """requests applies ~/.netrc when a request has no auth of its own; the key is the request's auth."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.deepseek.com login someone password other-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    backend = DeepSeekChat(api_key=DEFAULT_KEY)
    assert backend.session.trust_env  # not loopback: the environment counts (proxies, CA bundles, netrc)
    prepared = backend.session.prepare_request(
        requests.Request("POST", "https://api.deepseek.com/chat/completions", json={}, auth=backend._auth))
    assert prepared.headers["Authorization"] == f"Bearer {DEFAULT_KEY}"
