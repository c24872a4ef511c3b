"""Hugging Face and HF-compatible hubs (hf-mirror, intranet mirrors), and ModelScope.

Listing uses the hubs' own APIs (huggingface_hub's ``HfApi`` with ``endpoint=``; the
ModelScope ``/api/v1/models/.../repo/files`` API). Bytes are fetched with plain HTTP by
:mod:`dslocal.sources.download`, never through hf_xet, so a mirror set here is never
bypassed.

Hugging Face as huggingface_hub's ``snapshot_download`` does it: the revision (a branch
or tag) is first pinned to its commit (``model_info(...).sha``), the tree is listed at that
commit, and every file URL is ``/resolve/<commit>/<path>``, so a repository that moves
during a multi-hour download cannot mix two commits (a mirror that reports no commit is
listed and read at the revision as given). ModelScope as its SDK does it: the
listing with ``Recursive=True`` and files from ``/api/v1/models/<id>/repo?Revision=&FilePath=``
(``modelscope/hub/file_download.py`` ``get_file_download_url``).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

import requests

from dslocal.errors import DslocalError, NetworkError, NotFoundError
from dslocal.sources.http import CONNECT_TIMEOUT, READ_TIMEOUT, hub_error, network_error, raise_for_status
from dslocal.sources.listing import Origin, RemoteFile, check_remote_path

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
HF_SITE = "https://huggingface.co"


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

    def page(self, repo: str) -> str:
        """Where access to a gated repository is requested: the hub itself, or huggingface.co behind a mirror."""
        own = self.name == "hf" or self.token is not None
        return f"{(self.endpoint if own else HF_SITE).rstrip('/')}/{repo}"

    def list_files(self, repo: str, revision: str | None = None) -> list[RemoteFile]:
        from huggingface_hub import HfApi
        from huggingface_hub.hf_api import RepoFile

        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retry chatter is ours to report
        revision = revision or self.default_revision
        api = HfApi(endpoint=self.endpoint.rstrip("/"), token=self.token or False)
        origin = Origin(repo, revision, None, self.page(repo))
        with self._errors(origin):
            commit = revision if _COMMIT.match(revision) else api.model_info(repo, revision=revision).sha
            origin = Origin(repo, revision, commit, origin.page)
            entries = list(api.list_repo_tree(repo, recursive=True, revision=commit or revision))
        files = []
        for entry in entries:
            if not isinstance(entry, RepoFile):
                continue
            path = check_remote_path(entry.path, self.endpoint)
            sha = entry.lfs.sha256 if entry.lfs is not None else None
            files.append(RemoteFile(path, int(entry.size), sha, self.file_url(repo, commit or revision, path), origin))
        return files

    @contextlib.contextmanager
    def _errors(self, origin: Origin) -> Iterator[None]:
        """huggingface_hub's errors as ours; its own mapping of X-Error-Code comes along in the response."""
        from huggingface_hub.errors import HfHubHTTPError

        what = f"listing {origin.repo} on {self.endpoint}"
        try:
            yield
        except HfHubHTTPError as exc:
            response = getattr(exc, "response", None)
            error = None
            if response is not None:
                error = hub_error(response.status_code, response.headers, what, origin, self.token is not None)
            raise error or NetworkError(f"{what} failed", "try again, or another --source") from None
        except DslocalError:
            raise
        except Exception as exc:  # httpx transport errors and the like
            raise NetworkError(f"{what} failed ({type(exc).__name__})", "check the network or use a mirror") from None


@dataclass(frozen=True)
class ModelScopeSource:
    name: str
    endpoint: str
    default_revision: str = "master"

    def headers(self) -> dict[str, str]:
        return {}

    def file_url(self, repo: str, revision: str, path: str) -> str:
        """The SDK's download route (``get_file_download_url``), which honours Range."""
        return (f"{self.endpoint.rstrip('/')}/api/v1/models/{repo}/repo"
                f"?Revision={quote_plus(revision)}&FilePath={quote_plus(path)}")

    def list_files(self, repo: str, revision: str | None = None, session: requests.Session | None = None) -> list[RemoteFile]:
        from dslocal.sources.http import make_session

        revision = revision or self.default_revision
        url = f"{self.endpoint.rstrip('/')}/api/v1/models/{repo}/repo/files"
        session = session or make_session()
        try:
            response = session.get(
                url, params={"Revision": revision, "Recursive": "True"}, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT)
            )
        except requests.RequestException as exc:
            raise network_error(exc, url) from None
        missing = NotFoundError(f"{repo}@{revision} was not found on ModelScope ({self.endpoint})",
                                "check the repository name and the revision (ModelScope's default is master)")
        if response.status_code == 404:  # the SDK's "The request model ... does not exist"
            raise missing
        raise_for_status(response, f"ModelScope listing of {repo}")
        entries = _ms_entries(response)
        if entries is None:  # HTTP 200 with an error Code, as older servers answer
            raise missing
        origin = Origin(repo, revision, None, f"{self.endpoint.rstrip('/')}/models/{repo}")
        files = []
        for entry in entries:
            if entry.get("Type") == "tree":
                continue
            path = check_remote_path(str(entry.get("Path") or entry.get("Name") or ""), self.endpoint)
            sha = entry.get("Sha256") or None
            files.append(RemoteFile(path, int(entry.get("Size") or 0), sha, self.file_url(repo, revision, path), origin))
        return files


def _ms_entries(response: requests.Response) -> list[dict] | None:
    try:
        body = response.json()
        return body["Data"]["Files"] if body.get("Code", 200) == 200 else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
