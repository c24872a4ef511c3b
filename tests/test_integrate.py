"""``dslocal integrate`` and ``dslocal ollama expose``: client settings, the live check, safe exposure.

Golden outputs (tests/golden/integrate-CLIENT-ENGINE.json) were reviewed against the clients' own sources:
* Dify's Ollama provider form: langgenius/dify-official-plugins @7af22831a58d (2026-08-21),
  models/ollama/provider/ollama.yaml (variables model, base_url, api_key, mode (chat|completion),
  context_size (default '4096'), max_tokens (default '4096'), vision_support, function_call_support);
  models/ollama/models/llm/llm.py (per-app rules num_ctx "Default: 2048" and num_gpu "GPU Layers",
  default=1; the plugin appends api/chat to the Base URL, so no /api); models/ollama/README.md ("For
  Docker deployments, use ... http://host.docker.internal:11434 or a LAN IP address").
  models/openai_api_compatible/provider/openai_api_compatible.yaml (endpoint_url, max_tokens_to_sample,
  agent_thought_support, function_calling_type, vision_support) and llm.py (reads 'reasoning' or
  'reasoning_content'); models/deepseek/provider/deepseek.yaml (api_key, endpoint_url
  https://api.deepseek.com) and models/llm/deepseek-v4-flash.yaml (context_size 1000000).
* Open WebUI: .env.example (OLLAMA_BASE_URL, OPENAI_API_BASE_URL, OPENAI_API_KEY), e.g.
  https://huggingface.co/spaces/tang-x/open-webui/blob/95e2069a/.env.example; host-gateway per
  shared/reference/field-refresh-2026-12.md section 4.
* Continue: https://docs.continue.dev/reference (config.yaml models: name, provider, model, apiBase,
  roles, capabilities) and https://docs.continue.dev/yaml-migration (defaultCompletionOptions).
* Ollama's /v1 sends 'reasoning' (field refresh 2.7); the DeepSeek API 'reasoning_content'.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from deepseek_api_double import DEFAULT_KEY, DeepSeekDouble
from toolbox import fake_ollama, free_port

from dslocal.integrate import network

TESTS = Path(__file__).resolve().parent
GOLDEN = TESTS / "golden"
FAKE = TESTS / "fake_ollama.py"
SERVE_KEY = "sk-serve-SENTINEL-7f3a9c0b2d"
CLOUD_KEY = "sk-cloud-SENTINEL-51be0c77aa"
KEY_ENV = {"DSLOCAL_SERVE_API_KEY": SERVE_KEY, "DEEPSEEK_API_KEY": CLOUD_KEY}
URLS = {"ollama": "127.0.0.1:11499", "serve": "http://127.0.0.1:8080", "deepseek": "https://api.deepseek.com"}




def no_key(*texts: str) -> None:
    for text in texts:
        for key in (SERVE_KEY, CLOUD_KEY, DEFAULT_KEY):
            assert key not in text, "a key leaked into the output"


@pytest.mark.parametrize("client", ["dify", "openwebui", "openai", "continue"])
@pytest.mark.parametrize("engine", ["ollama", "serve", "deepseek"])
def test_settings_match_the_reviewed_golden_output(cli, dslocal_home, client, engine):
    done = cli("integrate", client, "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--engine", engine,
               "--url", URLS[engine], "--json", env=KEY_ENV)
    assert done.returncode == 0, done.stderr
    no_key(done.stdout, done.stderr)
    data = json.loads(done.stdout)["data"]
    golden = json.loads((GOLDEN / f"integrate-{client}-{engine}.json").read_text())
    assert data["client"] == golden
    human = cli("integrate", client, "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--engine", engine,
                "--url", URLS[engine], env=KEY_ENV)
    assert human.returncode == 0 and golden["base_url"] in human.stdout
    no_key(human.stdout, human.stderr)


def test_dify_context_size_is_the_modelfile_num_ctx(cli, dslocal_home):
    for ctx in (None, "6144"):
        extra = ["--ctx", ctx] if ctx else []
        modelfile = cli("modelfile", "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", *extra)
        num_ctx = re.search(r"^PARAMETER num_ctx (\d+)$", modelfile.stdout, re.M)[1]
        done = cli("integrate", "dify", "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--engine", "ollama",
                   "--url", URLS["ollama"], "--json", *extra)
        fields = {f["key"]: f["value"] for f in json.loads(done.stdout)["data"]["client"]["fields"]}
        assert fields["context_size"] == num_ctx
        assert int(fields["max_tokens"]) <= int(num_ctx)
        unset = {f["key"] for f in json.loads(done.stdout)["data"]["client"]["leave_unset"]}
        assert unset == {"num_gpu", "num_ctx"}


def test_bad_input_is_one_line(cli, dslocal_home):
    done = cli("integrate", "dify", "no-such-model", "--engine", "ollama", "--url", URLS["ollama"])
    assert done.returncode == 5 and "Traceback" not in done.stderr and "hint:" in done.stderr


# -- the live check against a real subprocess server ------------------------------------------------------

class OllamaProcess:
    """The Ollama double as ``ollama serve`` in a subprocess (as tests/contract runs it)."""

    def __init__(self, root: Path, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.root = root
        env = {k: v for k, v in os.environ.items() if not k.startswith("OLLAMA_")}
        env.update({"OLLAMA_HOST": f"{host}:{self.port}", "OLLAMA_MODELS": str(root / "models"),
                    "HOME": str(root), "OLLAMA_NO_CLOUD": "1",
                    "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")})
        self.log = open(root / "serve.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, str(FAKE), "serve"], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, (root / "serve.log").read_text()[-2000:]
            try:
                requests.get(self.url + "/api/version", timeout=1)
                return
            except requests.RequestException:
                assert time.monotonic() < deadline
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)
        self.log.close()


@pytest.fixture
def ollama_process(tmp_path):
    started = []

    def start(host: str = "127.0.0.1") -> OllamaProcess:
        root = tmp_path / f"s{len(started)}"
        root.mkdir()
        server = OllamaProcess(root, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def r1_gguf(tmp_path_factory):
    pytest.importorskip("llama_cpp")
    from contract.api import R1_JINJA, with_chat_template

    from dslocal.testing.ggufgen import ModelSpec, write_model

    root = tmp_path_factory.mktemp("integrate-model")
    single = write_model(root / "r1.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0")
    return with_chat_template(single[0], root / "r1-jinja.gguf", R1_JINJA)


def probes(data: dict) -> dict[str, dict]:
    return {p["name"]: p for p in data["probes"]}


def test_check_a_server_that_answers_with_the_model(cli, dslocal_home, ollama_process, r1_gguf):
    from contract.api import import_files

    server = ollama_process()
    import_files(server.url, "r1test", [r1_gguf])
    env = {"OLLAMA_HOST": f"127.0.0.1:{server.port}", **KEY_ENV}
    for client, field in (("dify", "thinking"), ("openai", "reasoning")):
        done = cli("integrate", "check", "r1test", "--client", client, "--json", env=env, timeout=300)
        no_key(done.stdout, done.stderr)
        data = json.loads(done.stdout)["data"]
        found = probes(data)
        assert found["host"]["state"] == "ok" and found["model"]["state"] == "ok", data
        assert found["chat"]["state"] == "ok", data
        assert done.returncode == 0 and data["ok"]
        assert data["thinking"] == f"separately, in '{field}'", data
    shown = requests.post(server.url + "/api/show", json={"model": "r1test"}, timeout=10).json()
    settings = cli("integrate", "dify", "r1test", "--json", env=env)
    data = json.loads(settings.stdout)["data"]
    fields = {f["key"]: f["value"] for f in data["client"]["fields"]}
    assert data["model"]["capability_source"] == "Ollama /api/show capabilities"
    assert fields["function_call_support"] == ("Yes" if "tools" in shown["capabilities"] else "No")
    assert fields["vision_support"] == ("Yes" if "vision" in shown["capabilities"] else "No")
    assert fields["model"] == "r1test:latest" and fields["base_url"] == f"http://host.docker.internal:{server.port}"


def test_check_a_server_that_refuses(cli, dslocal_home):
    port = free_port()
    done = cli("integrate", "check", "r1-distill-qwen-7b", "--json", env={"OLLAMA_HOST": f"127.0.0.1:{port}"})
    assert done.returncode == 1
    host = probes(json.loads(done.stdout)["data"])["host"]
    assert host["state"] == "failed" and host["cause"] == f"nothing listens on port {port}"
    assert "dslocal ollama start" in host["fix"]
    human = cli("integrate", "check", "r1-distill-qwen-7b", env={"OLLAMA_HOST": f"127.0.0.1:{port}"})
    assert re.search(r"^FAILED +host ", human.stdout, re.M) and "cause: nothing listens" in human.stdout


def test_check_a_server_without_the_model(cli, dslocal_home, ollama_process):
    server = ollama_process()
    done = cli("integrate", "check", "r1-distill-qwen-7b", "--json", env={"OLLAMA_HOST": f"127.0.0.1:{server.port}"})
    assert done.returncode == 1
    found = probes(json.loads(done.stdout)["data"])
    assert found["host"]["state"] == "ok"
    assert found["model"]["state"] == "failed" and found["model"]["cause"] == "r1-distill-qwen-7b is not pulled"
    assert found["model"]["fix"] == "pull it: 'dslocal pull r1-distill-qwen-7b'"
    assert found["chat"]["state"] == "skipped"


def test_lan_probe_names_the_listening_address(cli, dslocal_home, ollama_process):
    address = network.lan_address()
    if address is None:
        pytest.skip("this machine has no LAN address")
    server = ollama_process("127.0.0.1")
    assert network.listeners(server.port) == ["127.0.0.1"]
    done = cli("integrate", "check", "x", "--lan", "--json", env={"OLLAMA_HOST": f"127.0.0.1:{server.port}"})
    lan = probes(json.loads(done.stdout)["data"])["lan"]
    assert lan["state"] == "failed" and lan["cause"] == f"the server listens on 127.0.0.1 only (not on {address})"
    assert "dslocal ollama expose --lan" in lan["fix"]
    wide = ollama_process("0.0.0.0")
    done = cli("integrate", "check", "x", "--lan", "--json", env={"OLLAMA_HOST": f"127.0.0.1:{wide.port}"})
    assert probes(json.loads(done.stdout)["data"])["lan"]["state"] == "ok"


def test_docker_bridge_probe(cli, dslocal_home, ollama_process):
    docker = network.docker_status()
    server = ollama_process("0.0.0.0")
    done = cli("integrate", "check", "x", "--json", env={"OLLAMA_HOST": f"127.0.0.1:{server.port}"})
    bridge = probes(json.loads(done.stdout)["data"])["docker bridge"]
    if not docker.available:
        assert bridge["state"] == "skipped" and docker.reason in bridge["detail"]
        pytest.skip(f"no working Docker here: {docker.reason}")
    assert bridge["state"] == "ok" and docker.gateway in bridge["url"]


def test_cloud_check_keeps_the_key_out(cli, dslocal_home):
    with DeepSeekDouble() as double:
        env = {"DEEPSEEK_API_KEY": DEFAULT_KEY}
        done = cli("integrate", "check", "--cloud", "--url", double.url, "deepseek-flash", "--json", env=env)
        no_key(done.stdout, done.stderr)
        data = json.loads(done.stdout)["data"]
        assert done.returncode == 0, data
        # no thinking object sent: the API's default (guides/thinking_mode) thinks, at effort high
        assert double.last.body["model"] == "deepseek-flash" and "thinking" not in double.last.body
        assert double.last.effort == "high"
        assert data["thinking"] == "separately, in 'reasoning_content'"
        assert double.last.auth == "ok"
        retired = cli("integrate", "check", "--cloud", "--url", double.url, "deepseek-reasoner", "--json", env=env)
        chat = probes(json.loads(retired.stdout)["data"])["chat"]
        assert retired.returncode == 1 and double.last.status == 400, chat  # retired 2026-07-24: "Model Not Exist"
        wrong = cli("integrate", "check", "--cloud", "--url", double.url, "deepseek-flash", "--json",
                    env={"DEEPSEEK_API_KEY": CLOUD_KEY})
        no_key(wrong.stdout, wrong.stderr)
        chat = probes(json.loads(wrong.stdout)["data"])["chat"]
        assert wrong.returncode == 1 and chat["cause"] == "the key is missing or wrong"


def test_serve_check_reads_reasoning_content(cli, dslocal_home):
    """An OpenAI-compatible server with a key, reasoning in reasoning_content (as llama-server under serve)."""
    with DeepSeekDouble(api_key=SERVE_KEY, generic=True, reasoning_field="reasoning_content") as double:
        done = cli("integrate", "check", "r1", "--engine", "serve", "--url", double.url, "--json", env=KEY_ENV)
        no_key(done.stdout, done.stderr)
        data = json.loads(done.stdout)["data"]
        assert probes(data)["host"]["state"] == "ok"
        assert probes(data)["chat"]["state"] == "ok" and data["thinking"] == "separately, in 'reasoning_content'"


# -- expose and its undo -----------------------------------------------------------------------------------

@pytest.fixture
def fake_ollama_env(tmp_path, dslocal_home):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_ollama(bin_dir)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "OLLAMA_MODELS": str(tmp_path / "models")}


def config_host(home: Path) -> str | None:
    import tomllib

    path = home / "config" / "config.toml"
    return tomllib.loads(path.read_text()).get("ollama_host") if path.exists() else None


def test_expose_needs_confirmation(cli, dslocal_home, fake_ollama_env):
    done = cli("ollama", "expose", "--lan", env=fake_ollama_env)
    assert done.returncode == 2 and "--yes" in done.stderr
    assert "no authentication" in done.stderr and "reverse_proxy" in done.stderr and "proxy_pass" in done.stderr
    assert config_host(dslocal_home) is None, "nothing changed"


def test_expose_and_undo_round_trip_the_managed_daemon(cli, dslocal_home, fake_ollama_env):
    port = free_port()
    set_done = cli("config", "set", "ollama_host", f"127.0.0.1:{port}", env=fake_ollama_env)
    assert set_done.returncode == 0, set_done.stderr
    exposed = cli("ollama", "expose", "--lan", "--yes", "--json", env=fake_ollama_env)
    assert exposed.returncode == 0, exposed.stderr
    assert json.loads(exposed.stdout)["data"] == {"mode": "lan", "ollama_host": f"0.0.0.0:{port}",
                                                  "previous": f"127.0.0.1:{port}"}
    assert config_host(dslocal_home) == f"0.0.0.0:{port}"
    try:
        assert cli("ollama", "start", env=fake_ollama_env).returncode == 0
        assert network.listeners(port) == ["0.0.0.0"], "the managed daemon got OLLAMA_HOST=0.0.0.0"
    finally:
        cli("ollama", "stop", env=fake_ollama_env)
    undone = cli("ollama", "expose", "--undo", env=fake_ollama_env)
    assert undone.returncode == 0 and config_host(dslocal_home) == f"127.0.0.1:{port}"
    try:
        assert cli("ollama", "start", env=fake_ollama_env).returncode == 0
        assert network.listeners(port) == ["127.0.0.1"]
    finally:
        cli("ollama", "stop", env=fake_ollama_env)
    again = cli("ollama", "expose", "--undo", env=fake_ollama_env)
    assert again.returncode == 0 and "had not exposed" in again.stderr


def test_expose_undo_removes_a_setting_that_was_not_there(cli, dslocal_home, fake_ollama_env):
    assert cli("ollama", "expose", "--lan", "--yes", env=fake_ollama_env).returncode == 0
    assert config_host(dslocal_home) == "0.0.0.0:11434"
    assert cli("ollama", "expose", "--undo", env=fake_ollama_env).returncode == 0
    assert config_host(dslocal_home) is None


def test_listener_table_parsing():
    table = ("  sl  local_address rem_address   st\n"
             "   0: 0100007F:2CA2 00000000:0000 0A 0\n"
             "   1: 00000000:1F90 00000000:0000 0A 0\n"
             "   2: 0100007F:2CA2 0100007F:D431 01 0\n")
    assert network.parse_listeners(table, 0x2CA2) == ["127.0.0.1"]
    assert network.parse_listeners(table, 8080) == ["0.0.0.0"]
    six = "  sl local\n   0: 00000000000000000000000001000000:2CA2 0000:0 0A 0\n"
    assert network.parse_listeners(six, 0x2CA2) == ["::1"]


def test_expose_says_when_the_systemd_service_keeps_the_old_address(cli, dslocal_home, fake_ollama_env, tmp_path):
    """The user unit carries OLLAMA_HOST from when it was written: expose (and undo) say to rewrite it."""
    env = {**fake_ollama_env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    unit = tmp_path / "xdg" / "systemd" / "user" / "dslocal-ollama.service"
    quiet = cli("ollama", "expose", "--lan", "--yes", env=env)
    assert quiet.returncode == 0 and "systemd user service" not in quiet.stderr
    assert cli("ollama", "expose", "--undo", env=env).returncode == 0
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nEnvironment=OLLAMA_HOST=127.0.0.1:11434\n")
    told = cli("ollama", "expose", "--lan", "--yes", env=env)
    assert told.returncode == 0 and "'dslocal ollama service install' rewrites it" in told.stderr
    undone = cli("ollama", "expose", "--undo", env=env)
    assert "'dslocal ollama service install' rewrites it" in undone.stderr
