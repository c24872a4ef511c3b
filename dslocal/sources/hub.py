"""Hugging Face and HF-compatible hubs (hf-mirror, intranet mirrors), and ModelScope.

Listing uses the hubs' own APIs (huggingface_hub's ``HfApi`` with ``endpoint=``; the
ModelScope ``/api/v1/models/.../repo/files`` API). Bytes are fetched with plain HTTP
on ``resolve`` URLs by :mod:`dslocal.sources.download`, never through hf_xet, so a
mirror set here is never bypassed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import requests

from dslocal.errors import DslocalError, NetworkError, NotFoundError
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, network_error, raise_for_status
from dslocal.sources.listing import RemoteFile, check_remote_path


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face-compatible endpoint."""

    name: str  # "hf", "hf-mirror", or the URL
    endpoint: str
    token: str | None = field(default=None, repr=False)
    default_revision: str = "main"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def file_url(self, repo: str, revision: str, path: str) -> str:
        return f"{self.endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def list_files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        import logging

        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry chatter is ours to report
        revision = revision or self.default_revision
        api = HfApi(endpoint=self.endpoint.rstrip("/"), token=self.token or False)
        try:
            entries = list(api.list_repo_tree(repo, recursive=True, revision=revision))
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise NotFoundError(
                f"{repo}@{revision} was not found on {self.endpoint}",
                "check the repository name; a gated repository needs HF_TOKEN",
            ) from None
        except HfHubHTTPError as exc:
            raise NetworkError(f"listing {repo} on {self.endpoint} failed: {exc}", "try again, or another --source") from None
        except DslocalError:
            raise
        except Exception as exc:  # httpx transport errors and the like
            raise NetworkError(
                f"listing {repo} on {self.endpoint} failed ({type(exc).__name__})", "check the network or use a mirror"
            ) from None
        files = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            path = check_remote_path(entry.path, self.endpoint)
            sha = entry.lfs.sha256 if entry.lfs is not None else None
            files.append(RemoteFile(path, int(entry.size), sha, self.file_url(repo, revision, path)))
        return files


@dataclass(frozen=True)
class ModelScopeSource:
    name: str
    endpoint: str
    default_revision: str = "master"

    def headers(self) -> dict[str, str]:
        return {}

    def file_url(self, repo: str, revision: str, path: str) -> str:
        return f"{self.endpoint.rstrip('/')}/models/{repo}/resolve/{quote(revision, safe='')}/{quote(path)}"

    def list_files(self, repo: str, revision: str | None = None, session: requests.Session | None = None) -> list[RemoteFile]:
        from dslocal.sources.http import make_session

        revision = revision or self.default_revision
        url = f"{self.endpoint.rstrip('/')}/api/v1/models/{repo}/repo/files"
        session = session or make_session()
        try:
            response = session.get(
                url, params={"Revision": revision, "Recursive": "true"}, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            )
        except requests.RequestException as exc:
            raise network_error(exc, url) from None
        raise_for_status(response, f"ModelScope listing of {repo}")
        try:
            body = response.json()
            entries = body["Data"]["Files"] if body.get("Code", 200) == 200 else None
        except (ValueError, KeyError, TypeError, AttributeError):
            entries = None
        if entries is None:
            raise NotFoundError(f"{repo}@{revision} was not found on ModelScope ({self.endpoint})", "check the repository name")
        files = []
        for entry in entries:
            if entry.get("Type") == "tree":
                continue
            path = check_remote_path(str(entry.get("Path") or entry.get("Name") or ""), self.endpoint)
            sha = entry.get("Sha256") or None
            files.append(RemoteFile(path, int(entry.get("Size") or 0), sha, self.file_url(repo, revision, path)))
        return files
