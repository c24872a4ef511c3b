"""The llama.cpp engines with real inference (xllamacpp's llama.cpp): a split set and its merged file give
the same greedy tokens, the plan's expert placement reaches llama.cpp's loader, and 'dslocal serve'
streams reasoning to an OpenAI client, closed to other origins and keyed beyond loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from contract.api import with_chat_template
from llama_server import THINKING_TEMPLATE

from dslocal.engines.embedded import EmbeddedServer, for_chat
from dslocal.engines.embedded_child import cpu_moe_overrides
from dslocal.engines.executable import free_port
from dslocal.engines.launch import Launch, from_plan
from dslocal.gguf_tools.merge import merge_shards
from dslocal.testing.ggufgen import ModelSpec, write_model, write_scripted_model

pytest.importorskip("xllamacpp")


def greedy_tokens(server: EmbeddedServer, prompt: str = "<｜User｜>Tell me<｜Assistant｜>", n: int = 24) -> list[int]:
    body = {"prompt": prompt, "n_predict": n, "temperature": 0, "top_k": 1, "return_tokens": True, "stream": False,
            "cache_prompt": False}
    response = requests.post(server.base_url + "/completion", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {server.launch.api_key}"})
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


@pytest.mark.parametrize("spec", [ModelSpec.deepseek2("mla"), ModelSpec.qwen2()], ids=["deepseek2", "qwen2"])
def test_a_split_set_and_its_merged_file_generate_the_same_tokens(tmp_path, spec):
    shards = write_model(tmp_path / "m.gguf", spec, dtype="q8_0", shards=3)
    merged = tmp_path / "merged.gguf"
    merge_shards(shards[0], merged)
    runs = []
    for model in (shards[0], merged):
        with for_chat(Launch(model=model, alias="m", n_ctx=512, threads=2), tmp_path / "engine.log").start() as server:
            runs.append(greedy_tokens(server))
    assert len(runs[0]) == 24 and runs[0] == runs[1]


def test_the_plans_expert_placement_reaches_llamas_loader(tmp_path):
    model = write_model(tmp_path / "moe.gguf", ModelSpec.deepseek2("mla"), dtype="q8_0")[0]
    log = tmp_path / "engine.log"
    launch = Launch(model=model, alias="moe", n_ctx=512, threads=2, verbose=True,
                    override_tensors=(r"blk\.([2-3])\.ffn_.*_exps\.=CPU",))
    with for_chat(launch, log).start() as server:
        assert greedy_tokens(server, n=4)
    text = log.read_text(errors="replace")
    overridden = {line.split()[3] for line in text.splitlines() if "buffer type overridden to CPU" in line}
    assert overridden == {f"blk.{i}.ffn_{k}_exps.weight" for i in (2, 3) for k in ("down", "gate", "up")}


def test_n_cpu_moe_is_llamas_own_pattern():
    (first, second) = cpu_moe_overrides(2)
    assert first == r"blk\.0\.ffn_(up|down|gate|gate_up)_(ch|)exps=CPU" and second.startswith(r"blk\.1\.")


def test_from_plan_carries_the_plan(tmp_path):
    from dslocal.hardware.presets import load_profile
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan
    from dslocal.catalog import load_catalog

    variant = load_catalog().get("r1-671b-ud-iq1_s")
    p = plan(from_variant(variant), load_profile("rtx4090-128gb"), engine="llama.cpp", variant=variant.id)
    launch = from_plan(p, tmp_path / "r1.gguf", "r1")
    assert launch.n_ctx == p.num_ctx and launch.n_gpu_layers == p.gpu_layers and launch.threads == p.num_thread
    assert launch.override_tensors == (p.override_tensors,) and "exps" in p.override_tensors
    args = launch.args()
    assert args[args.index("--override-tensor") + 1] == p.override_tensors
    assert "--api-key" not in args


# -- dslocal serve
@pytest.fixture(scope="module")
def thinking_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    scripted = write_scripted_model(root / "scripted.gguf", arch="deepseek2", dtype="q8_0")
    return with_chat_template(scripted, root / "r1-demo.gguf", THINKING_TEMPLATE)


def serve(tmp_path: Path, model: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DSLOCAL_", "OLLAMA_"))}
    full.update({"DSLOCAL_HOME": str(tmp_path / "home"), **(env or {})})
    proc = subprocess.Popen([sys.executable, "-m", "dslocal", "serve", str(model), "--engine", "embedded",
                             "--port", str(port), *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    line = proc.stdout.readline()  # "serving ... at URL" once it answers; "" if it exits first
    if line:
        proc.first_line = line  # type: ignore[attr-defined]
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    return proc, port


def stop(proc: subprocess.Popen) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, getattr(proc, "first_line", "") + out, err


def test_an_openai_client_streams_reasoning_from_dslocal_serve(tmp_path, thinking_model):
    openai = pytest.importorskip("openai")
    proc, port = serve(tmp_path, thinking_model)
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["r1-demo"]
        reasoning, content = "", ""
        for chunk in client.chat.completions.create(model="r1-demo", stream=True,
                                                    messages=[{"role": "user", "content": "Why is the sky blue?"}]):
            if chunk.choices:
                delta = chunk.choices[0].delta
                reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
                content += delta.content or ""
        assert (reasoning, content) == ("Hm.", "OK!")
        preflight = requests.options(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5,
                                     headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert preflight.headers.get("Access-Control-Allow-Origin", "") in ("", None), "CORS is closed by default"
    finally:
        code, out, _ = stop(proc)
    assert "serving r1-demo at http://127.0.0.1:" in out and code == 0


def test_serve_refuses_a_network_bind_without_a_key_and_requires_the_key_given(tmp_path, thinking_model):
    proc, _ = serve(tmp_path, thinking_model, "--host", "0.0.0.0")
    assert proc.wait(30) == 2, "refused before anything listens"
    err = proc.stderr.read()
    assert err.startswith("dslocal: error: serving on 0.0.0.0 would let anyone on the network use the model")
    assert "hint: give --api-key KEY" in err
    proc, port = serve(tmp_path, thinking_model, "--host", "0.0.0.0", env={"DSLOCAL_SERVE_API_KEY": "s3cret-key"})
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        body = {"model": "r1-demo", "messages": [{"role": "user", "content": "hi"}]}
        assert requests.post(url, json=body, timeout=30).status_code == 401
        ok = requests.post(url, json=body, timeout=30, headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "OK!"
    finally:
        code, out, err = stop(proc)
    assert "s3cret" not in out + err, "the key is never printed"
    assert "API key required" in out


def test_serve_a_cors_origin_when_asked(tmp_path, thinking_model):
    proc, port = serve(tmp_path, thinking_model, "--cors-origin", "http://webui.example")
    try:
        answer = requests.options(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=5,
                                  headers={"Origin": "http://webui.example", "Access-Control-Request-Method": "POST"})
        assert answer.headers.get("Access-Control-Allow-Origin") == "http://webui.example"
    finally:
        stop(proc)


def test_ask_through_the_embedded_engine(tmp_path, thinking_model):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DSLOCAL_", "OLLAMA_"))}
    env.update({"DSLOCAL_HOME": str(tmp_path / "home"), "OLLAMA_HOST": "127.0.0.1:9"})
    result = subprocess.run([sys.executable, "-m", "dslocal", "ask", str(thinking_model), "Why?", "--backend",
                             "embedded", "--json"], env=env, capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert (data["answer"], data["thinking"], data["backend"]) == ("OK!", "Hm.", "embedded")


def test_a_crash_in_llama_cpp_is_one_clear_error(tmp_path):
    """This xllamacpp build dies of SIGFPE creating a DeepSeek-V4 cache (tests/test_ggufgen_new_archs.py pins
    it): the child's death is an error naming the crash and the way out, and nothing is left running."""
    from dslocal.engines.process import EngineError

    model = write_model(tmp_path / "v4.gguf", ModelSpec.deepseek4(), dtype="q8_0")[0]
    server = for_chat(Launch(model=model, alias="v4", n_ctx=512, threads=1), tmp_path / "engine.log")
    with pytest.raises(EngineError) as caught:
        server.start(timeout=60)
    assert "llama.cpp crashed (SIGFPE) loading v4.gguf" in caught.value.message
    assert "--engine llama-server" in caught.value.hint
    assert not server.alive()


