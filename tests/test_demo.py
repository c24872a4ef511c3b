"""``dslocal demo``: the whole pipeline on a tiny generated model, offline, with and without Ollama."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from conftest import run_cli
from toolbox import free_port

from dslocal.demo import (
    DEMO_TEMPLATE,
    HONEST,
    DemoOptions,
    DemoStepError,
    run_demo,
    with_template,
)
from dslocal.ollama.daemon import COMMON_LOCATIONS

FAKE = Path(__file__).parent / "fake_ollama.py"
EMBEDDED_STEPS = ["model", "publish", "download", "verify", "merge", "modelfile", "engine", "chat", "cleanup"]
OLLAMA_STEPS = ["model", "publish", "plan", "download", "verify", "merge", "create", "engine", "chat", "cleanup"]
DEAD_PROXY = "http://127.0.0.1:9"  # anything that is not loopback would go here, and fail




def path_without_ollama() -> str:
    return os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and not (Path(d) / "ollama").exists())


@pytest.fixture
def offline_env(tmp_path):
    """No Ollama on PATH or at OLLAMA_HOST, an isolated home and TMPDIR, and no way off the machine."""
    installed = [p for p in COMMON_LOCATIONS if Path(p).expanduser().is_file()]
    if installed:
        pytest.skip(f"an Ollama is installed at {installed[0]}: the demo would use it")
    (tmp_path / "tmp").mkdir()
    env = {
        "PATH": path_without_ollama(), "DSLOCAL_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "tmp"),
        "OLLAMA_HOST": f"127.0.0.1:{free_port()}", "OLLAMA_MODELS": str(tmp_path / "user-ollama"),
        "HF_HUB_OFFLINE": "1", "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "ALL_PROXY": DEAD_PROXY,
        "http_proxy": DEAD_PROXY, "https_proxy": DEAD_PROXY, "NO_PROXY": "", "no_proxy": "",
        "DSLOCAL_SOURCE": "hf", "DSLOCAL_HF_ENDPOINT": "https://huggingface.co", "COLUMNS": "200",
    }
    env["_tmp"] = str(tmp_path)
    return env


def demo(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli("demo", *args, env={k: v for k, v in env.items() if not k.startswith("_")}, timeout=60)
    return result, time.monotonic() - started


def assert_nothing_left(env: dict[str, str]) -> None:
    tmp = Path(env["_tmp"])
    assert list((tmp / "tmp").iterdir()) == [], "the temporary folder is removed"
    assert not (tmp / "home" / "config").exists(), "the config file is never written"
    assert not (tmp / "user-ollama").exists(), "the user's Ollama store is not touched"


def test_the_demo_runs_offline_with_the_embedded_engine(offline_env):
    pytest.importorskip("xllamacpp")
    result, seconds = demo(offline_env)
    assert result.returncode == 0, result.stderr
    assert seconds < 60
    for key in EMBEDDED_STEPS:
        assert f"  ok  {key} " in result.stderr, key
    assert HONEST in result.stderr
    assert "  thinking: Hm.\n" in result.stdout and "  answer:   OK!\n" in result.stdout
    assert "FROM " in result.stderr and "PARAMETER num_ctx" in result.stderr, "the Modelfile is shown"
    assert "engine: llama.cpp's own server from xllamacpp, as no Ollama was found" in result.stdout
    for key in EMBEDDED_STEPS:
        assert any(line.split()[:1] == [key] for line in result.stdout.splitlines()), f"{key} in the summary"
    assert "This installation works" in result.stdout
    assert_nothing_left(offline_env)


def test_json_has_every_step_with_its_time_and_keep_keeps_the_files(offline_env):
    pytest.importorskip("xllamacpp")
    kept = Path(offline_env["_tmp"]) / "kept"
    result, _ = demo(offline_env, "--json", "--keep", str(kept))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "demo"
    data = document["data"]
    assert data["ok"] and data["engine"] == "embedded" and data["kept"]
    assert [s["key"] for s in data["steps"]] == EMBEDDED_STEPS
    assert all(isinstance(s["seconds"], float) and s["seconds"] >= 0 and s["detail"] for s in data["steps"])
    assert data["total_seconds"] >= sum(s["seconds"] for s in data["steps"]) - 0.01
    assert (data["thinking"], data["answer"]) == ("Hm.", "OK!")
    assert data["hub_url"].startswith("http://127.0.0.") and data["repo"] == "hf:dslocal/DeepSeek-Demo-GGUF:Q8_0"
    model = Path(data["model"])
    assert model.is_file() and model.parent.parent == kept
    modelfile = Path(data["modelfile_path"])
    assert modelfile.read_text(encoding="utf-8") == data["modelfile"]
    assert f"FROM {model}\n" in data["modelfile"]
    assert not list((kept / "downloads").rglob("*.gguf")), "the merge consumed the shards"
    assert "  ok  chat " in result.stderr, "the steps still show on stderr"


def ollama_wrapper(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "ollama"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def test_with_a_running_ollama_the_model_goes_through_pull_and_is_removed(offline_env, tmp_path):
    pytest.importorskip("llama_cpp")  # the Ollama double generates with llama.cpp
    bin_dir = ollama_wrapper(tmp_path)
    store = tmp_path / "ollama-store"
    env = {**offline_env, "PATH": f"{bin_dir}{os.pathsep}{offline_env['PATH']}", "OLLAMA_MODELS": str(store)}
    server_env = {**os.environ, "OLLAMA_HOST": env["OLLAMA_HOST"], "OLLAMA_MODELS": str(store)}
    server = subprocess.Popen([str(bin_dir / "ollama"), "serve"], env=server_env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://{env['OLLAMA_HOST']}"
    direct = requests.Session()
    direct.trust_env = False
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                direct.get(url + "/api/version", timeout=1)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "the Ollama double did not start"
                time.sleep(0.1)
        result, seconds = demo(env, "--json")
        assert result.returncode == 0, result.stderr
        assert seconds < 60
        data = json.loads(result.stdout)["data"]
        assert data["engine"] == "ollama" and data["model"] == "dslocal-demo:latest"
        assert data["engine_reason"].startswith("Ollama 0.32.15")
        assert [s["key"] for s in data["steps"]] == OLLAMA_STEPS
        assert (data["thinking"], data["answer"]) == ("Hm.", "OK!")
        assert "FROM " in data["modelfile"] and "TEMPLATE" in data["modelfile"]
        assert "removed from Ollama" in data["steps"][-1]["detail"]
        assert direct.get(url + "/api/tags", timeout=5).json()["models"] == [], "the demo model is gone"
        assert list((store / "blobs").iterdir()) == [], "and so are its blobs"
        assert not (store / "dslocal-work").exists()
    finally:
        server.terminate()
        server.wait(10)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_an_installed_ollama_that_is_not_running_is_started_privately_and_stopped(offline_env, tmp_path):
    pytest.importorskip("llama_cpp")
    bin_dir = ollama_wrapper(tmp_path)
    env = {**offline_env, "PATH": f"{bin_dir}{os.pathsep}{offline_env['PATH']}"}
    result, seconds = demo(env)
    assert result.returncode == 0, result.stderr
    assert seconds < 60
    for key in ["ollama", *OLLAMA_STEPS]:
        assert f"  ok  {key} " in result.stderr, key
    assert "  thinking: Hm.\n" in result.stdout and "  answer:   OK!\n" in result.stdout
    assert "a private Ollama server started from" in result.stdout
    line = next(line for line in result.stderr.splitlines() if line.startswith("  ok  ollama "))
    pid = int(line.split("(pid ")[1].split(")")[0])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # stopped (and reaped)
        time.sleep(0.1)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert_nothing_left(env)  # its store was in the demo's folder, never the user's OLLAMA_MODELS


def test_without_an_engine_the_error_names_the_step_and_the_install(monkeypatch, tmp_path, dslocal_home):
    from dslocal.config import load_settings
    from dslocal.engines import embedded
    from dslocal.ollama import daemon

    monkeypatch.setattr(embedded, "available", lambda: False)
    monkeypatch.setattr(daemon, "find_binary", lambda files: None)
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(DemoStepError) as caught:
        run_demo(load_settings(), DemoOptions())
    assert caught.value.step == "engine"
    assert "the demo failed at step 'engine'" in caught.value.message and "xllamacpp" in caught.value.message
    assert "pip install 'dslocal[embedded]'" in (caught.value.hint or "")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("dslocal-demo-")], "no folder left behind"


def test_a_kept_folder_must_be_new_or_empty(tmp_path, dslocal_home):
    from dslocal.config import load_settings
    from dslocal.errors import InputError

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        run_demo(load_settings(), DemoOptions(keep=tmp_path / "full"))
    assert (tmp_path / "full" / "x").read_text() == "mine"


def test_the_demo_template_replaces_the_models_own_and_keeps_every_tensor(tmp_path):
    from dslocal.gguf_tools.header import read_file_header
    from dslocal.testing.ggufgen import write_scripted_model

    source = write_scripted_model(tmp_path / "m.gguf", arch="deepseek2", dtype="q8_0")
    target = with_template(source, tmp_path / "t.gguf", DEMO_TEMPLATE)
    before, after = read_file_header(source), read_file_header(target)
    assert after.get("tokenizer.chat_template") == DEMO_TEMPLATE
    assert [k for k in after.kv] == [k for k in before.kv]
    assert {k: e.value for k, e in after.kv.items() if k != "tokenizer.chat_template"} == \
        {k: e.value for k, e in before.kv.items() if k != "tokenizer.chat_template"}
    old, new = source.read_bytes(), target.read_bytes()
    for a, b in zip(before.tensors, after.tensors):
        assert (a.name, a.shape, a.ggml_type) == (b.name, b.shape, b.ggml_type)
        assert old[before.data_offset + a.offset:][:a.n_bytes] == new[after.data_offset + b.offset:][:b.n_bytes]
