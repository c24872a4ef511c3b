"""/api/create: what is checked before streaming, what arrives as an NDJSON error line, the COPY
rewrite's progress and result (protocol audit, findings 2, 3 and 11)."""

from __future__ import annotations

import pytest
from contract.api import MT_MODEL, ZEROS, blob_names, create, digest_of, import_files, layer, manifest, upload

from dslocal.gguf_tools.merge import merge_shards


def test_checks_before_streaming_are_http_statuses(ollama, models):
    server = ollama()
    (path,) = models["single"]
    digest = digest_of(path)
    cases = [
        ({"model": "x", "files": {"../x.gguf": digest}}, 400, "file path must be relative"),
        ({"model": "x", "files": {"/abs.gguf": digest}}, 400, "file path must be relative"),
        ({"model": "x", "files": {"x.gguf": ""}}, 400, "invalid digest format"),
        ({"model": "bad name!", "files": {"x.gguf": digest}}, 400, "invalid model name"),
        ({"model": "team.x/r1", "files": {"x.gguf": digest}}, 400, "invalid model name"),
        ({"model": "x"}, 400, "neither 'from' or 'files' was specified"),
        ({"model": "x", "files": {}}, 400, "unknown type"),
    ]
    for body, status, message in cases:
        got, kind, lines = create(server.url, body)
        assert (got, lines) == (status, [{"error": message}]), body
        assert kind.startswith("application/json"), body


def test_errors_after_the_first_line_are_ndjson_under_200(ollama, models, tmp_path):
    server = ollama()
    missing = "sha256:" + "ab" * 32
    status, kind, lines = create(server.url, {"model": "x", "files": {"x.gguf": missing}})
    assert (status, kind) == (200, "application/x-ndjson")
    assert lines[0] == {"status": "parsing GGUF"}
    blob = server.models_dir / "blobs" / ("sha256-" + "ab" * 32)
    assert lines[-1] == {"error": f"open {blob}: no such file or directory"}

    text = tmp_path / "notes.txt"
    text.write_bytes(b"just some text, not a model" * 10)
    assert upload(server.url, text).status_code == 201
    status, _, lines = create(server.url, {"model": "x", "files": {"x.gguf": digest_of(text)}})
    assert status == 200 and lines == [{"status": "parsing GGUF"}, {"error": "supplied file was not in GGUF format"}]
    status, _, lines = create(server.url, {"model": "x", "files": {"x.gguf": "sha256:nothex"}})
    assert status == 200 and lines == [{"status": "parsing GGUF"}, {"error": "invalid digest format"}]
    status, _, lines = create(server.url, {"model": "x", "files": {"x.gguf": digest_of(text)}, "stream": False})
    assert (status, lines) == (400, [{"error": "supplied file was not in GGUF format"}])


def test_the_copy_rewrite_reports_per_tensor_progress_then_verifies(ollama, models):
    server = ollama()
    if not server.rewrites:
        pytest.skip("before v0.30 imports are not rewritten")
    (path,) = models["single"]
    lines = import_files(server.url, "r1", [path])
    validating = [x for x in lines if x.get("status") == "validating GGUF model"]
    assert len(validating) > 5, "one event per tensor llama-quantize reports"
    assert all(x["digest"] == ZEROS and x["total"] == path.stat().st_size for x in validating)
    done = [x.get("completed", 0) for x in validating]
    assert done == sorted(done) and 0 < done[-1] <= path.stat().st_size
    statuses = [x["status"] for x in lines]
    after = statuses.index("verifying conversion")
    assert after == statuses.index("validating GGUF model") + len(validating)
    assert statuses[after + 1].startswith(("creating new layer sha256:", "using existing layer sha256:"))
    assert statuses[-2:] == ["writing manifest", "success"]


def test_a_generator_file_is_rewritten_and_the_upload_stays_until_prune(ollama, models):
    server = ollama()
    if not server.rewrites:
        pytest.skip("before v0.30 imports are not rewritten")
    (path,) = models["single"]
    import_files(server.url, "r1", [path])
    model = layer(manifest(server.models_dir, "r1"), MT_MODEL)
    assert model["digest"] != digest_of(path), "the generator's header is not llama-quantize's"
    assert "from" not in model, "a rewritten layer loses its file name"
    assert "sha256-" + digest_of(path)[7:] in blob_names(server.models_dir), "create never deletes the upload"


def test_dslocals_canonical_form_is_what_the_rewrite_writes(ollama, models, tmp_path):
    """The least-disk design: dslocal's ``ollama`` merge uploaded, rewritten to the same digest."""
    server = ollama()
    if not server.rewrites:
        pytest.skip("before v0.30 imports are not rewritten")
    for key in ("single", "shards"):
        out = tmp_path / f"{key}-canonical.gguf"
        merge_shards(models[key][0], out, layout="ollama")
        before = blob_names(server.models_dir)
        lines = import_files(server.url, f"c-{key}", [out])
        digest = digest_of(out)
        assert layer(manifest(server.models_dir, f"c-{key}"), MT_MODEL)["digest"] == digest
        assert f"using existing layer {digest}" in [x.get("status") for x in lines]
        assert blob_names(server.models_dir) - before <= {"sha256-" + digest[7:]} | _text_blobs(server, f"c-{key}")


def _text_blobs(server, name: str) -> set[str]:
    man = manifest(server.models_dir, name)
    return {"sha256-" + x["digest"][7:] for x in [man["config"], *man["layers"]] if x["mediaType"] != MT_MODEL}


def test_a_split_set_merges_to_the_single_files_digest(ollama, models):
    server = ollama()
    if not server.rewrites:
        pytest.skip("split sets are accepted from v0.30")
    lines = import_files(server.url, "split", models["shards"])
    assert [x["status"] for x in lines[:3]] == ["parsing GGUF"] * 3
    import_files(server.url, "single", models["single"])
    split = layer(manifest(server.models_dir, "split"), MT_MODEL)["digest"]
    assert split == layer(manifest(server.models_dir, "single"), MT_MODEL)["digest"]


def test_split_set_errors(ollama, models):
    server = ollama()
    if not server.rewrites:
        pytest.skip("split sets are accepted from v0.30")
    shards = models["shards"]
    for path in shards:
        assert upload(server.url, path).status_code in (200, 201)
    files = {p.name: digest_of(p) for p in shards}
    first = shards[0].name
    status, _, lines = create(server.url, {"model": "s", "files": {first: files[first], shards[1].name: files[shards[1].name]}})
    assert status == 200 and lines[-1] == {"error": f'split GGUF "{first}" has 2 shards, expected 3'}
    status, _, lines = create(server.url, {"model": "s", "files": {"renamed.gguf": files[first]}})
    assert lines[-1] == {"error": 'split GGUF "renamed.gguf" must use llama.cpp split filename pattern'}
    wrong = first.replace("-of-00003", "-of-00004")
    status, _, lines = create(server.url, {"model": "s", "files": {wrong: files[first]}})
    assert lines[-1] == {"error": f'split GGUF "{wrong}" filename count 4 does not match metadata count 3'}
