"""``dslocal ask`` and the ``dslocal chat`` REPL, end to end: real subprocesses, a pseudo-terminal, the
Ollama server as a subprocess (the double, or a real one with DSLOCAL_OLLAMA_BIN), real inference of a
scripted model that reasons ``Hm.`` and answers ``OK!``, and the history in real SQLite."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from contract.api import import_files
from contract.conftest import Server

from dslocal.chat.history import HistoryStore, history_path
from dslocal.ollama.modelfile import load_family
from dslocal.testing.ggufgen import write_scripted_model

pexpect = pytest.importorskip("pexpect")
pytest.importorskip("llama_cpp")

PLAIN = "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"  # no .Thinking: no thinking capability


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("chat-cli")
    model = write_scripted_model(root / "scripted.gguf", arch="deepseek2")
    server = Server(root / "server", {}).start()
    import_files(server.url, "r1", [model], template=load_family("deepseek-r1").template)
    import_files(server.url, "plain", [model], template=PLAIN)
    yield server
    server.stop()


@pytest.fixture
def env(server: Server, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "DSLOCAL_"))}
    return {**base, "DSLOCAL_HOME": str(tmp_path / "home"), "OLLAMA_HOST": server.url.removeprefix("http://"),
            "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color", "COLUMNS": "100"}


def ask(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dslocal", "ask", *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120, stdin=None if stdin is not None else subprocess.DEVNULL)


def store(env: dict[str, str]) -> HistoryStore:
    return HistoryStore(history_path(Path(env["DSLOCAL_HOME"]) / "data"))


def test_ask_prints_the_answer_alone(env):
    result = ask(env, "r1", "Why is the sky blue?")
    assert (result.returncode, result.stdout) == (0, "OK!\n"), result.stderr


def test_ask_json_has_the_reasoning_and_the_servers_figures(env):
    result = ask(env, "r1", "Why is the sky blue?", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["answer"], data["thinking"], data["done_reason"]) == ("OK!", "Hm.", "stop")
    assert data["stats"]["source"] == "backend" and data["stats"]["answer_tokens"] >= 7
    assert data["stats"]["decode_tps"] > 0 and data["stats"]["first_token_seconds"] >= 0


def test_ask_reads_the_prompt_from_a_pipe_and_shows_thinking_on_stderr(env):
    result = ask(env, "r1", "--show-thinking", stdin="Why is the sky blue?\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "OK!\n"
    assert "<think>\nHm.\n</think>" in result.stderr


def test_ask_inline_reasoning_of_a_template_without_thinking(env):
    result = ask(env, "plain", "Why?", "--json")
    data = json.loads(result.stdout)["data"]
    assert (data["answer"], data["thinking"]) == ("OK!", "Hm."), "the tags were parsed out of the content"


@pytest.mark.parametrize(("args", "code", "text"), [
    (("ghost", "hi"), 5, "Ollama has no model 'ghost'"),
    (("plain", "hi", "--think"), 2, "does not support thinking"),
    (("r1",), 2, "no prompt"),
])
def test_ask_errors_are_one_line_with_a_hint(env, args, code, text):
    result = ask(env, *args)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("dslocal: error: ") and text in lines[0], result.stderr
    assert lines[-1].startswith("hint: ") and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_ask_save_keeps_the_turn_in_the_history(env):
    assert ask(env, "r1", "Why is the sky blue?", "--save").returncode == 0
    with store(env) as history:
        (summary,) = history.list()
        conversation = history.get(summary.id)
    assert [(m.role, m.content, m.thinking) for m in conversation.messages] == [
        ("user", "Why is the sky blue?", ""), ("assistant", "OK!", "Hm.")]
    assert not conversation.messages[-1].partial and conversation.messages[-1].stats.answer_tokens >= 7


def spawn(env: dict[str, str], *args: str):
    child = pexpect.spawn(sys.executable, ["-m", "dslocal", "chat", *args], env=env, encoding="utf-8", timeout=60,
                          dimensions=(40, 100))
    child.expect("/help for commands")
    return child


def prompt(child) -> None:
    child.expect(">>>")


def bye(child) -> None:
    """/bye ends the REPL, and it exits 0."""
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_repl_streams_answers_and_obeys_commands(env):
    child = spawn(env, "r1")
    prompt(child)
    child.sendline("Why is the sky blue?")
    child.expect("thought")  # the reasoning folded to one line once the answer came
    child.expect("OK!")
    child.expect("tok/s")
    prompt(child)
    child.sendline("/set temperature 0.5")
    child.expect("temperature = 0.5")
    child.sendline("/think off")
    child.expect("trained to reason")
    child.sendline("/thinking")
    child.expect("Hm.")
    child.sendline("/system Answer in French.")
    child.expect("first user turn")  # R1: the system prompt is folded
    child.sendline("/nope")
    child.expect("unknown command /nope")
    child.sendline("/stats")
    child.expect("tokens")
    child.sendline("/model plain")
    child.expect("plain:latest via ollama")
    child.sendline("/model r1")
    child.expect("r1:latest via ollama; rules of deepseek-r1")
    child.sendline('"""')
    child.sendline("two")
    child.sendline('lines"""')
    child.expect("OK!")
    bye(child)
    with store(env) as history:
        conversation = history.latest()
    assert [m.content for m in conversation.messages if m.role == "user"] == ["Why is the sky blue?", "two\nlines"]
    assert conversation.settings["options"]["temperature"] == 0.5
    assert conversation.settings["options"]["think"] is False
    assert conversation.settings["system"] == "Answer in French."


