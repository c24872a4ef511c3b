"""The engines' own flag names (engine_flags/*.txt, extracted from their sources) and the check of a command line."""

from __future__ import annotations

from functools import cache
from importlib import resources

LISTS = {"sglang": "sglang.txt", "vllm": "vllm.txt", "vllm-ascend": "vllm.txt"}  # vLLM-Ascend runs vLLM's parser
ABBREVIATES = {"sglang"}  # a plain argparse parser: a unique prefix of one flag stands for it


@cache
def known_flags(engine: str) -> frozenset[str]:
    text = resources.files("dslocal.cluster").joinpath("engine_flags", LISTS[engine]).read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.startswith("-"))


def source_line(engine: str) -> str:
    """The first header line of the list: the engine version it came from."""
    text = resources.files("dslocal.cluster").joinpath("engine_flags", LISTS[engine]).read_text(encoding="utf-8")
    return text.splitlines()[0].lstrip("# ")


def resolve(engine: str, flag: str) -> str | None:
    """The engine's flag that ``flag`` names (itself, or the one flag it abbreviates), or None."""
    flags = known_flags(engine)
    if flag in flags:
        return flag
    if engine in ABBREVIATES:
        matches = [f for f in flags if f.startswith(flag)]
        if len(matches) == 1:
            return matches[0]
    return None


def unknown_flags(engine: str, argv: list[str] | tuple[str, ...]) -> list[str]:
    """The ``--flags`` of ``argv`` that the engine does not define."""
    flags = [a.split("=", 1)[0] for a in argv if a.startswith("--")]
    return [f for f in flags if resolve(engine, f) is None]
