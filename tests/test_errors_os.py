"""A6: unwritable places, full disks and files in the way are exit 7 / exit 4 with a hint, never exit 70.

Read-only folders are real: a read-only tmpfs where root may mount one, else an immutable
folder (chattr +i), else a folder without write permission (non-root). A full disk is a
real small tmpfs.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_boundary import assert_one_line_error, invoke

from dslocal.errors import DiskError, ExitCode, InputError, from_os_error
from dslocal.fsutil import atomic_write_bytes


def _root_can(*command: str) -> bool:
    """Run a root-only tool; whether it worked."""
    if os.geteuid() != 0 or not shutil.which(command[0]):
        return False
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _mount(*args: str) -> bool:
    return _root_can("mount", *args)


def _umount(path: Path) -> None:
    _root_can("umount", str(path))


@pytest.fixture
def readonly_dir(tmp_path) -> Iterator[Path]:
    """A folder nothing can be written in: EROFS (tmpfs -o ro), EPERM (chattr +i) or EACCES (chmod, non-root)."""
    folder = tmp_path / "rofs"
    folder.mkdir()
    if _mount("-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)):
        yield folder
        _umount(folder)
    elif _root_can("chattr", "+i", str(folder)):
        yield folder
        _root_can("chattr", "-i", str(folder))
    elif os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
    else:
        pytest.skip("root without tmpfs mounts or chattr: no folder can be made unwritable")


@pytest.fixture
def immutable_dir(tmp_path) -> Iterator[Path]:
    folder = tmp_path / "immut"
    folder.mkdir()
    if not _root_can("chattr", "+i", str(folder)):
        pytest.skip("chattr +i needs root and a file system that supports it")
    yield folder
    _root_can("chattr", "-i", str(folder))


@pytest.fixture
def local_repo(tmp_path) -> Path:
    """A local source folder (``--source PATH``) holding acme/Small-GGUF with one 1 MB file."""
    repo = tmp_path / "src" / "acme" / "Small-GGUF"
    repo.mkdir(parents=True)
    (repo / "small.gguf").write_bytes(os.urandom(1_000_000))
    return tmp_path / "src"


def writers(out: Path, make_gguf, local_repo: Path) -> dict[str, tuple[str, ...]]:
    tiny = make_gguf("qwen2")[0]
    shard = make_gguf("qwen2", shards=2)[0]
    return {
        "gguf merge": ("gguf", "merge", str(shard), "-o", str(out / "merged.gguf")),
        "gguf split": ("gguf", "split", str(tiny), "--max-tensors", "1000", "--prefix", str(out / "x")),
        "modelfile": ("modelfile", "r1-distill-qwen-7b", "--hw", "cpu-only-32gb", "--ollama-version", "0.32.15",
                      "-o", str(out / "Modelfile")),
        "hw --save": ("hw", "--hw", "cpu-only-32gb", "--save", str(out / "hw.json")),
        "download --dir": ("download", "acme/Small-GGUF", "--source", str(local_repo), "--dir", str(out / "dl"), "-q"),
    }


@pytest.mark.parametrize("writer", ["gguf merge", "gguf split", "modelfile", "hw --save", "download --dir"])
def test_every_writer_says_not_writable(dslocal_home, readonly_dir, make_gguf, local_repo, writer):
    result = invoke(*writers(readonly_dir, make_gguf, local_repo)[writer])
    assert_one_line_error(result, ExitCode.DISK, f"not writable: {readonly_dir}")
    assert ".partial" not in result.stderr and ".tmp" not in result.stderr, "the user's path, not a temporary name"


@pytest.mark.parametrize("writer", ["gguf merge", "modelfile", "hw --save"])
def test_an_immutable_folder_is_not_writable(dslocal_home, immutable_dir, make_gguf, local_repo, writer):
    result = invoke(*writers(immutable_dir, make_gguf, local_repo)[writer])
    assert_one_line_error(result, ExitCode.DISK, f"not writable: {immutable_dir}", "operation not permitted")


def test_a_dslocal_home_on_a_read_only_file_system(readonly_dir, cli, dslocal_home):
    result = cli("config", "set", "connections", "8", env={"DSLOCAL_HOME": str(readonly_dir / "home")})
    assert_one_line_error(result, ExitCode.DISK, f"not writable: {readonly_dir}")


@pytest.fixture
def small_tmpfs(tmp_path) -> Iterator[Path]:
    folder = tmp_path / "small"
    folder.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)):
        pytest.skip("needs root to mount a small tmpfs")
    yield folder
    _umount(folder)


def test_a_disk_filling_up_during_a_download(dslocal_home, small_tmpfs, local_repo, monkeypatch):
    """The preflight passed (here: it is told there is room), then the disk fills: exit 7, not 70."""
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1 << 40))
    result = invoke("download", "acme/Small-GGUF", "--source", str(local_repo), "--dir", str(small_tmpfs / "dl"), "-q")
    assert_one_line_error(result, ExitCode.DISK, "no space left on the device", "rerun")


def test_a_file_where_a_folder_should_be(dslocal_home, tmp_path):
    blocker = tmp_path / "precious.txt"
    blocker.write_text("keep me")
    result = invoke("hw", "--hw", "cpu-only-32gb", "--save", str(blocker / "sub" / "hw.json"))
    assert_one_line_error(result, ExitCode.INPUT, f"not a folder: {blocker} (it is a file)")
    assert blocker.read_text() == "keep me"


def test_a_file_name_too_long(dslocal_home, tmp_path):
    result = invoke("hw", "--hw", "cpu-only-32gb", "--save", str(tmp_path / ("a" * 300 + ".json")))
    assert_one_line_error(result, ExitCode.INPUT, "file name too long")
    assert len(result.stderr.splitlines()[0]) < 200, "the path is shortened to keep the message on one line"


def test_models_dir_pointing_at_a_file(dslocal_home, tmp_path, local_repo):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = invoke("download", "acme/Small-GGUF", "--source", str(local_repo), "-q",
                    env={"DSLOCAL_MODELS_DIR": str(precious)})
    assert_one_line_error(result, ExitCode.CONFIG, "DSLOCAL_MODELS_DIR", "is a file, not a folder")
    assert precious.read_text() == "keep me"


@pytest.mark.parametrize("number, kind, needle", [
    (errno.ENOSPC, DiskError, "no space left on the device writing /d/f"),
    (errno.EDQUOT, DiskError, "quota"),
    (errno.EROFS, DiskError, "not writable: / (read-only file system)"),
    (errno.EACCES, DiskError, "permission denied"),
    (errno.EPERM, DiskError, "operation not permitted"),
    (errno.EISDIR, InputError, "/d/f is a folder, not a file"),
    (errno.ENAMETOOLONG, InputError, "file name too long"),
    (errno.ENOTDIR, InputError, "not a folder"),
])
def test_os_errors_map_to_exit_codes(number, kind, needle):
    mapped = from_os_error(OSError(number, os.strerror(number), "/d/f"))
    assert isinstance(mapped, kind) and needle in mapped.message and mapped.hint
    assert mapped.exit_code == (ExitCode.DISK if kind is DiskError else ExitCode.INPUT)


def test_other_os_errors_stay_bugs():
    assert from_os_error(OSError(errno.EBADF, "Bad file descriptor")) is None


def test_an_atomic_write_names_its_target_not_the_temporary_file(readonly_dir):
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(readonly_dir / "out.json", b"{}")
    assert caught.value.filename == str(readonly_dir / "out.json")


def test_hw_save_does_not_overwrite_without_force(dslocal_home, make_gguf, tmp_path):
    """A14: 'hw --save model.gguf' replaced the model; now it refuses like merge and split."""
    model = tmp_path / "model.gguf"
    shutil.copy(make_gguf("qwen2")[0], model)
    before = model.read_bytes()
    result = invoke("hw", "--hw", "cpu-only-32gb", "--save", str(model))
    assert_one_line_error(result, ExitCode.INPUT, f"{model} already exists", "--force")
    assert model.read_bytes() == before
    forced = invoke("hw", "--hw", "cpu-only-32gb", "--save", str(model), "--force")
    assert forced.returncode == 0, forced.stderr
    assert model.read_text().startswith("{")
