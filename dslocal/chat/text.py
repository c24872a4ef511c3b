"""Text helpers the front ends share (no UI library here)."""

from __future__ import annotations


def stable_split(text: str) -> int:
    """Where ``text`` can be cut so that the part before renders the same on its own: after the last blank
    line outside a code fence (0: nowhere yet)."""
    cut, in_fence, pos = 0, False, 0
    for line in text.splitlines(keepends=True):
        pos += len(line)
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not stripped and not in_fence and pos < len(text):
            cut = pos
    return cut
