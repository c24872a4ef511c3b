"""``python -m build``: the sdist holds the sources and data, the wheel built from it holds the data folders,
and that wheel installed in a fresh venv (with the ``embedded`` extra) runs, reads its data and passes
``dslocal demo`` offline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from dslocal import __version__
from dslocal.ollama.daemon import COMMON_LOCATIONS

pytestmark = pytest.mark.slow
DATA_FOLDERS = {"modelfiles": "dslocal/_data/modelfiles", "quant_recipes": "dslocal/_data/quant_recipes",
                "packaging": "dslocal/_data/packaging"}  # pyproject.toml's force-include
DEAD_PROXY = "http://127.0.0.1:9"


def repo_files(folder: str) -> list[str]:
    """The folder's files as git tracks them (what a fresh clone, and so the sdist, has)."""
    out = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if (REPO / line).is_file()]


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """The sdist, and the wheel that ``python -m build`` builds from it."""
    out = tmp_path_factory.mktemp("dist")
    build = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (sdist,) = out.glob("dslocal-*.tar.gz")
    (wheel,) = out.glob("dslocal-*.whl")
    return sdist, wheel


@pytest.fixture(scope="module")
def wheel(dists) -> Path:
    return dists[1]


def test_wheel_carries_the_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dslocal/_data/modelfiles/deepseek-thinking.template" in names
    assert "dslocal/_data/quant_recipes/deepseek2-ud-iq1_s.toml" in names
    assert "dslocal/testing/ggufgen.py" in names
    assert "dslocal/catalog/variants.toml" in names
    assert "dslocal/_data/modelfiles/families.toml" in names
    assert "dslocal/tui/dslocal.tcss" in names  # the TUI's styles
    assert "dslocal/engines/llama_server_flags.toml" in names
    for folder, inside in DATA_FOLDERS.items():
        files = repo_files(folder)
        assert files and {inside + name[len(folder):] for name in files} <= names, folder
    assert not any(name.startswith("tests/") for name in names)


def test_sdist_carries_the_sources_and_the_data(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for folder in (*DATA_FOLDERS, "dslocal"):
        missing = sorted(set(repo_files(folder)) - names)
        assert missing == [], folder
    assert {"pyproject.toml", "README.md", "dslocal/tui/dslocal.tcss", "packaging/linux/dslocal.desktop"} <= names


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its ``embedded`` extra (xllamacpp) installed."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[embedded]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def test_fresh_venv_runs_the_installed_wheel(venv, tmp_path):
    py = venv / "bin" / "python"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "DSLOCAL_HOME": str(tmp_path / "home")}

    version = subprocess.run([str(venv / "bin" / "dslocal"), "--version"], capture_output=True, text=True, env=env)
    assert version.returncode == 0 and version.stdout.strip() == f"dslocal {__version__}"
    paths = subprocess.run([str(venv / "bin" / "dslocal"), "paths"], capture_output=True, text=True, env=env)
    assert paths.returncode == 0 and str(tmp_path / "home") in paths.stdout

    probe = (
        "from dslocal.resources import data_folder, read_data\n"
        "import tomllib\n"
        "t = read_data('modelfiles', 'deepseek-thinking.template')\n"
        "r = tomllib.loads(read_data('quant_recipes', 'deepseek2-ud-iq1_s.toml'))\n"
        "print(data_folder('modelfiles'))\n"
        "from dslocal.catalog import load_catalog\n"
        "assert load_catalog().get('r1-671b-q2').shard_count == 5\n"
        "print('.Thinking' in t and '<｜User｜>' in t, r['architecture'], len(r['rules']))\n"
        "from importlib.resources import files\n"
        "print((files('dslocal.tui') / 'dslocal.tcss').is_file(), (data_folder('packaging') / 'linux').is_dir())\n"
    )
    result = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where, facts, styles = result.stdout.strip().splitlines()
    assert "site-packages" in where and where.endswith("dslocal/_data/modelfiles")
    assert facts.startswith("True deepseek2 ")
    assert styles == "True True"


def test_the_installed_wheel_passes_the_demo(venv, tmp_path):
    installed = [p for p in COMMON_LOCATIONS if Path(p).expanduser().is_file()]
    if installed:
        pytest.skip(f"an Ollama is installed at {installed[0]}: the demo would use it")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "tmp").mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "DSLOCAL_HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"), "OLLAMA_HOST": f"127.0.0.1:{port}", "HF_HUB_OFFLINE": "1",
        "HTTP_PROXY": DEAD_PROXY, "HTTPS_PROXY": DEAD_PROXY, "ALL_PROXY": DEAD_PROXY, "NO_PROXY": "",
        "COLUMNS": "200",
    }
    demo = subprocess.run([str(venv / "bin" / "dslocal"), "demo"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "This installation works" in demo.stdout and "  answer:   OK!\n" in demo.stdout
    assert "engine: llama.cpp's own server from xllamacpp" in demo.stdout
    assert os.listdir(tmp_path / "tmp") == []
