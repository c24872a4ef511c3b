"""packaging/pyinstaller/dslocal.spec builds a one-file ``dslocal`` that runs and carries every data file.

The build takes about a minute on two cores. What the bundle must hold is taken from the wheel (built
here too), not from the spec: every non-Python file the wheel installs under ``dslocal/`` has to be in
the executable's archive at the same path, where dslocal.resources finds it when frozen.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import REPO

from dslocal import __version__

pytestmark = pytest.mark.slow
SPEC = REPO / "packaging" / "pyinstaller" / "dslocal.spec"


@pytest.fixture(scope="module")
def onefile(tmp_path_factory) -> Path:
    pytest.importorskip("PyInstaller", reason="pyinstaller is in the test extra")
    out = tmp_path_factory.mktemp("pyinstaller")
    build = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
         "--distpath", str(out / "dist"), "--workpath", str(out / "work"), str(SPEC)],
        capture_output=True, text=True, timeout=600, cwd=out,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    return out / "dist" / "dslocal"


@pytest.fixture(scope="module")
def wheel_data(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel-for-pyinstaller")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = out.glob("dslocal-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    return {name for name in names if name.startswith("dslocal/") and not name.endswith((".py", "/"))}


def test_the_one_file_build_runs(onefile):
    version = subprocess.run([str(onefile), "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"dslocal {__version__}", version.stderr


def test_it_holds_every_data_file_the_wheel_holds(onefile, wheel_data):
    from PyInstaller.archive.readers import CArchiveReader

    bundled = set(CArchiveReader(str(onefile)).toc)
    assert {"dslocal/_data/modelfiles/deepseek-thinking.template", "dslocal/_data/quant_recipes/deepseek2-ud-iq1_s.toml",
            "dslocal/tui/dslocal.tcss", "dslocal/_data/packaging/linux/dslocal.desktop"} <= wheel_data
    assert sorted(wheel_data - bundled) == []


def test_the_frozen_program_reads_its_data(onefile, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DSLOCAL_HOME": str(tmp_path / "home")}
    show = subprocess.run([str(onefile), "show", "r1-671b-q2", "--json"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert show.returncode == 0 and '"UD-Q2_K_XL"' in show.stdout, show.stderr  # dslocal/catalog/variants.toml
    modelfile = subprocess.run([str(onefile), "modelfile", "r1-distill-qwen-7b"], capture_output=True, text=True,
                               env=env, timeout=120)
    assert modelfile.returncode == 0 and "<｜Assistant｜>" in modelfile.stdout, modelfile.stderr  # modelfiles/
    render = subprocess.run([str(onefile), "launcher", "render", "linux", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert render.returncode == 0, render.stderr  # packaging/, and the launcher runs the frozen program itself
    assert f"Exec={onefile} launcher open" in (tmp_path / "out" / "dslocal.desktop").read_text()
