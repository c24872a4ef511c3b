"""Run a vendor tool with a timeout; never raise (a missing, hung or crashing tool is a note)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

TOOL_TIMEOUT = 2.0


@dataclass(frozen=True)
class ToolRun:
    tool: str
    found: bool
    returncode: int | None
    stdout: str
    stderr: str
    note: str | None  # why the output cannot be used, for the profile's notes

    @property
    def ok(self) -> bool:
        return self.found and self.returncode == 0 and self.note is None


def run_tool(argv: list[str], timeout: float = TOOL_TIMEOUT) -> ToolRun:
    """Run ``argv`` (the tool found on PATH) with the C locale's numbers but UTF-8 text."""
    tool = argv[0]
    path = shutil.which(tool)
    if path is None:
        return ToolRun(tool, False, None, "", "", None)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    try:
        proc = subprocess.run(
            [path, *argv[1:]], capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return ToolRun(tool, True, None, "", "", f"{tool} did not answer within {timeout:g} s")
    except OSError as exc:
        return ToolRun(tool, True, None, "", "", f"{tool} could not run: {exc.strerror or exc}")
    stdout = proc.stdout.decode("utf-8", errors="replace")
    stderr = proc.stderr.decode("utf-8", errors="replace")
    note = None
    if proc.returncode != 0:
        first = (stderr.strip() or stdout.strip()).splitlines()[:1]
        detail = f": {first[0][:200]}" if first else ""
        note = f"{tool} exited with code {proc.returncode}{detail}"
    return ToolRun(tool, True, proc.returncode, stdout, stderr, note)
