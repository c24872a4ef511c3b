"""Which terminal emulator opens the TUI when the launcher is clicked, and how each is told what to run.

How each takes a command (their manuals): ``x-terminal-emulator -e CMD ARGS`` (Debian policy 11.8.3),
``gnome-terminal -- CMD ARGS``, ``konsole -e CMD ARGS``, ``xfce4-terminal -x CMD ARGS`` (its ``-e`` takes
one string), ``kitty CMD ARGS``, ``alacritty -e CMD ARGS``, ``wezterm start -- CMD ARGS``,
``foot CMD ARGS``, ``xterm -e CMD ARGS``. ``$TERMINAL`` (the convention i3-sensible-terminal and
others read) wins; then the desktop's own terminal; then the rest in this order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import NotFoundError

# name -> the arguments that go before the command
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "x-terminal-emulator": ("-e",),
    "gnome-terminal": ("--",),
    "konsole": ("-e",),
    "xfce4-terminal": ("-x",),
    "kitty": (),
    "alacritty": ("-e",),
    "wezterm": ("start", "--"),
    "foot": (),
    "xterm": ("-e",),
}
DESKTOP_TERMINALS = {"GNOME": "gnome-terminal", "KDE": "konsole", "XFCE": "xfce4-terminal"}


@dataclass(frozen=True)
class Terminal:
    name: str
    path: str
    argv: tuple[str, ...]  # the whole command line: terminal, its options, then the command
    why: str  # how it was chosen


def _candidates(env: Mapping[str, str]) -> list[tuple[str, str]]:
    order: list[tuple[str, str]] = []
    chosen = env.get("TERMINAL", "").strip()
    if chosen:
        order.append((chosen, "$TERMINAL"))
    for desktop in env.get("XDG_CURRENT_DESKTOP", "").upper().split(":"):
        if desktop in DESKTOP_TERMINALS:
            order.append((DESKTOP_TERMINALS[desktop], f"the {desktop} desktop's terminal"))
    order += [(name, "found on PATH") for name in CONVENTIONS]
    return order


def find_terminal(command: Sequence[str], env: Mapping[str, str] | None = None) -> Terminal:
    """The first terminal emulator found, with the command line that runs ``command`` in it."""
    env = os.environ if env is None else env
    path = env.get("PATH", os.defpath)
    for name, why in _candidates(env):
        found = shutil.which(name, path=path)
        if not found:
            continue
        before = CONVENTIONS.get(Path(name).name, ("-e",))  # an unknown $TERMINAL: the common -e
        return Terminal(name=Path(name).name, path=found, argv=(found, *before, *command), why=why)
    raise NotFoundError(
        f"no terminal emulator found to open dslocal in (looked for $TERMINAL, {', '.join(CONVENTIONS)})",
        "install one (for example xterm), or set TERMINAL to yours; or run 'dslocal tui' in a terminal",
    )