def test_ctrl_c_stops_the_answer_not_the_program(env, server):
    """The server is frozen (SIGSTOP) so the answer cannot come; Ctrl+C stops the wait, the turn is kept
    as a cut-short answer, and the next question is answered once the server runs again."""
    if not server.proc:
        pytest.skip("needs the server as a child process")
    child = spawn(env, "r1")
    prompt(child)
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        child.sendline("Why is the sky blue?")
        child.expect("Why is the sky blue?")
        time.sleep(1.5)  # the line editor has handed the line over; the request waits on the frozen server
        child.sendintr()
        child.expect("stopped; the partial answer is kept")
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    prompt(child)
    child.sendline("/retry")
    child.expect("OK!")
    bye(child)
    with store(env) as history:
        messages = history.latest().messages
    assert [(m.role, m.partial) for m in messages] == [("user", False), ("assistant", True), ("assistant", False)]


def test_resume_carries_on_the_same_conversation(env):
    child = spawn(env, "r1")
    prompt(child)
    child.sendline("First question")
    child.expect("OK!")
    bye(child)
    with store(env) as history:
        first = history.latest()
    child = spawn(env, "--resume")
    child.expect(f"resuming {first.id}")
    child.expect("First question")
    prompt(child)
    child.sendline("Second question")
    child.expect("OK!")
    bye(child)
    with store(env) as history:
        again = history.get(first.id)
        assert len(history.list()) == 1
    assert [m.content for m in again.messages if m.role == "user"] == ["First question", "Second question"]


