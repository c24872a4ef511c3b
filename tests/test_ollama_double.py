"""The Ollama double's own surface: versions before v0.30, its counters, ``from`` re-creates, the
fake ``ollama`` executable. What any server must do is in ``tests/contract/`` (run against the
double by default, or a real ``ollama`` with DSLOCAL_OLLAMA_BIN)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gguf
import pytest
import requests
from ollama_double import (
    MT_MODEL,
    MT_PARAMS,
    MT_SYSTEM,
    MT_TEMPLATE,
    OllamaDouble,
    run_ollama,
)
from toolbox import free_port

from dslocal.testing.ggufgen import ModelSpec, write_model

pytest.importorskip("llama_cpp")

FAKE = Path(__file__).resolve().parent / "fake_ollama.py"
OLD = "0.29.3"
R1_TEMPLATE = (
    "{{- if .System }}{{ .System }}{{ end }}{{- range $i, $_ := .Messages }}"
    "{{- $last := eq (len (slice $.Messages $i)) 1}}{{- if eq .Role \"user\" }}<｜User｜>{{ .Content }}"
    "{{- else if eq .Role \"assistant\" }}<｜Assistant｜>{{- if and $.IsThinkSet (and $last .Thinking) -}}"
    "<think>{{ .Thinking }}</think>{{- end }}{{ .Content }}{{- if not $last }}<｜end▁of▁sentence｜>{{- end }}"
    "{{- end }}{{- if and $last (ne .Role \"assistant\") }}<｜Assistant｜>{{- if and $.IsThinkSet (not $.Think) -}}"
    "<think>\n\n</think>\n\n{{ end }}{{- end -}}{{- end -}}"
)
PLAIN_TEMPLATE = "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("ollama-models")
    spec = ModelSpec.deepseek2("mla")
    return {
        "single": write_model(root / "r1.gguf", spec, dtype="q8_0"),
        "shards": write_model(root / "r1s.gguf", spec, dtype="q8_0", shards=3),
        "other": write_model(root / "other.gguf", ModelSpec.qwen2(), dtype="f16"),
    }


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def upload(url: str, path: Path) -> str:
    digest = digest_of(path)
    with open(path, "rb") as handle:
        r = requests.post(f"{url}/api/blobs/{digest}", data=handle, timeout=30)
    assert r.status_code in (200, 201), r.text
    return digest


def create(url: str, body: dict) -> tuple[int, list[dict]]:
    r = requests.post(f"{url}/api/create", json=body, timeout=60)
    if r.headers.get("Content-Type", "").startswith("application/x-ndjson"):
        return r.status_code, [json.loads(line) for line in r.text.splitlines() if line]
    return r.status_code, [r.json()]


def import_files(url: str, name: str, paths: list[Path], **extra) -> list[dict]:
    files = {p.name: upload(url, p) for p in paths}
    status, lines = create(url, {"model": name, "files": files, **extra})
    assert status == 200 and lines[-1] == {"status": "success"}, lines
    return lines


def manifest(models_dir: Path, name: str, tag: str = "latest") -> dict:
    path = models_dir / "manifests" / "registry.ollama.ai" / "library" / name / tag
    return json.loads(path.read_text())


def layer(man: dict, media_type: str) -> dict:
    return next(x for x in man["layers"] if x["mediaType"] == media_type)


def blob_names(models_dir: Path) -> set[str]:
    return {p.name for p in (models_dir / "blobs").iterdir()}


# ---------------------------------------------------------------------------------------------


def test_root_version_and_unknown_routes(tmp_path):
    with run_ollama(tmp_path / "m", version="0.31.2") as o:
        r = requests.get(o.url + "/")
        assert (r.status_code, r.text) == (200, "Ollama is running")
        assert requests.head(o.url + "/").status_code == 200
        assert requests.get(o.url + "/api/version").json() == {"version": "0.31.2"}
        assert requests.head(o.url + "/api/version").status_code == 200
        r = requests.get(o.url + "/api/nothing")
        assert (r.status_code, r.text) == (404, "404 page not found")
        assert r.headers["Content-Type"].startswith("text/plain")
        assert requests.get(o.url + "/api/create").status_code == 404
        assert ("GET", "/api/version") in o.requests_log
        assert o.version_tuple == (0, 31, 2)


def test_create_before_030_uses_the_uploaded_blob(tmp_path, models):
    (path,) = models["single"]
    md = tmp_path / "m"
    with run_ollama(md, version=OLD) as o:
        lines = import_files(o.url, "r1", [path], template=PLAIN_TEMPLATE, system="Be brief.",
                             parameters={"num_ctx": 2048, "stop": ["<｜User｜>", "<｜Assistant｜>"]})
        statuses = [x["status"] for x in lines]
        assert statuses[0] == "parsing GGUF"
        assert "validating GGUF model" not in statuses
        assert statuses[-2:] == ["writing manifest", "success"]
        man = manifest(md, "r1")
        assert man["schemaVersion"] == 2
        assert man["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        assert man["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
        assert [x["mediaType"] for x in man["layers"]] == [MT_MODEL, MT_TEMPLATE, MT_SYSTEM, MT_PARAMS]
        model = layer(man, MT_MODEL)
        assert model["digest"] == digest_of(path) and model["size"] == path.stat().st_size
        assert f"using existing layer {model['digest']}" in statuses
        config = json.loads((md / "blobs" / man["config"]["digest"].replace(":", "-")).read_text())
        assert config["model_format"] == "gguf" and config["model_family"] == "deepseek2"
        assert config["file_type"] == "Q8_0"
        params = json.loads((md / "blobs" / layer(man, MT_PARAMS)["digest"].replace(":", "-")).read_text())
        assert params == {"num_ctx": 2048, "stop": ["<｜User｜>", "<｜Assistant｜>"]}
        referenced = {man["config"]["digest"], *(x["digest"] for x in man["layers"])}
        assert blob_names(md) == {d.replace(":", "-") for d in referenced}


def test_create_from_030_rewrites_into_a_second_blob_pruned_on_restart(tmp_path, models):
    (path,) = models["single"]
    md = tmp_path / "m"
    uploaded = digest_of(path)
    with run_ollama(md) as o:
        lines = import_files(o.url, "r1", [path])
        assert [x["status"] for x in lines[:2]] == ["parsing GGUF", "validating GGUF model"]
        model = layer(manifest(md, "r1"), MT_MODEL)
        assert model["digest"] != uploaded
        assert f"creating new layer {model['digest']}" in [x["status"] for x in lines]
        assert {"sha256-" + uploaded[7:], model["digest"].replace(":", "-")} <= blob_names(md)
        assert o.rewrites == 1
    rewritten = md / "blobs" / model["digest"].replace(":", "-")
    assert hashlib.sha256(rewritten.read_bytes()).hexdigest() == model["digest"][7:]
    # llama.cpp's own quantizer wrote it: the same tensors, none of the split keys.
    src, out = gguf.GGUFReader(path), gguf.GGUFReader(rewritten)
    assert sorted(t.name for t in out.tensors) == sorted(t.name for t in src.tensors)
    assert out.fields["general.quantization_version"].contents() == 2
    # An hour later, a start prunes the upload (noprune keeps it).
    old = time.time() - 7200
    os.utime(md / "blobs" / ("sha256-" + uploaded[7:]), (old, old))
    # noprune keeps the uploaded blob; a normal start prunes it.
    with run_ollama(md, noprune=True) as o:
        assert "sha256-" + uploaded[7:] in blob_names(md) and o.pruned == []
    with run_ollama(md) as o:
        assert o.pruned == ["sha256-" + uploaded[7:]]
        assert "sha256-" + uploaded[7:] not in blob_names(md)
        assert rewritten.exists()
        assert requests.post(o.url + "/api/show", json={"model": "r1"}).status_code == 200


def test_shards_merge_to_the_digest_of_the_single_file_import(tmp_path, models):
    with run_ollama(tmp_path / "a") as a:
        import_files(a.url, "r1", models["single"])
        single = layer(manifest(tmp_path / "a", "r1"), MT_MODEL)
    with run_ollama(tmp_path / "b") as b:
        lines = import_files(b.url, "r1", models["shards"])
        assert "validating GGUF model" in [x["status"] for x in lines]
        merged = layer(manifest(tmp_path / "b", "r1"), MT_MODEL)
        tags = requests.get(b.url + "/api/tags").json()["models"]
    assert merged == single
    assert gguf.GGUFReader(tmp_path / "b" / "blobs" / merged["digest"].replace(":", "-")).get_field("split.count") is None
    # Same template-less model, same config: the manifest digest matches too.
    with run_ollama(tmp_path / "a") as a:
        assert requests.get(a.url + "/api/tags").json()["models"][0]["digest"] == tags[0]["digest"]


def test_before_030_shards_are_refused(tmp_path, models):
    with run_ollama(tmp_path / "m", version=OLD) as o:
        files = {p.name: upload(o.url, p) for p in models["shards"]}
        status, lines = create(o.url, {"model": "r1", "files": files})
        assert status == 200
        assert lines[-1] == {"error": "sharded GGUF files are not supported by this version of Ollama"}
        assert requests.get(o.url + "/api/tags").json() == {"models": []}


def test_show_capabilities_and_from_recreate(tmp_path, models):
    (path,) = models["single"]
    md = tmp_path / "m"
    with run_ollama(md) as o:
        import_files(o.url, "r1", [path], template=R1_TEMPLATE, parameters={"num_ctx": 4096, "temperature": 0.6})
        import_files(o.url, "plain", [path], template=PLAIN_TEMPLATE)
        show = requests.post(o.url + "/api/show", json={"model": "r1"}).json()
        assert show["capabilities"] == ["completion", "thinking"]
        assert show["template"] == R1_TEMPLATE
        assert show["details"]["family"] == "deepseek2" and show["details"]["format"] == "gguf"
        assert show["details"]["quantization_level"] == "Q8_0"
        assert show["model_info"]["general.architecture"] == "deepseek2"
        assert show["model_info"]["deepseek2.block_count"] == 4
        assert show["model_info"]["general.quantization_version"] == 2
        assert show["model_info"]["tokenizer.ggml.tokens"] is None  # arrays only with verbose
        assert [line.split(None, 1) for line in show["parameters"].splitlines()] == [
            ["num_ctx", "4096"], ["temperature", "0.6"]]
        assert show["modelfile"].startswith('# Modelfile generated by "ollama show"')
        assert "PARAMETER num_ctx 4096" in show["modelfile"]
        assert requests.post(o.url + "/api/show", json={"model": "plain"}).json()["capabilities"] == ["completion"]
        r = requests.post(o.url + "/api/show", json={"model": "nope"})
        assert (r.status_code, r.json()) == (404, {"error": "model 'nope:latest' not found"})
        # `from` re-creates cheaply: same model layer, new system and parameters.
        before = manifest(md, "r1")
        blobs = len(blob_names(md))
        status, lines = create(o.url, {"model": "r1", "from": "r1", "system": "Think hard.",
                                       "parameters": {"num_ctx": 8192}})
        assert status == 200 and lines[-1] == {"status": "success"}
        assert not any("validating" in x.get("status", "") for x in lines)
        after = manifest(md, "r1")
        for kind in (MT_MODEL, MT_TEMPLATE):  # the same blobs, now "from" the source model (NewLayerFromLayer)
            assert layer(after, kind) == {**layer(before, kind), "from": "r1:latest"}
        show = requests.post(o.url + "/api/show", json={"model": "r1"}).json()
        # setParameters merges: the request's keys win, the base's others stay.
        assert show["system"] == "Think hard." and show["parameters"].split() == ["num_ctx", "8192", "temperature", "0.6"]
        # New system, params and config; the old params and config went with the old manifest.
        assert len(blob_names(md)) == blobs + 1
        status, lines = create(o.url, {"model": "x", "from": "missing"})
        assert lines[-1] == {"error": "pull model manifest: file does not exist"}


def test_chat_generates_with_llama_cpp_and_thinks(tmp_path, models):
    (path,) = models["single"]
    with run_ollama(tmp_path / "m") as o:
        import_files(o.url, "r1", [path], template=R1_TEMPLATE)
        import_files(o.url, "plain", [path], template=PLAIN_TEMPLATE)
        body = {"model": "r1", "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                "think": True, "options": {"num_predict": 6}}
        r = requests.post(o.url + "/api/chat", json=body, stream=True)
        assert r.status_code == 200 and r.headers["Content-Type"] == "application/x-ndjson"
        chunks = [json.loads(line) for line in r.iter_lines() if line]
        final = chunks[-1]
        assert final["done"] is True and final["done_reason"] in ("stop", "length")
        assert all(c["done"] is False and c["message"]["role"] == "assistant" for c in chunks[:-1])
        for key in ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                    "eval_count", "eval_duration"):
            assert isinstance(final[key], int) and final[key] > 0, key
        assert 1 <= final["eval_count"] <= 6
        assert final["prompt_eval_count"] > 5
        text = "".join(c["message"].get("thinking", "") + c["message"]["content"] for c in chunks)
        assert text  # the model said something
        assert all(c["model"] == "r1" and c["created_at"].endswith("Z") for c in chunks)
        # Greedy: the same request gives the same answer, here without streaming.
        again = requests.post(o.url + "/api/chat", json={**body, "stream": False}).json()
        assert again["done"] is True and again["eval_count"] == final["eval_count"]
        assert again["message"].get("thinking", "") + again["message"]["content"] == text
        # think on a model without the capability.
        r = requests.post(o.url + "/api/chat", json={**body, "model": "plain"})
        assert (r.status_code, r.json()) == (400, {"error": '"plain" does not support thinking'})
        r = requests.post(o.url + "/api/chat", json={**body, "model": "plain", "think": False, "stream": False})
        assert r.status_code == 200 and "thinking" not in r.json()["message"]
        r = requests.post(o.url + "/api/chat", json={**body, "model": "ghost"})
        assert (r.status_code, r.json()) == (404, {"error": "model 'ghost' not found"})
        # generate: empty prompt loads, keep_alive 0 unloads.
        loaded = {m["name"] for m in requests.get(o.url + "/api/ps").json()["models"]}
        assert loaded == {"r1:latest", "plain:latest"}
        r = requests.post(o.url + "/api/generate", json={"model": "plain", "keep_alive": 0}).json()
        assert r["done_reason"] == "unload" and r["response"] == ""
        r = requests.post(o.url + "/api/generate", json={"model": "plain", "prompt": "hi", "stream": False,
                                                         "options": {"num_predict": 3}}).json()
        assert r["done"] is True and r["eval_count"] <= 3 and isinstance(r["response"], str)
        ps = requests.get(o.url + "/api/ps").json()["models"]
        entry = next(m for m in ps if m["name"] == "plain:latest")
        assert entry["size_vram"] == 0 and entry["size"] > 0 and entry["details"]["family"] == "deepseek2"
        assert "expires_at" in entry and entry["context_length"] > 0
        r = requests.post(o.url + "/api/generate", json={"model": "r1", "keep_alive": 0}).json()
        assert r["done_reason"] == "unload"
        r = requests.post(o.url + "/api/generate", json={"model": "r1"}).json()
        assert r["done_reason"] == "load"


def test_think_splitting_of_streamed_text():
    from ollama_double import _ThinkSplitter

    def run(pieces: list[str], enabled: bool = True) -> tuple[str, str]:
        s = _ThinkSplitter(enabled)
        out = [s.feed(p) for p in pieces] + [s.flush()]
        return "".join(t for t, _ in out), "".join(c for _, c in out)

    assert run(["<think>\nabout ", "it</th", "ink>\n\nThe answer"]) == ("about it", "The answer")
    assert run(["no tag ", "here"]) == ("", "no tag here")  # output that does not open a block is content
    inside = _ThinkSplitter(True, inside=True)  # the prompt ended with the opening tag
    assert [inside.feed("\nreason"), inside.feed("</think> ok"), inside.flush()] == [("reason", ""), ("", "ok"), ("", "")]
    assert run(["<think>x</think>y"], enabled=False) == ("", "<think>x</think>y")


def test_tags_ps_delete_copy(tmp_path, models):
    md = tmp_path / "m"
    with run_ollama(md) as o:
        assert requests.get(o.url + "/api/tags").json() == {"models": []}
        assert requests.get(o.url + "/api/ps").json() == {"models": []}
        import_files(o.url, "r1:7b", models["single"])
        import_files(o.url, "qwen", models["other"])
        tags = requests.get(o.url + "/api/tags").json()["models"]
        assert {m["name"] for m in tags} == {"r1:7b", "qwen:latest"}
        r1 = next(m for m in tags if m["name"] == "r1:7b")
        assert r1["model"] == "r1:7b" and len(r1["digest"]) == 64
        path = md / "manifests" / "registry.ollama.ai" / "library" / "r1" / "7b"
        assert r1["digest"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert r1["details"]["family"] == "deepseek2" and r1["details"]["families"] == ["deepseek2"]
        assert r1["details"]["quantization_level"] == "Q8_0" and r1["details"]["parameter_size"]
        man = json.loads(path.read_text())
        assert r1["size"] == man["config"]["size"] + sum(x["size"] for x in man["layers"])
        qwen = next(m for m in tags if m["name"] == "qwen:latest")
        assert qwen["details"]["family"] == "qwen2" and qwen["details"]["quantization_level"] == "F16"
        # copy
        r = requests.post(o.url + "/api/copy", json={"source": "r1:7b", "destination": "r1-copy"})
        assert r.status_code == 200
        assert json.loads((path.parent.parent / "r1-copy" / "latest").read_text()) == man
        r = requests.post(o.url + "/api/copy", json={"source": "ghost", "destination": "x"})
        assert r.status_code == 404
        # load, then delete evicts and removes the manifest but not the blobs.
        requests.post(o.url + "/api/generate", json={"model": "r1:7b"})
        assert [m["name"] for m in requests.get(o.url + "/api/ps").json()["models"]] == ["r1:7b"]
        blobs = blob_names(md)
        r = requests.delete(o.url + "/api/delete", json={"model": "r1:7b"})
        assert r.status_code == 200
        assert requests.get(o.url + "/api/ps").json() == {"models": []}
        assert not path.exists() and blob_names(md) == blobs
        r = requests.delete(o.url + "/api/delete", json={"model": "r1:7b"})
        assert (r.status_code, r.json()) == (404, {"error": "model 'r1:7b' not found"})
        assert {m["name"] for m in requests.get(o.url + "/api/tags").json()["models"]} == {"r1-copy:latest", "qwen:latest"}


def test_canonical_file_reimported_adds_no_blob(tmp_path, models):
    with run_ollama(tmp_path / "a") as a:
        import_files(a.url, "r1", models["single"])
        digest = layer(manifest(tmp_path / "a", "r1"), MT_MODEL)["digest"]
    canonical = tmp_path / "canonical.gguf"
    shutil.copyfile(tmp_path / "a" / "blobs" / digest.replace(":", "-"), canonical)
    with run_ollama(tmp_path / "b") as b:
        lines = import_files(b.url, "again", [canonical])
        assert f"using existing layer {digest}" in [x["status"] for x in lines]
        assert layer(manifest(tmp_path / "b", "again"), MT_MODEL)["digest"] == digest
        models_like = [p for p in (tmp_path / "b" / "blobs").iterdir() if p.read_bytes()[:4] == b"GGUF"]
        assert [p.name for p in models_like] == [digest.replace(":", "-")]
        # Re-importing into the same store changes nothing either.
        before = blob_names(tmp_path / "b")
        import_files(b.url, "again", [canonical])
        assert blob_names(tmp_path / "b") == before




def test_fake_ollama_version_and_serve(tmp_path):
    env = {**os.environ, "FAKE_OLLAMA_VERSION": "0.29.1"}
    out = subprocess.run([sys.executable, str(FAKE), "--version"], check=False, capture_output=True, text=True, env=env, timeout=30)
    assert (out.returncode, out.stdout) == (0, "ollama version is 0.29.1\n")
    out = subprocess.run([sys.executable, str(FAKE), "--version"], check=False, capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k != "FAKE_OLLAMA_VERSION"})
    assert out.stdout == "ollama version is 0.32.15\n"

    port = free_port()
    env = {**os.environ, "OLLAMA_HOST": f"http://127.0.0.1:{port}", "OLLAMA_MODELS": str(tmp_path / "models")}
    env.pop("FAKE_OLLAMA_VERSION", None)
    proc = subprocess.Popen([sys.executable, str(FAKE), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert r.text == "Ollama is running"
        assert requests.get(f"http://127.0.0.1:{port}/api/version").json() == {"version": "0.32.15"}
        assert (tmp_path / "models" / "blobs").is_dir()
        # A second server on the same port fails like Go's listener.
        taken = subprocess.run([sys.executable, str(FAKE), "serve"], check=False, env={**env, "OLLAMA_HOST": f"127.0.0.1:{port}"},
                               capture_output=True, text=True, timeout=30)
        assert taken.returncode == 1
        assert f"Error: listen tcp 127.0.0.1:{port}: bind: address already in use" in taken.stderr
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert f"Listening on 127.0.0.1:{port} (version 0.32.15)" in stderr


def test_fake_ollama_host_parsing():
    from fake_ollama import parse_host

    assert parse_host(None) == ("127.0.0.1", 11434)
    assert parse_host("0.0.0.0") == ("0.0.0.0", 11434)
    assert parse_host("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert parse_host("http://localhost:8080") == ("localhost", 8080)
    assert parse_host("http://example") == ("example", 80)
    assert parse_host("https://example") == ("example", 443)
    assert parse_host("[::1]:9000") == ("::1", 9000)


def test_prune_happens_at_start_not_at_construction(tmp_path):
    md = tmp_path / "m"
    (md / "blobs").mkdir(parents=True)
    stray = md / "blobs" / ("sha256-" + "1" * 64)
    stray.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(stray, (old, old))
    double = OllamaDouble(md)
    assert stray.exists()
    double.start()
    try:
        assert not stray.exists() and double.pruned == [stray.name]
    finally:
        double.stop()
