"""``dslocal ollama install`` against a loopback server that serves a release in Ollama's real layout.

The layout copies ollama/ollama at v0.32.15: ``.github/workflows/release.yaml`` builds the Linux
bundles with ``tar c -C dist -T LIST --owner 0 --group 0 | zstd -19 -T0 > ollama-linux-<arch>.tar.zst``
(``.tgz`` through ``pigz`` before v0.14.0), LIST naming ``bin/ollama*``, ``lib/ollama/*.so*``,
``lib/ollama/llama-server*``, ``lib/ollama/llama-quantize*`` and the ``lib/ollama/cuda_v*`` folders,
and writes ``sha256sum.txt`` with ``find . -type f -not -name sha256sum.txt | xargs sha256sum``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import zstandard
from fileserver import serve_folder

from dslocal.errors import NotFoundError, UsageError
from dslocal.ollama.install import asset_names, install, linux_arch, parse_version, unsafe_reason

ON_LINUX = platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")
needs_linux = pytest.mark.skipif(not ON_LINUX, reason="Ollama's tarball install is for Linux on amd64/arm64")
ARCH = linux_arch() if ON_LINUX else "amd64"
EXT = {"zstd": ".tar.zst", "gzip": ".tgz"}


def fake_ollama(version: str) -> bytes:
    """What the real ``ollama --version`` prints (cmd/cmd.go versionHandler at v0.32.15)."""
    return f"""#!/bin/sh
# with a server of the same version it prints one line; with none, two warnings
case "$1" in
  --version|-v)
    if [ -n "$FAKE_SERVER_VERSION" ]; then echo "ollama version is $FAKE_SERVER_VERSION"
    else echo "Warning: could not connect to a running Ollama instance"; fi
    [ "$FAKE_SERVER_VERSION" = "{version}" ] || echo "Warning: client version is {version}" ;;
  *) echo "Error: this test bundle only answers --version" >&2; exit 1 ;;
esac
""".encode()


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b""
    mode: int = 0o644
    kind: bytes = tarfile.REGTYPE
    link: str = ""

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.name)
        info.type, info.mode, info.linkname = self.kind, self.mode, self.link
        info.size = len(self.data) if self.kind == tarfile.REGTYPE else 0
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 1755600000
        if self.kind == tarfile.CHRTYPE:
            info.devmajor, info.devminor = 1, 3
        return info


def bundle(version: str) -> list[Entry]:
    """The members of ``ollama-linux-<arch>``: no entries for bin/ and lib/ollama/, as ``tar -T`` lists files."""
    so = b"\x7fELF" + b"\0" * 4092
    entries = [Entry("bin/ollama", fake_ollama(version), 0o755), Entry("lib/ollama/libggml-base.so", so),
               Entry("lib/ollama/libggml-cpu-haswell.so", so)]
    if parse_version(version) >= (0, 30, 0):
        entries += [Entry("lib/ollama/llama-server", b"#!/bin/sh\nexit 0\n", 0o755),
                    Entry("lib/ollama/llama-quantize", b"#!/bin/sh\nexit 0\n", 0o755)]
    return entries + [
        Entry("lib/ollama/cuda_v12/", mode=0o755, kind=tarfile.DIRTYPE),
        Entry("lib/ollama/cuda_v12/libcudart.so.12.8.90", so),
        Entry("lib/ollama/cuda_v12/libcudart.so.12", kind=tarfile.SYMTYPE, link="libcudart.so.12.8.90"),
        Entry("lib/ollama/cuda_v12/libggml-cuda.so", so),
    ]


def write_tar(path: Path, entries: list[Entry], compression: str) -> None:
    if compression == "gzip":
        with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
            for entry in entries:
                tar.addfile(entry.tarinfo(), io.BytesIO(entry.data))
        return
    # zstd's command line writes a content checksum by default, as in `zstd -19 -T0`
    compressor = zstandard.ZstdCompressor(level=19, write_checksum=True)
    with open(path, "wb") as raw, compressor.stream_writer(raw, closefd=False) as out:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.GNU_FORMAT) as tar:
            for entry in entries:
                tar.addfile(entry.tarinfo(), io.BytesIO(entry.data))


def make_release(root: Path, version: str = "0.32.15", *, compression: str | None = None, sums: bool = True,
                 entries: list[Entry] | None = None, arches: tuple[str, ...] = ("amd64", "arm64")) -> Path:
    """A release folder ``root/v<version>``; returns the path of this machine's Linux bundle."""
    compression = compression or ("zstd" if parse_version(version) >= (0, 14, 0) else "gzip")
    folder = root / f"v{version}"
    folder.mkdir(parents=True)
    for arch in arches:
        write_tar(folder / f"ollama-linux-{arch}{EXT[compression]}", entries or bundle(version), compression)
        if compression == "zstd":
            rocm = [Entry("lib/ollama/rocm/libhipblas.so", b"rocm")]
            write_tar(folder / f"ollama-linux-{arch}-rocm.tar.zst", rocm, "zstd")
    write_tar(folder / "ollama-darwin.tgz", [Entry("ollama", b"darwin")], "gzip")
    if sums:
        lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.name}" for p in sorted(folder.iterdir())]
        (folder / "sha256sum.txt").write_text("\n".join(lines) + "\n")
    return folder / f"ollama-linux-{ARCH}{EXT[compression]}"