def test_chat_without_a_model_picks_the_last_one_used_or_asks(env):
    child = spawn(env, "r1")
    prompt(child)
    bye(child)
    result = subprocess.run([sys.executable, "-m", "dslocal", "chat"], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 2 and "which model? Ollama has 2" in result.stderr, result.stderr


def test_ask_the_deepseek_api_with_a_key_from_the_environment(env):
    """The cloud path end to end against the DeepSeek API double; the key never reaches any output."""
    from deepseek_api_double import DEFAULT_KEY, DeepSeekDouble

    with DeepSeekDouble() as api:
        cloud = {**env, "DEEPSEEK_API_KEY": DEFAULT_KEY}
        result = ask(cloud, "--backend", "deepseek", "--url", api.url, "Why is the sky blue?", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)["data"]
        assert (data["answer"], data["thinking"], data["model"]) == ("OK!", "Hm.", "deepseek-flash")
        # no switch: thinking at the API's default effort, asked for explicitly; reasoning in reasoning_content
        body = api.last.body
        assert (body["model"], body["thinking"], body["reasoning_effort"]) == ("deepseek-flash", {"type": "enabled"},
                                                                               "high")
        result = ask(cloud, "--backend", "deepseek", "--url", api.url, "Why?", "--no-think", "--json")
        data = json.loads(result.stdout)["data"]
        assert (result.returncode, data["answer"], data["thinking"]) == (0, "OK!", "")
        assert (api.last.body["model"], api.last.body["thinking"]) == ("deepseek-flash", {"type": "disabled"})
        assert "reasoning_effort" not in api.last.body
        result = ask(cloud, "deepseek-v4-pro", "Why?", "--backend", "deepseek", "--url", api.url, "--think-level", "max")
        assert (result.returncode, result.stdout) == (0, "OK!\n"), result.stderr
        body = api.last.body
        assert (body["model"], body["thinking"], body["reasoning_effort"]) == ("deepseek-v4-pro", {"type": "enabled"},
                                                                               "max")
        retired = ask(cloud, "deepseek-reasoner", "Why?", "--backend", "deepseek", "--url", api.url)
        assert retired.returncode != 0 and "Model Not Exist" in retired.stderr, retired.stderr
        assert "deepseek-flash" in retired.stderr and "Traceback" not in retired.stderr
        wrong = ask({**env, "DEEPSEEK_API_KEY": "sk-wrong-key-1234"}, "--backend", "deepseek", "--url", api.url, "hi")
        assert wrong.returncode != 0 and "refused the API key" in wrong.stderr
        assert "sk-wrong" not in wrong.stderr + wrong.stdout and "1234" not in wrong.stderr
        missing = ask(env, "--backend", "deepseek", "--url", api.url, "hi")
        assert missing.returncode == 3 and "DEEPSEEK_API_KEY" in missing.stderr
    status = subprocess.run([sys.executable, "-m", "dslocal", "key", "status", "--json"], capture_output=True,
                            text=True, env={**env, "DEEPSEEK_API_KEY": DEFAULT_KEY}, timeout=60)
    assert json.loads(status.stdout)["data"]["keys"]["deepseek"] == "set in the environment (DEEPSEEK_API_KEY)"
    assert DEFAULT_KEY not in status.stdout + status.stderr


def test_think_in_the_chat_sets_the_deepseek_apis_thinking_object_and_effort(env):
    """/think off sends thinking disabled, /think max the effort max, /think on thinking enabled (the API's
    guides/thinking_mode); the reasoning shows only while thinking is on."""
    from deepseek_api_double import DEFAULT_KEY, DeepSeekDouble

    with DeepSeekDouble() as api:
        child = spawn({**env, "DEEPSEEK_API_KEY": DEFAULT_KEY}, "--backend", "deepseek", "--url", api.url)
        child.logfile_read = shown = io.StringIO()
        prompt(child)
        child.sendline("/think off")
        child.expect("think: off")
        child.sendline("Why is the sky blue?")
        child.expect("OK!")
        prompt(child)
        body = api.last.body
        assert (body["model"], body["thinking"]) == ("deepseek-flash", {"type": "disabled"})
        assert "reasoning_effort" not in body and api.last.effort is None
        child.sendline("/thinking")
        child.expect("no reasoning in the last answer")
        child.sendline("/think max")
        child.expect("think: max")
        child.sendline("Why?")
        child.expect("OK!")
        prompt(child)
        body = api.last.body
        assert (body["thinking"], body["reasoning_effort"]) == ({"type": "enabled"}, "max")
        child.sendline("/thinking")
        child.expect("Hm.")
        child.sendline("/think medium")
        child.expect("'medium' is sent as 'high'")
        child.sendline("Again?")
        child.expect("OK!")
        prompt(child)
        assert (api.last.body["reasoning_effort"], api.last.effort) == ("high", "high")
        bye(child)
    assert DEFAULT_KEY not in shown.getvalue()


def test_ask_an_openai_compatible_server(env):
    """Ollama's own /v1 endpoint is an OpenAI-compatible server: reasoning arrives in ``reasoning``."""
    result = ask(env, "r1", "Why?", "--backend", "openai", "--url", "http://" + env["OLLAMA_HOST"] + "/v1",
                 "--dialect", "ollama", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["answer"], data["thinking"], data["backend"]) == ("OK!", "Hm.", "openai")
    assert data["stats"]["answer_tokens"] == 9


def test_no_ollama_is_no_dead_end(env):
    """Ollama not answering: the error offers to start or install it, or the embedded engine."""
    result = ask({**env, "OLLAMA_HOST": "127.0.0.1:9"}, "r1", "hi")
    assert result.returncode == 8
    assert "no Ollama server answers" in result.stderr
    assert "dslocal ollama install" in result.stderr and "--backend embedded" in result.stderr


def test_serve_with_ollama_loads_the_model_and_names_the_endpoint(env, server):
    result = subprocess.run([sys.executable, "-m", "dslocal", "serve", "r1", "--engine", "ollama"], env=env,
                            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert f"Ollama's OpenAI-compatible API: {server.url}/v1 (model id 'r1:latest'" in result.stdout
    loaded = [m["name"] for m in requests.get(server.url + "/api/ps", timeout=10).json()["models"]]
    assert "r1:latest" in loaded
    refused = subprocess.run([sys.executable, "-m", "dslocal", "serve", "r1", "--engine", "ollama", "--host", "0.0.0.0"],
                             env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert refused.returncode == 2 and "Ollama's API has no keys" in refused.stderr
