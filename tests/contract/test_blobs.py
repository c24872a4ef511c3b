"""POST/HEAD /api/blobs as routes.go answers them (protocol audit, finding 10)."""

from __future__ import annotations

import hashlib

import requests
from contract.api import blob_names, digest_of, upload


def test_head_and_post_of_a_new_and_an_existing_blob(ollama, models):
    server = ollama()
    (path,) = models["single"]
    digest = digest_of(path)
    assert requests.head(f"{server.url}/api/blobs/{digest}").status_code == 404
    assert upload(server.url, path).status_code == 201
    assert (server.models_dir / "blobs" / ("sha256-" + digest[7:])).read_bytes() == path.read_bytes()
    assert requests.head(f"{server.url}/api/blobs/{digest}").status_code == 200
    assert requests.head(f"{server.url}/api/blobs/sha256-{digest[7:]}").status_code == 200
    # Present: 200, whatever the body.
    r = requests.post(f"{server.url}/api/blobs/{digest}", data=b"not the model" * 100)
    assert r.status_code == 200
    for bad in ("sha256:xyz", "md5:" + "0" * 32, "sha256:" + "0" * 63):
        r = requests.head(f"{server.url}/api/blobs/{bad}")
        assert r.status_code == 400


def test_a_mismatched_upload_is_refused_but_kept_under_its_real_digest(ollama):
    server = ollama()
    wrong = "sha256:" + "0" * 64
    got = "sha256:" + hashlib.sha256(b"hello").hexdigest()
    r = requests.post(f"{server.url}/api/blobs/{wrong}", data=b"hello")
    assert r.status_code == 400
    assert r.json() == {"error": f'digest mismatch, expected "{wrong}", got "{got}"'}
    assert "sha256-" + got[7:] in blob_names(server.models_dir), "NewLayer stored it before the comparison"


def test_the_path_digest_is_compared_literally(ollama):
    server = ollama()
    data = b"the same bytes"
    hexd = hashlib.sha256(data).hexdigest()
    for form in (f"sha256-{hexd}", f"sha256:{hexd.upper()}"):
        r = requests.post(f"{server.url}/api/blobs/{form}", data=data)
        assert r.status_code == 400 and "digest mismatch" in r.json()["error"], form
    assert f"sha256-{hexd}" in blob_names(server.models_dir)
    assert requests.post(f"{server.url}/api/blobs/sha256:{hexd}", data=data).status_code == 200