def installed(home: Path) -> Path:
    return home / "data" / "ollama"


def leftovers(home: Path) -> list[str]:
    """What an install may leave beside itself: staging, set-aside or download folders (not its lock file)."""
    data = home / "data"
    found = data.iterdir() if data.is_dir() else ()
    return sorted(p.name for p in found if p.name.startswith(".ollama") and p.name != ".ollama.lock")


def version_of(binary: Path, server: str | None = None) -> str:
    env = {**os.environ, **({"FAKE_SERVER_VERSION": server} if server else {})}
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env, check=True).stdout


def release_env(base: str) -> dict[str, str]:
    return {"DSLOCAL_OLLAMA_RELEASE_BASE": base.rstrip("/")}


def one_line_error(stderr: str) -> list[str]:
    """The error and its hint: the last two lines of stderr, after any progress notes."""
    lines = stderr.strip().splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("dslocal: error: ")]
    assert errors == [len(lines) - 2] and lines[-1].startswith("hint: "), stderr
    return lines[-2:]


@needs_linux
def test_installs_the_tar_zst_bundle_and_the_binary_answers_version(cli, dslocal_home, tmp_path):
    make_release(tmp_path / "rel")
    with serve_folder(tmp_path / "rel", redirect=True) as (base, state):  # GitHub answers with a 302 to its CDN
        result = cli("ollama", "install", "--version", "0.32.15", env=release_env(base))
        assert result.returncode == 0, result.stderr
        assert f"ollama-linux-{ARCH}.tar.zst" in result.stderr and "sha256sum.txt" in result.stderr
        asked = {path.rsplit("/", 1)[-1] for _method, path, _range in state.requests}
        assert f"ollama-linux-{ARCH}.tar.zst" in asked and f"ollama-linux-{ARCH}.tgz" not in asked
        home = installed(dslocal_home)
        binary = home / "bin" / "ollama"
        assert home.stat().st_mode & 0o777 == 0o755
        assert version_of(binary, server="0.32.15").strip() == "ollama version is 0.32.15"
        assert "client version is 0.32.15" in version_of(binary)
        for tool in ("llama-server", "llama-quantize"):
            assert os.access(home / "lib" / "ollama" / tool, os.X_OK)
        cuda = home / "lib" / "ollama" / "cuda_v12"
        link = cuda / "libcudart.so.12"
        assert link.is_symlink() and link.resolve() == cuda / "libcudart.so.12.8.90"
        status = json.loads(cli("ollama", "status", "--json", env={"PATH": "/usr/bin:/bin"}).stdout)["data"]
        assert status["binary"] == str(binary) and status["binary_version"] == "0.32.15"
        again = cli("ollama", "install", "--version", "v0.32.15", env=release_env(base))
        assert again.returncode == 0, again.stderr
    assert version_of(binary, server="0.32.15").strip() == "ollama version is 0.32.15"
    assert leftovers(dslocal_home) == []


@needs_linux
@pytest.mark.parametrize(("version", "compression"), [("0.13.5", "gzip"), ("0.32.15", "gzip")],
                         ids=["before-0.14-only-tgz", "mirror-without-the-tar.zst"])
def test_tgz_installs_for_old_releases_and_as_the_fallback(dslocal_home, tmp_path, version, compression):
    archive = make_release(tmp_path / "rel", version, compression=compression)
    events = []
    with serve_folder(tmp_path / "rel") as (base, state):
        binary = install(installed(dslocal_home), version=version, base=base, progress=events.append)
    assert "client version is " + version in version_of(binary)
    heads = [path.rsplit("/", 1)[-1] for method, path, _range in state.requests if method == "HEAD"]
    if parse_version(version) < (0, 14, 0):
        assert heads == [f"ollama-linux-{ARCH}.tgz"], "no release before 0.14.0 has a .tar.zst to ask for"
    else:
        assert heads == [f"ollama-linux-{ARCH}.tar.zst", f"ollama-linux-{ARCH}.tgz"], "install.sh's order"
    size = archive.stat().st_size
    assert any(e.task == "download" and e.done == e.total == size for e in events)
    unpacked = [e for e in events if e.task == "unpack"]
    assert unpacked and unpacked[-1].done == unpacked[-1].total == size
    assert {e.detail for e in unpacked} >= {"bin/ollama", "lib/ollama/libggml-base.so"}
    assert leftovers(dslocal_home) == []