def test_the_llama_server_engine_runs_the_executable_with_the_plan(tmp_path):
    """A llama-server stand-in (tests/llama_server_standin.py: llama.cpp b11549's argument rules, /health)
    found on PATH: the plan's arguments are what llama.cpp would accept, the key and CORS go by environment."""
    from dslocal.engines.executable import ExecutableServer, find_server
    from dslocal.hardware.presets import load_profile
    from dslocal.planner.facts import from_variant
    from dslocal.planner.fit import plan
    from dslocal.catalog import load_catalog

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llama-server").symlink_to(Path(__file__).parent / "llama_server_standin.py")
    record = tmp_path / "record.json"
    variant = load_catalog().get("r1-671b-ud-iq1_s")
    p = plan(from_variant(variant), load_profile("rtx4090-128gb"), engine="llama.cpp", variant=variant.id)
    model = tmp_path / "DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf"
    model.write_bytes(b"GGUF")
    launch = from_plan(p, model, "r1", port=free_port(), api_key="k-secret")
    path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{path}"
    os.environ["LLAMA_STANDIN_RECORD"] = str(record)
    try:
        binary = find_server(None)
        assert binary == bin_dir / "llama-server"
        with ExecutableServer(binary, launch, tmp_path / "llama-server.log").start(timeout=30) as server:
            assert requests.get(server.base_url + "/health", timeout=5).status_code == 200
            assert requests.get(server.base_url + "/v1/models", timeout=5).status_code == 401, "the key is required"
    finally:
        os.environ["PATH"] = path
        del os.environ["LLAMA_STANDIN_RECORD"]
    got = json.loads(record.read_text())
    values = got["values"]
    assert values["--model"] == str(model) and values["--ctx-size"] == str(p.num_ctx)
    assert values["--gpu-layers"] == str(p.gpu_layers) and values["--override-tensor"] == p.override_tensors
    assert values["--cors-origins"] == "", "CORS closed (llama-server's default is every origin)"
    assert got["api_keys"] == ["k-secret"] and "k-secret" not in " ".join(launch.args())


def test_an_ollama_bundle_has_a_llama_server(tmp_path):
    from dslocal.engines.executable import bundle_server, find_server

    (tmp_path / "bin").mkdir()
    (tmp_path / "lib" / "ollama").mkdir(parents=True)
    ollama = tmp_path / "bin" / "ollama"
    ollama.write_text("#!/bin/sh\n")
    server = tmp_path / "lib" / "ollama" / "llama-server"
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    assert bundle_server(ollama) == server
    path = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path / "empty")
    try:
        assert find_server(None, [ollama]) == server
    finally:
        os.environ["PATH"] = path
