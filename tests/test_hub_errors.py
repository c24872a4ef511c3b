"""The Hub's refusals, read from X-Error-Code and X-Error-Message as huggingface_hub reads them, turned
into one-line errors with the next step: gated, missing or private repositories, missing revisions
and files, refused tokens. Against the loopback hub double, and through the CLI."""

from __future__ import annotations

import random

import pytest
from hubdouble import run_hub

from dslocal.errors import AccessError, NotFoundError
from dslocal.sources.download import DownloadOptions, download
from dslocal.sources.http import hub_error
from dslocal.sources.hub import HubSource
from dslocal.sources.listing import Origin, RemoteFile, select

REPO = "unsloth/Test-R1-GGUF"
GGUF = "Test-00001-of-00001.gguf"
OPTIONS = DownloadOptions(connections=2, chunk_size=256 << 10, read_timeout=2.0, backoff=0.05, max_attempts=3)
GRANTED, NOT_GRANTED = "hf_granted_token_value", "hf_waiting_token_value"


@pytest.fixture
def hub_root(tmp_path):
    repo = tmp_path / "hub" / REPO
    repo.mkdir(parents=True)
    (repo / GGUF).write_bytes(random.Random(5).randbytes(1_500_000))
    (repo / "README.md").write_text("# gated test\n")
    return tmp_path / "hub"


def fetch(hub, dest, token=None, name="hf"):
    source = HubSource(name, hub.url, token)
    files = select(source.list_files(REPO), ["*.gguf"])
    return download(files, dest, source=name, headers=source.headers(), options=OPTIONS)


def test_a_gated_repository_lists_but_says_where_to_ask_for_access(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.gate(REPO, granted=(GRANTED,))
        with pytest.raises(AccessError) as info:
            fetch(hub, tmp_path / "anon", name="hf-mirror")
        message = info.value.message
        assert message.startswith(f"{REPO} is gated: request access on the model page https://huggingface.co/{REPO},"
                                  " then set HF_TOKEN")
        assert "You must have access to it and be authenticated" in message, "X-Error-Message is shown"
        assert "\n" not in message and "never to a mirror" in info.value.hint

        with pytest.raises(AccessError, match="the token sent has not been granted access yet") as info:
            fetch(hub, tmp_path / "waiting", token=NOT_GRANTED)
        assert f"model page {hub.url}/{REPO}" in info.value.message
        assert "not in the authorized list" in info.value.message
        assert NOT_GRANTED not in info.value.message + (info.value.hint or "")

        report = fetch(hub, tmp_path / "granted", token=GRANTED)
        assert hub.stats.cdn_authorized == []
    assert report.files[0].status == "downloaded"
    assert not (tmp_path / "anon" / GGUF).exists()


def test_a_missing_repository_anonymously_and_with_a_token(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        with pytest.raises(NotFoundError, match=r"^nobody/nothing was not found \(or it is private: that needs HF_TOKEN\)"):
            HubSource("hf", hub.url).list_files("nobody/nothing")  # 401 RepoNotFound, as the Hub answers anonymously
        with pytest.raises(NotFoundError, match=r"^nobody/nothing was not found \(or it is private and the token"):
            HubSource("hf", hub.url, "hf_someone").list_files("nobody/nothing")  # 404 with a token


def test_a_refused_token(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        hub.valid_tokens = {GRANTED}
        with pytest.raises(AccessError, match=r"the token was refused \(invalid credentials\)") as info:
            HubSource("hf", hub.url, "hf_expired_token").list_files(REPO)
    assert "HF_TOKEN" in info.value.hint and "hf_expired_token" not in str(info.value) + info.value.hint


def test_missing_revisions_and_files(hub_root, tmp_path):
    with run_hub(hub_root) as hub:
        with pytest.raises(NotFoundError, match=r"^revision 'v9' of unsloth/Test-R1-GGUF does not exist"
                                                r" \(the server says: Invalid rev id: v9\)") as info:
            HubSource("hf", hub.url).list_files(REPO, "v9")
        assert "--revision" in info.value.hint
        origin = Origin(REPO, "v9", None, f"https://huggingface.co/{REPO}")
        stale = RemoteFile(GGUF, 10, None, f"{hub.url}/{REPO}/resolve/v9/{GGUF}", origin)
        with pytest.raises(NotFoundError, match=r"^revision 'v9' of unsloth/Test-R1-GGUF does not exist"):
            download([stale], tmp_path / "a", source="hf", options=OPTIONS)
        origin = Origin(REPO, "main", hub.refs["main"], f"https://huggingface.co/{REPO}")
        gone = RemoteFile("gone.gguf", 10, None, f"{hub.url}/{REPO}/resolve/main/gone.gguf", origin)
        with pytest.raises(NotFoundError, match=r"^gone.gguf is not in unsloth/Test-R1-GGUF@main"):
            download([gone], tmp_path / "b", source="hf", options=OPTIONS)
        assert hub.stats.resolve_requests == 2, "errors are not retried"


def test_a_401_without_a_code_on_a_hub_is_a_missing_or_private_repository():
    """hf_raise_for_status: a 401 on a repository URL without "Invalid credentials" is RepoNotFound."""
    origin = Origin(REPO, "main", None, f"https://huggingface.co/{REPO}")
    error = hub_error(401, {}, "x.gguf", origin, token_sent=False)
    assert isinstance(error, NotFoundError) and "or it is private" in error.message
    plain = hub_error(401, {}, "http://lan/x.gguf")
    assert isinstance(plain, AccessError), "off a hub a 401 is just access denied"
    assert hub_error(206, {}, "x") is None


def test_cli_says_gated_in_one_line_and_never_prints_the_token(hub_root, cli, dslocal_home, tmp_path):
    with run_hub(hub_root) as hub:
        hub.gate(REPO, granted=(GRANTED,))
        env = {"DSLOCAL_HF_ENDPOINT": hub.url, "HF_TOKEN": NOT_GRANTED}
        result = cli("download", REPO, "--source", "hf", "--dir", str(tmp_path / "o"), env=env)
    assert result.returncode == 6, result.stderr
    assert "Traceback" not in result.stderr and NOT_GRANTED not in result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "is gated and the token sent has not been granted access yet" in errors[0]
    assert f"{hub.url}/{REPO}" in errors[0]