@needs_linux
def test_a_checksum_mismatch_is_refused_and_nothing_is_installed(cli, dslocal_home, tmp_path):
    archive = make_release(tmp_path / "rel")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with serve_folder(tmp_path / "rel") as (base, _state):
        result = cli("ollama", "install", env=release_env(base))
    assert result.returncode == 6
    error, hint = one_line_error(result.stderr)
    assert f"ollama-linux-{ARCH}.tar.zst does not match the sha256" in error and "DSLOCAL_OLLAMA_RELEASE_BASE" in hint
    assert not installed(dslocal_home).exists() and leftovers(dslocal_home) == []


HOSTILE = {
    "dot-dot": Entry("../evil", b"x"),
    "dot-dot-deep": Entry("lib/ollama/../../../evil", b"x"),
    "absolute": Entry("/tmp/dslocal-test-absolute-evil", b"x"),
    "symlink-outside": Entry("lib/ollama/escape", kind=tarfile.SYMTYPE, link="../../../evil"),
    "symlink-absolute": Entry("lib/ollama/etc", kind=tarfile.SYMTYPE, link="/etc"),
    "hardlink-outside": Entry("lib/ollama/passwd", kind=tarfile.LNKTYPE, link="/etc/passwd"),
    "device": Entry("lib/ollama/null", kind=tarfile.CHRTYPE),
}


