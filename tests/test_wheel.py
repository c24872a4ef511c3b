"""The built wheel installs into a fresh venv, runs, and reads its packaged data."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest
from conftest import REPO

from dslocal import __version__

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("dslocal-*.whl")
    return path


def test_wheel_carries_the_data_folders(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "dslocal/_data/modelfiles/deepseek-thinking.template" in names
    assert "dslocal/_data/quant_recipes/deepseek2-ud-iq1_s.toml" in names
    assert "dslocal/testing/ggufgen.py" in names
    assert "dslocal/catalog/variants.toml" in names
    assert "dslocal/_data/modelfiles/families.toml" in names
    assert not any(name.startswith("tests/") for name in names)


def test_fresh_venv_runs_the_installed_wheel(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
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
    )
    result = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    where, facts = result.stdout.strip().splitlines()
    assert "site-packages" in where and where.endswith("dslocal/_data/modelfiles")
    assert facts.startswith("True deepseek2 ")
