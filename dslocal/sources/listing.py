"""What a source lists: remote files with size and sha256, and the rule that keeps them in their folder."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dslocal.errors import InputError, UsageError


@dataclass(frozen=True)
class Origin:
    """Where a listed file lives on a hub: for pinning, and for errors that name the next step."""

    repo: str  # ORG/NAME
    revision: str  # as asked: a branch, a tag or a commit
    commit: str | None  # the commit the listing was pinned to; None where the hub does not say
    page: str  # the repository's web page (where access to a gated repository is requested)


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative path inside the repository, "/"-separated
    size: int
    sha256: str | None  # the LFS oid (or the source's own sha256); None when the source has none
    url: str  # where to GET it (an absolute path for local sources); on a hub, at the pinned commit
    origin: Origin | None = None  # set by hub sources


_DRIVE = re.compile(r"^[A-Za-z]:")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_repo_id(repo: str) -> str:
    """``ORG/NAME`` as hubs spell it; anything else (``..``, extra slashes) is refused."""
    if not _REPO.match(repo) or ".." in repo:
        raise UsageError(f"{repo!r} is not a repository name", "write it as ORG/NAME, e.g. unsloth/DeepSeek-R1-GGUF")
    return repo


def check_remote_path(path: str, source: str) -> str:
    """Refuse a listed name that could escape the target folder; returns it unchanged."""
    parts = path.split("/")
    bad = (
        not path or "\x00" in path or "\\" in path or path.startswith("/") or _DRIVE.match(path)
        or any(part in ("", ".", "..") for part in parts)
    )
    if bad:
        raise InputError(
            f"{source} listed an unsafe file name {path!r}; refusing to download anything",
            "the listing may be hostile or broken: use another source, or report it to the mirror's operator",
        )
    return path


def safe_target(root: Path, path: str, source: str) -> Path:
    """``root / path`` after proving it stays inside ``root`` (symlinks included)."""
    check_remote_path(path, source)
    root_resolved = root.resolve()
    target = (root / path).resolve()
    if root_resolved != target and root_resolved not in target.parents:
        raise InputError(f"{source}: {path!r} would be written outside {root}", "use another source")
    return root / path


def select(files: Iterable[RemoteFile], include: Sequence[str]) -> list[RemoteFile]:
    """Files whose path (or name) matches any glob in ``include``; all of them when it is empty."""
    chosen = []
    for f in files:
        if not include or any(fnmatch.fnmatch(f.path, g) or fnmatch.fnmatch(f.path.rsplit("/", 1)[-1], g) for g in include):
            chosen.append(f)
    return sorted(chosen, key=lambda f: f.path)
