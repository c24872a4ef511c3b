"""Split GGUF sets: discover every member from any one, and check the set is whole and sane.

Names follow llama.cpp: ``PREFIX-00001-of-00005.gguf`` (1-based); every shard has
``split.no`` (0-based), ``split.count`` and ``split.tensors.count`` (the total).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dslocal.gguf_tools.header import GGUFFormatError, GGUFHeader, TensorInfo, check_complete, read_file_header

SHARD_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


@dataclass(frozen=True)
class ShardName:
    prefix: str
    no: int  # 1-based, as in the file name
    count: int


def parse_shard_name(name: str) -> ShardName | None:
    match = SHARD_RE.match(name)
    if match is None:
        return None
    return ShardName(match["prefix"], int(match["no"]), int(match["count"]))


def shard_name(prefix: str, no: int, count: int) -> str:
    return f"{prefix}-{no:05d}-of-{count:05d}.gguf"


@dataclass(frozen=True)
class ShardSet:
    """A validated single file or split set, in shard order."""

    files: tuple[str, ...]  # paths or URLs
    headers: tuple[GGUFHeader, ...]

    @property
    def first(self) -> GGUFHeader:
        return self.headers[0]

    @property
    def is_split(self) -> bool:
        return len(self.files) > 1

    @property
    def tensor_count(self) -> int:
        return sum(len(h.tensors) for h in self.headers)

    @property
    def tensor_bytes(self) -> int:
        return sum(h.tensor_bytes for h in self.headers)

    @property
    def file_bytes(self) -> int:
        return sum(h.file_size or 0 for h in self.headers)

    def tensors(self) -> Iterator[tuple[int, TensorInfo]]:
        for index, header in enumerate(self.headers):
            for tensor in header.tensors:
                yield index, tensor


def _short(location: str) -> str:
    return location.rsplit("/", 1)[-1]


def validate_set(files: Sequence[str], headers: Sequence[GGUFHeader]) -> ShardSet:
    """Check that ``headers`` (in file order) form one whole set; raise GGUFFormatError if not."""
    count = len(headers)
    for header in headers:
        check_complete(header)
    if count == 1:
        declared = headers[0].get("split.count", 0)
        if isinstance(declared, int) and declared > 1:
            raise GGUFFormatError(
                f"{files[0]} is shard {headers[0].get('split.no', 0) + 1} of a {declared}-shard set "
                "but is not named like one",
                "keep the llama.cpp names (NAME-00001-of-0000N.gguf) and put every shard in one folder",
            )
    else:
        for index, (location, header) in enumerate(zip(files, headers)):
            no, declared = header.get("split.no"), header.get("split.count")
            if not isinstance(no, int) or not isinstance(declared, int):
                raise GGUFFormatError(
                    f"{location} has no split.no / split.count metadata, so it is not a llama.cpp shard",
                    "rename it, or remove it from the set",
                )
            if no != index:
                raise GGUFFormatError(
                    f"{location} is shard {no + 1} by its metadata but shard {index + 1} by its name",
                    "restore the original file names",
                )
            if declared != count:
                raise GGUFFormatError(
                    f"{location} belongs to a {declared}-shard set, but the set has {count} shards",
                    "mixed shards from different downloads: download the set again",
                )
        totals = {h.get("split.tensors.count") for h in headers}
        actual = sum(len(h.tensors) for h in headers)
        if totals != {actual}:
            raise GGUFFormatError(
                f"the shards of {_short(files[0])} hold {actual} tensors, split.tensors.count says "
                f"{', '.join(str(t) for t in sorted(totals, key=str))}",
                "a shard comes from another set or is damaged: download the set again",
            )
    seen: dict[str, str] = {}
    for location, header in zip(files, headers):
        for tensor in header.tensors:
            if tensor.name in seen:
                raise GGUFFormatError(
                    f"tensor {tensor.name!r} is in both {_short(seen[tensor.name])} and {_short(location)}",
                    "the set mixes shards of different splits: download it again",
                )
            seen[tensor.name] = location
    if headers[0].arch is None:
        raise GGUFFormatError(
            f"{files[0]} has no general.architecture", "this is not the first shard of a model, or it is damaged"
        )
    return ShardSet(tuple(files), tuple(headers))


def sibling_names(name: str) -> list[str] | None:
    """All member names of the set ``name`` belongs to, or None for a plain file."""
    parsed = parse_shard_name(name)
    if parsed is None:
        return None
    if not 1 <= parsed.no <= parsed.count:
        raise GGUFFormatError(f"{name}: shard {parsed.no} of {parsed.count} is impossible", "fix the file name")
    return [shard_name(parsed.prefix, i, parsed.count) for i in range(1, parsed.count + 1)]


def discover_local(path: str | Path) -> list[Path]:
    """Every member of the set that ``path`` belongs to; raises if any is missing."""
    path = Path(path)
    if not path.exists():
        raise GGUFFormatError(f"{path}: no such file", "check the path")
    if path.is_dir():
        raise GGUFFormatError(f"{path} is a directory", "name one .gguf file (any shard of a set will do)")
    names = sibling_names(path.name)
    if names is None:
        return [path]
    members = [path.parent / name for name in names]
    missing = [p.name for p in members if not p.exists()]
    if missing:
        listed = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise GGUFFormatError(
            f"the set {_short(names[0])} is missing {len(missing)} of {len(names)} shards: {listed}",
            "download the missing shards into the same folder",
        )
    parsed = parse_shard_name(path.name)
    assert parsed is not None
    strays = sorted(
        p.name
        for p in path.parent.glob(glob.escape(parsed.prefix) + "-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9].gguf")
        if p.name not in names
    )
    if strays:
        raise GGUFFormatError(
            f"{path.parent} also holds {strays[0]}, a shard of the same name from a different split",
            "move the other set's files to another folder",
        )
    return members


def open_local_set(path: str | Path, read: Callable[[Path], GGUFHeader] | None = None) -> ShardSet:
    """Discover, read and validate the local set that ``path`` belongs to."""
    members = discover_local(path)
    reader = read or (lambda p: read_file_header(p, check_size=False))
    headers = [reader(p) for p in members]
    return validate_set([str(p) for p in members], headers)
