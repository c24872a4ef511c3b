"""What ``dslocal gguf inspect TARGET`` accepts: a local file, an http(s) URL, or ``hf:ORG/REPO/PATH[@REV]``.

Any shard of a split set stands for the whole set, locally and remotely.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import requests

from dslocal.errors import InputError, UsageError
from dslocal.gguf_tools.remote import HeaderCache, read_remote_header
from dslocal.gguf_tools.shards import ShardSet, open_local_set, sibling_names, validate_set
from dslocal.sources.http import hf_token, make_session


@dataclass(frozen=True)
class Target:
    location: str  # a local path or a URL
    remote: bool
    hub: bool  # on the configured Hugging Face endpoint: send the token


@dataclass(frozen=True)
class OpenedSet:
    shard_set: ShardSet
    target: Target
    bytes_read: int | None  # header bytes fetched over the network (remote targets only)


def parse_target(text: str, hf_endpoint: str) -> Target:
    if text.startswith("hf:"):
        rest, _, revision = text[3:].partition("@")
        parts = [p for p in rest.split("/") if p]
        if len(parts) < 3 or (not revision and "@" in text):
            raise UsageError(
                f"{text!r} is not a Hugging Face file target",
                "write it as hf:ORG/REPO/PATH[@REVISION], e.g. hf:unsloth/DeepSeek-R1-GGUF/"
                "DeepSeek-R1-UD-IQ1_S/DeepSeek-R1-UD-IQ1_S-00001-of-00003.gguf",
            )
        org, repo, path = parts[0], parts[1], "/".join(parts[2:])
        url = f"{hf_endpoint.rstrip('/')}/{quote(org)}/{quote(repo)}/resolve/{quote(revision or 'main', safe='')}/{quote(path)}"
        return Target(url, remote=True, hub=True)
    if text.startswith(("http://", "https://")):
        return Target(text, remote=True, hub=text.startswith(hf_endpoint.rstrip("/") + "/"))
    return Target(text, remote=False, hub=False)


def remote_members(url: str) -> list[str]:
    """The URLs of every shard of the set ``url`` belongs to (just ``url`` for a plain file)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port or IPv6 literal raises only here
    except ValueError as exc:
        raise InputError(f"{url!r} is not a URL dslocal can read: {exc}", "check the address (http(s)://HOST/PATH)") from None
    folder, _, name = parts.path.rpartition("/")
    names = sibling_names(unquote(name))
    if names is None:
        return [url]
    return [urlunsplit(parts._replace(path=f"{folder}/{quote(n)}")) for n in names]


def open_target(
    text: str,
    *,
    hf_endpoint: str,
    cache_dir: Path | None = None,
    session: requests.Session | None = None,
) -> OpenedSet:
    """Read and validate the whole set named by ``text``."""
    target = parse_target(text, hf_endpoint)
    if not target.remote:
        return OpenedSet(open_local_set(Path(target.location).expanduser()), target, None)
    session = session or make_session()
    headers: dict[str, str] = {}
    if target.hub:
        token = hf_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
    cache = HeaderCache(cache_dir) if cache_dir is not None else None
    urls = remote_members(target.location)
    results = [read_remote_header(url, session, headers=headers, cache=cache) for url in urls]
    shard_set = validate_set(urls, [r.header for r in results])
    return OpenedSet(shard_set, target, sum(r.bytes_read for r in results))