@needs_linux
@pytest.mark.parametrize("hostile", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_archive_members_are_refused(cli, dslocal_home, tmp_path, hostile):
    good = bundle("0.32.15")
    make_release(tmp_path / "rel", entries=[*good[1:3], hostile, *good[:1], *good[3:]])
    with serve_folder(tmp_path / "rel") as (base, _state):
        result = cli("ollama", "install", env=release_env(base))
    assert result.returncode == 4, result.stderr
    error, _hint = one_line_error(result.stderr)
    assert hostile.name in error and "nothing was installed" in error
    assert not installed(dslocal_home).exists() and leftovers(dslocal_home) == []
    assert not (dslocal_home / "evil").exists() and not (dslocal_home / "data" / "evil").exists()
    assert not Path("/tmp/dslocal-test-absolute-evil").exists()
    # the check that stands in for tarfile's "data" filter on Pythons without it refuses it on its own
    root = str((tmp_path / "root").resolve())
    assert unsafe_reason(hostile.tarinfo(), root) is not None
    assert all(unsafe_reason(entry.tarinfo(), root) is None for entry in good)


@needs_linux
@pytest.mark.parametrize("damage", ["truncated", "bit-flip"])
def test_a_damaged_archive_leaves_the_previous_install_alone(cli, dslocal_home, tmp_path, damage):
    make_release(tmp_path / "rel", "0.13.5")
    archive = make_release(tmp_path / "rel", "0.32.15", sums=False)  # a mirror without sha256sum.txt
    data = bytearray(archive.read_bytes())
    if damage == "truncated":  # e.g. a mirror that copied an interrupted download
        del data[len(data) * 2 // 3:]
    else:
        data[-200] ^= 0x01
    archive.write_bytes(bytes(data))
    with serve_folder(tmp_path / "rel") as (base, _state):
        first = cli("ollama", "install", "--version", "0.13.5", env=release_env(base))
        assert first.returncode == 0, first.stderr
        result = cli("ollama", "install", "--version", "0.32.15", env=release_env(base))
    assert result.returncode == 4, result.stderr
    error, _hint = one_line_error(result.stderr)
    assert "damaged or incomplete archive" in error and "nothing was installed" in error
    assert "client version is 0.13.5" in version_of(installed(dslocal_home) / "bin" / "ollama")
    assert not (installed(dslocal_home) / "lib" / "ollama" / "llama-server").exists()
    assert leftovers(dslocal_home) == []


@needs_linux
@pytest.mark.parametrize("what", ["no-such-release", "no-asset-for-this-arch"])
def test_a_missing_asset_gives_a_one_line_error(cli, dslocal_home, tmp_path, what):
    version = "9.9.9" if what == "no-such-release" else "0.32.15"
    make_release(tmp_path / "rel", arches=("arm64",) if ARCH == "amd64" else ("amd64",))
    with serve_folder(tmp_path / "rel") as (base, _state):
        result = cli("ollama", "install", "--version", version, env=release_env(base))
    assert result.returncode == 5
    error, hint = one_line_error(result.stderr)
    assert error.startswith(f"dslocal: error: release {version} has no asset for linux-{ARCH} ")
    assert "--version" in hint and "DSLOCAL_OLLAMA_RELEASE_BASE" in hint
    assert not installed(dslocal_home).exists() and leftovers(dslocal_home) == []


@needs_linux
def test_a_release_without_sha256sum_installs_after_a_size_check(cli, dslocal_home, tmp_path):
    make_release(tmp_path / "rel", sums=False)
    with serve_folder(tmp_path / "rel") as (base, _state):
        result = cli("ollama", "install", env=release_env(base))
    assert result.returncode == 0, result.stderr
    assert "size only" in result.stderr
    assert "client version is 0.32.15" in version_of(installed(dslocal_home) / "bin" / "ollama")


@needs_linux
def test_a_bundle_larger_than_the_free_disk_is_refused_before_downloading(cli, dslocal_home, tmp_path):
    (tmp_path / "rel").mkdir()
    dslocal_home.mkdir()
    folder = tmp_path / "rel" / "v0.32.15"
    folder.mkdir()
    with open(folder / f"ollama-linux-{ARCH}.tar.zst", "wb") as sparse:  # sparse: larger than the disk, costs nothing
        sparse.truncate(shutil.disk_usage(dslocal_home).free + (1 << 30))
    with serve_folder(tmp_path / "rel") as (base, state):
        result = cli("ollama", "install", env=release_env(base))
    assert result.returncode == 7, result.stderr
    error, hint = one_line_error(result.stderr)
    assert "free" in error and "--dir" not in hint
    assert state.body_bytes_sent == 0 and leftovers(dslocal_home) in ([], [".ollama-downloads"])


@pytest.fixture
def tiny_disk(tmp_path):
    """A 2 MiB tmpfs (needs root and a kernel that lets this process mount)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@needs_linux
def test_a_disk_that_fills_while_unpacking_exits_7(cli, dslocal_home, tmp_path, tiny_disk):
    big = Entry("lib/ollama/cuda_v12/libggml-cuda.so", b"\0" * (8 << 20))  # compresses to a few hundred bytes
    make_release(tmp_path / "rel", entries=[*bundle("0.32.15"), big])
    home = tiny_disk / "home"
    with serve_folder(tmp_path / "rel") as (base, _state):
        result = cli("ollama", "install", env={**release_env(base), "DSLOCAL_HOME": str(home)})
    assert result.returncode == 7, result.stderr
    error, _hint = one_line_error(result.stderr)
    assert "filled up while unpacking" in error
    assert not installed(home).exists() and leftovers(home) == []
    assert shutil.disk_usage(tiny_disk).used < (256 << 10), "the half-unpacked tree was removed"


@needs_linux
def test_the_next_install_repairs_what_a_crash_mid_swap_left(dslocal_home, tmp_path):
    make_release(tmp_path / "rel", "0.13.5")
    dest = installed(dslocal_home)
    with serve_folder(tmp_path / "rel") as (base, _state):
        install(dest, version="0.13.5", base=base)
        # a crash between the two renames: the old tree set aside, the new one still staged
        os.replace(dest, dest.parent / ".ollama.old")
        (dest.parent / ".ollama.new-x1y2z3" / "bin").mkdir(parents=True)
        with pytest.raises(NotFoundError, match="release 9.9.9 has no asset"):
            install(dest, version="9.9.9", base=base)
    assert "client version is 0.13.5" in version_of(dest / "bin" / "ollama")
    assert leftovers(dslocal_home) == []


@needs_linux
def test_a_second_install_into_the_same_folder_waits_its_turn(cli, dslocal_home, tmp_path):
    from filelock import FileLock

    make_release(tmp_path / "rel")
    (dslocal_home / "data").mkdir(parents=True)
    with FileLock(str(dslocal_home / "data" / ".ollama.lock")), serve_folder(tmp_path / "rel") as (base, state):
        result = cli("ollama", "install", env=release_env(base))
    assert result.returncode == 1
    error, _hint = one_line_error(result.stderr)
    assert "another 'dslocal ollama install' is installing" in error
    assert state.requests == [] and not installed(dslocal_home).exists()


def test_asset_names_follow_the_release_history():
    assert asset_names("0.13.5", "arm64") == ("ollama-linux-arm64.tgz",)
    assert asset_names("0.14.0-rc0", "amd64") == ("ollama-linux-amd64.tar.zst", "ollama-linux-amd64.tgz")
    assert asset_names("v0.32.15", "amd64")[0] == "ollama-linux-amd64.tar.zst"
    assert linux_arch("Linux", "aarch64") == "arm64" and linux_arch("Linux", "x86_64") == "amd64"
    with pytest.raises(UsageError, match="macOS"):
        linux_arch("Darwin", "arm64")
    with pytest.raises(UsageError, match="not an Ollama version"):
        asset_names("latest", "amd64")
