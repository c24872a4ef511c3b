"""The Ollama double behaves as the reference notes say a real server does (tests of the double itself)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
import requests
from ollama_double import (
    MT_MODEL,
    MT_PARAMS,
    MT_SYSTEM,
    MT_TEMPLATE,
    OllamaDouble,
    canonical_gguf,
    run_ollama,
)

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


def test_blob_head_post_exists_and_mismatch(tmp_path, models):
    (path,) = models["single"]
    digest = digest_of(path)
    with run_ollama(tmp_path / "m") as o:
        for bad in ("sha256:abc", "md5:" + "0" * 64, "sha256_" + "0" * 64):
            r = requests.head(f"{o.url}/api/blobs/{bad}")
            assert r.status_code == 400
            r = requests.post(f"{o.url}/api/blobs/{bad}", data=b"x")
            assert (r.status_code, r.json()) == (400, {"error": "invalid digest format"})
        assert requests.head(f"{o.url}/api/blobs/{digest}").status_code == 404
        r = requests.post(f"{o.url}/api/blobs/{digest}", data=path.read_bytes())
        assert r.status_code == 201
        assert (tmp_path / "m" / "blobs" / ("sha256-" + digest[7:])).read_bytes() == path.read_bytes()
        assert requests.head(f"{o.url}/api/blobs/{digest}").status_code == 200
        assert requests.head(f"{o.url}/api/blobs/sha256-{digest[7:]}").status_code == 200
        read = o.blob_bytes_read
        # Present: 200 and the body is not read (so a wrong body is not even noticed).
        r = requests.post(f"{o.url}/api/blobs/{digest}", data=b"not the model at all" * 1000)
        assert r.status_code == 200
        assert (o.blob_bytes_read, o.blob_exists, o.blob_uploads) == (read, 1, 1)
        # Mismatch: 400 with Ollama's message, nothing kept.
        wrong = "sha256:" + "0" * 64
        r = requests.post(f"{o.url}/api/blobs/{wrong}", data=b"hello")
        got = "sha256:" + hashlib.sha256(b"hello").hexdigest()
        assert r.status_code == 400
        assert r.json() == {"error": f'digest mismatch, expected "{wrong}", got "{got}"'}
        assert blob_names(tmp_path / "m") == {"sha256-" + digest[7:]}
        # A chunked body (no Content-Length), as httpx-based clients send it.
        data = os.urandom(3 << 20)
        chunked = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.post(f"{o.url}/api/blobs/{chunked}", data=(data[i : i + 700_000] for i in range(0, len(data), 700_000)))
        assert r.status_code == 201
        assert requests.head(f"{o.url}/api/blobs/{chunked}").status_code == 200
        # The connection still serves requests after all that.
        assert requests.get(o.url + "/api/version").status_code == 200


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
        assert [x["mediaType"] for x in man["layers"]] == [MT_MODEL, MT_TEMPLATE, MT_PARAMS, MT_SYSTEM]
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
    # The rewrite: split/metadata as llama-quantize COPY, load order, same tensor bytes.
    src, out = gguf.GGUFReader(path), gguf.GGUFReader(rewritten)
    src_keys = [k for k in src.fields if not k.startswith("GGUF.")]
    out_keys = [k for k in out.fields if not k.startswith("GGUF.")]
    assert out_keys == [k for k in src_keys if k != "general.file_type"] + ["general.file_type"]
    assert out.fields["general.quantization_version"].contents() == 2
    assert out.fields["general.file_type"].contents() == src.fields["general.file_type"].contents()
    names = [t.name for t in out.tensors]
    assert names[:3] == ["output.weight", "output_norm.weight", "token_embd.weight"]
    blocks = [n for n in names if n.startswith("blk.")]
    assert blocks == sorted(blocks, key=lambda n: (int(n.split(".")[1]), n))
    assert sorted(names) == sorted(t.name for t in src.tensors)
    by_name = {t.name: t for t in src.tensors}
    for t in out.tensors:
        assert t.data_offset % 32 == 0
        assert bytes(t.data.tobytes()) == bytes(by_name[t.name].data.tobytes())
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


def test_shard_errors(tmp_path, models):
    s1, s2, s3 = models["shards"]
    with run_ollama(tmp_path / "m") as o:
        d1, d2, d3 = (upload(o.url, p) for p in (s1, s2, s3))
        stem = s1.name[: -len("-00001-of-00003.gguf")]

        def error(files: dict[str, str]) -> str:
            status, lines = create(o.url, {"model": "bad", "files": files})
            assert status == 200 and "error" in lines[-1], lines
            return lines[-1]["error"]

        assert error({s1.name: d1, s2.name: d2}).endswith("has 2 shards, expected 3")
        assert error({s1.name: d1}).endswith("has 1 shards, expected 3")
        assert error({s1.name: d1, "middle.gguf": d2, s3.name: d3}).endswith(
            "must use llama.cpp split filename pattern")
        assert error({f"{stem}-00001-of-00004.gguf": d1, s2.name: d2, s3.name: d3}).endswith(
            "filename count 4 does not match metadata count 3")
        assert error({s1.name: d1, s2.name: d1, s3.name: d3}).endswith("missing shard 2")
        not_gguf = tmp_path / "notes.txt"
        not_gguf.write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
        assert error({"r1.gguf": upload(o.url, not_gguf)}) == "invalid file magic"
        # Without streaming the error comes back as one object with a 4xx status.
        status, (body,) = create(o.url, {"model": "bad", "files": {s1.name: d1}, "stream": False})
        assert status == 400 and body["error"].endswith("has 1 shards, expected 3")
        assert not (tmp_path / "m" / "manifests" / "registry.ollama.ai" / "library" / "bad").exists()
        # Shards listed in any order merge fine.
        status, lines = create(o.url, {"model": "ok", "files": {s3.name: d3, s1.name: d1, s2.name: d2}, "stream": False})
        assert (status, lines) == (200, [{"status": "success"}])


def test_before_030_shards_are_refused(tmp_path, models):
    with run_ollama(tmp_path / "m", version=OLD) as o:
        files = {p.name: upload(o.url, p) for p in models["shards"]}
        status, lines = create(o.url, {"model": "r1", "files": files})
        assert status == 200
        assert lines[-1] == {"error": "sharded GGUF files are not supported by this version of Ollama"}
        assert requests.get(o.url + "/api/tags").json() == {"models": []}


def test_create_request_errors_are_400_before_streaming(tmp_path, models):
    (path,) = models["single"]
    with run_ollama(tmp_path / "m") as o:
        digest = upload(o.url, path)
        cases = [
            ({"model": "r1", "modelfile": f"FROM {path}"}, "neither 'from' or 'files' was specified"),
            ({"model": "r1"}, "neither 'from' or 'files' was specified"),
            ({"model": "r1", "files": {"/abs/r1.gguf": digest}}, "file path must be relative"),
            ({"model": "r1", "files": {"../r1.gguf": digest}}, "file path must be relative"),
            ({"model": "r1", "files": {"r1.gguf": ""}}, "missing digest"),
            ({"model": "r1", "files": {"r1.gguf": "sha256:12"}}, "invalid digest format"),
            ({"model": "r1", "files": {"r1.gguf": "sha256:" + "ab" * 32}}, f"blob sha256:{'ab' * 32} not found"),
            ({"model": "bad name!", "files": {"r1.gguf": digest}}, "invalid model name"),
        ]
        for body, message in cases:
            r = requests.post(o.url + "/api/create", json=body)
            assert (r.status_code, r.json()) == (400, {"error": message}), body
        r = requests.post(o.url + "/api/create", data=b"")
        assert r.status_code == 400


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
        assert "tokenizer.ggml.tokens" not in show["model_info"]
        assert [line.split(None, 1) for line in show["parameters"].splitlines()] == [
            ["num_ctx", "4096"], ["temperature", "0.6"]]
        assert show["modelfile"].startswith('# Modelfile generated by "ollama show"')
        assert "PARAMETER num_ctx 4096" in show["modelfile"]
        assert requests.post(o.url + "/api/show", json={"model": "plain"}).json()["capabilities"] == ["completion"]
        r = requests.post(o.url + "/api/show", json={"model": "nope"})
        assert (r.status_code, r.json()) == (404, {"error": "model 'nope' not found"})
        # `from` re-creates cheaply: same model layer, new system and parameters.
        before = manifest(md, "r1")
        blobs = len(blob_names(md))
        status, lines = create(o.url, {"model": "r1", "from": "r1", "system": "Think hard.",
                                       "parameters": {"num_ctx": 8192}})
        assert status == 200 and lines[-1] == {"status": "success"}
        assert not any("validating" in x.get("status", "") for x in lines)
        after = manifest(md, "r1")
        assert layer(after, MT_MODEL) == layer(before, MT_MODEL)
        assert layer(after, MT_TEMPLATE) == layer(before, MT_TEMPLATE)
        show = requests.post(o.url + "/api/show", json={"model": "r1"}).json()
        assert show["system"] == "Think hard." and show["parameters"].split() == ["num_ctx", "8192"]
        assert len(blob_names(md)) == blobs + 3  # system, params, config
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
        assert (r.status_code, r.json()) == (404, {"error": 'model "ghost" not found, try pulling it first'})
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
    assert run(["no tag ", "here"]) == ("no tag here", "")
    assert run(["reason</think>", "ok"]) == ("reason", "ok")
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


def test_canonical_writer_orders_and_moves_keys(tmp_path):
    """A hand-made GGUF without quantization_version, tensors in a scrambled order."""
    src = tmp_path / "scrambled.gguf"
    writer = gguf.GGUFWriter(src, "llama")
    writer.add_file_type(1)
    writer.add_uint32("llama.block_count", 11)
    names = ["blk.10.b.weight", "rope_freqs.weight", "blk.2.b.weight", "token_embd.weight", "blk.2.a.weight",
             "output.weight", "aux.weight", "output_norm.weight"]
    for i, name in enumerate(names):
        writer.add_tensor(name, np.full((3 + i,), i, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    def rewrite(path: Path) -> bytes:
        out, hasher = io.BytesIO(), hashlib.sha256()
        canonical_gguf([path], out, hasher)
        assert hasher.hexdigest() == hashlib.sha256(out.getvalue()).hexdigest()
        return out.getvalue()

    data = rewrite(src)
    dst = tmp_path / "canonical.gguf"
    dst.write_bytes(data)
    reader = gguf.GGUFReader(dst)
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert keys == ["general.architecture", "llama.block_count", "general.quantization_version", "general.file_type"]
    assert [t.name for t in reader.tensors] == [
        "output.weight", "output_norm.weight", "token_embd.weight", "blk.2.a.weight", "blk.2.b.weight",
        "blk.10.b.weight", "aux.weight", "rope_freqs.weight"]
    for t in reader.tensors:
        assert t.data_offset % 32 == 0 and np.all(t.data == names.index(t.name))
    assert len(data) % 32 == 0
    assert rewrite(dst) == data  # canonical form is a fixed point


# ---------------------------------------------------------------------------------------------
# The fake executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    double = OllamaDouble(md)
    assert stray.exists()
    double.start()
    try:
        assert not stray.exists() and double.pruned == [stray.name]
    finally:
        double.stop()
