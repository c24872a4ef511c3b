"""``dslocal ollama install`` against a loopback server serving a test release."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest
from fileserver import serve_folder

from dslocal.errors import InputError
from dslocal.ollama.install import _safe_extract, asset_name

FAKE_BINARY = b"#!/bin/sh\necho 'ollama version is 0.32.15'\n"


def make_release(root, version="0.32.15", tamper=False):
    folder = root / f"v{version}"
    folder.mkdir(parents=True)
    archive = folder / asset_name("linux", "x86_64")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data, mode in (("bin/ollama", FAKE_BINARY, 0o755), ("lib/ollama/libggml.so", b"\0" * 4096, 0o644)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(buf.getvalue())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (folder / "sha256sum.txt").write_text(f"{digest}  ./{archive.name}\n0000  ./ollama-darwin.tgz\n")
    if tamper:
        archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    return archive


def test_install_checks_and_unpacks(cli, dslocal_home, tmp_path):
    make_release(tmp_path / "rel")
    with serve_folder(tmp_path / "rel") as (base, _):
        env = {"DSLOCAL_OLLAMA_RELEASE_BASE": base.rstrip("/")}
        result = cli("ollama", "install", "--version", "0.32.15", env=env)
        assert result.returncode == 0, result.stderr
        binary = dslocal_home / "data" / "ollama" / "bin" / "ollama"
        assert binary.is_file() and binary.stat().st_mode & 0o111
        status = json.loads(cli("ollama", "status", "--json", env={"PATH": "/usr/bin:/bin"}).stdout)["data"]
        assert status["binary"] == str(binary) and status["binary_version"] == "0.32.15"
        again = cli("ollama", "install", "--version", "0.32.15", env=env)
        assert again.returncode == 0 and binary.is_file(), "reinstalling replaces the old install"
        missing = cli("ollama", "install", "--version", "9.9.9", env=env)
        assert missing.returncode == 5 and "not found" in missing.stderr


def test_a_tampered_archive_is_refused(cli, dslocal_home, tmp_path):
    make_release(tmp_path / "rel", tamper=True)
    with serve_folder(tmp_path / "rel") as (base, _):
        result = cli("ollama", "install", env={"DSLOCAL_OLLAMA_RELEASE_BASE": base.rstrip("/")})
    assert result.returncode != 0 and "sha256" in result.stderr
    assert not (dslocal_home / "data" / "ollama" / "bin" / "ollama").exists()


def test_unsafe_archive_members_are_refused(tmp_path):
    archive = tmp_path / "evil.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("../../evil")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InputError, match="unsafe path"):
        _safe_extract(archive, tmp_path / "out")
    assert not (tmp_path.parent / "evil").exists()


def test_other_systems_get_the_official_installer():
    from dslocal.errors import UsageError

    with pytest.raises(UsageError, match="macOS"):
        asset_name("Darwin", "arm64")
    assert asset_name("Linux", "aarch64") == "ollama-linux-arm64.tgz"
