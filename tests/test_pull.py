"""``dslocal pull`` end to end: loopback hub double -> downloader -> merge -> Ollama double."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hubdouble import run_hub
from ollama_double import run_ollama

from dslocal.config import load_settings
from dslocal.errors import DiskError, OllamaError
from dslocal.hardware.presets import load_profile
from dslocal.ollama.client import OllamaClient
from dslocal.ollama.store import Store
from dslocal.pipeline import PullRequest, pull
from dslocal.testing.ggufgen import ModelSpec, write_model

pytest.importorskip("llama_cpp")

REPO = "unsloth/Test-R1-GGUF"
# Many small tensors, like the real thing: the largest is ~1% of the model (an R1 expert tensor is ~0.6%).
SPEC = ModelSpec.deepseek2("mla", n_embd=256, n_layer=24, n_head=8, n_expert=8, n_ff_exp=128, q_lora_rank=64,
                           kv_lora_rank=64, n_ff=512)
MODEL = f"hf:{REPO}:Q8_0"


@pytest.fixture(scope="module")
def hub_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    folder = root / REPO / "Q8_0"
    folder.mkdir(parents=True)
    write_model(folder / "Test-R1-Q8_0.gguf", SPEC, dtype="q8_0", shards=4, fast_fill=True)
    return root


@pytest.fixture
def env(tmp_path, monkeypatch, hub_root):
    """A fresh dslocal home and Ollama store; yields a function that binds them to the doubles."""
    home = tmp_path / "home"
    store = tmp_path / "ollama-models"
    monkeypatch.setenv("DSLOCAL_HOME", str(home))
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    monkeypatch.setenv("DSLOCAL_SOURCE", "hf")
    for name in ("DSLOCAL_CONFIG", "HF_TOKEN", "DSLOCAL_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)

    def bind(hub_url: str, ollama_url: str = "http://127.0.0.1:9") -> None:
        monkeypatch.setenv("DSLOCAL_HF_ENDPOINT", hub_url)
        monkeypatch.setenv("OLLAMA_HOST", ollama_url.removeprefix("http://"))

    bind.home, bind.store = home, store  # type: ignore[attr-defined]
    return bind


def model_bytes(hub_root: Path) -> int:
    return sum(p.stat().st_size for p in (hub_root / REPO).rglob("*.gguf"))


def usage(*folders: Path) -> int:
    """Allocated bytes under ``folders``, each file once.

    Files may vanish or be renamed while we walk (a rename can show a file under its old and
    its new name in one walk), so files are counted by inode, not by name.
    """
    seen: dict[tuple[int, int], int] = {}
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else ():
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if path.is_file():
                seen[(st.st_dev, st.st_ino)] = st.st_blocks * 512
    return sum(seen.values())


class PeakMeter:
    """Disk used under some folders, measured at every progress event and by a fast sampler thread."""

    def __init__(self, *folders: Path) -> None:
        self.folders = folders
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __call__(self, _event=None) -> None:
        self.peak = max(self.peak, usage(*self.folders))

    def _sample(self) -> None:
        while not self._stop.is_set():
            self()
            time.sleep(0.001)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self()


# From v0.30 the server's rewrite holds the upload, llama-quantize's COPY output and NewLayer's hashing
# copy at once (protocol audit, finding 2): three times the model at the peak.
@pytest.mark.parametrize("version, bound", [("0.32.15", 3.05), ("0.5.7", 1.05)])
def test_pull_end_to_end_with_the_least_disk(env, hub_root, version, bound):
    with run_hub(hub_root) as hub, run_ollama(env.store, version) as ollama:
        env(hub.url, ollama.url)
        settings = load_settings()
        download_dir = settings.models_dir
        with PeakMeter(download_dir, env.store) as meter:
            result = pull(PullRequest(model=MODEL), settings, load_profile("cpu-only-64gb"), progress=meter)
        client = OllamaClient(ollama.url.removeprefix("http://"))
        names = [m["name"] for m in client.tags()]
        assert result.name in names
        store = Store(env.store)
        assert result.digest == store.model_layer(result.name)
        referenced = store.referenced()
        leftovers = [p.name for p in store.blobs.iterdir() if p.name.replace("-", ":", 1) not in referenced]
        assert leftovers == [], "no unreferenced copy is left behind by dslocal"
        assert not list(download_dir.rglob("*.gguf")), "the downloaded shards were consumed by the merge"
        assert result.smoke and result.smoke["tokens"]
        if version == "0.5.7":
            assert ollama.blob_uploads == 0, "the merge wrote straight into the store: create uploaded nothing"
    assert meter.peak <= bound * model_bytes(hub_root), (meter.peak, model_bytes(hub_root))


@pytest.mark.parametrize("version", ["0.32.15", "0.5.7"])
def test_a_server_on_all_interfaces_sharing_the_store_keeps_a_working_model(env, hub_root, version):
    """OLLAMA_HOST=0.0.0.0 (protocol audit, finding 4): the store is shared, decided by HEAD, not by the
    address; the registered blob must survive. (The double listens on loopback; the client connects
    to 0.0.0.0 the way Ollama's ConnectableHost does, on 127.0.0.1.)"""
    with run_hub(hub_root) as hub, run_ollama(env.store, version) as ollama:
        env(hub.url)
        monkey_host = f"0.0.0.0:{ollama.port}"
        import os

        os.environ["OLLAMA_HOST"] = monkey_host
        try:
            result = pull(PullRequest(model=MODEL), load_settings(), load_profile("cpu-only-64gb"))
            assert ollama.blob_uploads == 0, "the server reads this store: nothing uploaded"
            store = Store(env.store)
            digest = store.model_layer(result.name)
            assert store.blob_path(digest).exists(), "the model's blob is still there"
            chunks = list(OllamaClient(monkey_host).chat(result.name, [{"role": "user", "content": "hi"}],
                                                         options={"num_predict": 4}))
            assert chunks[-1]["done"]
        finally:
            os.environ.pop("OLLAMA_HOST", None)


def test_remote_store_uploads_and_leaves_no_local_copy(env, hub_root, tmp_path):
    with run_hub(hub_root) as hub, run_ollama(tmp_path / "server-store", "0.32.15") as ollama:
        env(hub.url, ollama.url)
        events = []
        result = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile("cpu-only-64gb"),
                      progress=events.append)
        assert ollama.blob_uploads == 1
        uploads = [e for e in events if e.task == "upload"]
        assert uploads and uploads[-1].done == uploads[-1].total == result.blob_bytes
        assert result.name in [m["name"] for m in OllamaClient(ollama.url).tags()]
    assert not list(Path(env.store).rglob("sha256-*")), "the local blob was removed after the upload"


def test_direct_writes_a_store_ollama_can_read(env, hub_root):
    with run_hub(hub_root) as hub:
        env(hub.url)  # no Ollama server at all
        with PeakMeter(load_settings().models_dir, env.store) as meter:
            result = pull(PullRequest(model=MODEL, direct=True), load_settings(), load_profile("cpu-only-64gb"),
                          progress=meter)
    assert meter.peak <= 1.05 * model_bytes(hub_root)
    with run_ollama(env.store, "0.32.15") as ollama:
        client = OllamaClient(ollama.url)
        assert result.name in [m["name"] for m in client.tags()]
        shown = client.show(result.name)
        assert "thinking" in shown["capabilities"]
        chunks = list(client.chat(result.name, [{"role": "user", "content": "hi"}], options={"num_predict": 4}))
        assert chunks[-1]["done"]


def test_dry_run_and_errors(env, hub_root, monkeypatch):
    with run_hub(hub_root) as hub:
        env(hub.url)
        dry = pull(PullRequest(model=MODEL, dry_run=True), load_settings(), load_profile("cpu-only-64gb"))
        assert dry.dry_run and dry.disk_plan["model_bytes"] == model_bytes(hub_root)
        with pytest.raises(OllamaError, match="no Ollama server") as info:
            pull(PullRequest(model=MODEL), load_settings(), load_profile("cpu-only-64gb"))
        assert "dslocal ollama start" in info.value.hint
        with run_ollama(env.store, "0.32.15") as ollama:
            env(hub.url, ollama.url)
            import dslocal.pipeline.disk
            import dslocal.pipeline as pipeline

            monkeypatch.setattr(pipeline.disk, "disk_free", lambda path: 1000)
            with pytest.raises(DiskError, match="needs .* you have 1000 B"):
                pull(PullRequest(model=MODEL), load_settings(), load_profile("cpu-only-64gb"))
            assert not list(load_settings().models_dir.rglob("*.gguf")), "nothing fetched before refusing"


CHILD = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
from dslocal.config import load_settings
from dslocal.hardware.presets import load_profile
from dslocal.pipeline import PullRequest, pull
target = sys.argv[1]

def sink(event):
    if event.task == target or (target == "merge-half" and event.task == "merge" and event.total and event.done * 2 >= event.total):
        os.kill(os.getpid(), signal.SIGKILL)

result = pull(PullRequest(model=sys.argv[3]), load_settings(), load_profile("cpu-only-64gb"), progress=sink)
print("DIGEST", result.digest)
"""


def test_sigkill_at_each_step_then_rerun_gives_the_same_digest(env, hub_root, tmp_path, monkeypatch):
    with run_hub(hub_root) as hub:
        reference = None
        for target in ("step:download", "step:verify", "merge-half", "step:create", "step:smoke", "none"):
            store = tmp_path / f"store-{target}"
            monkeypatch.setenv("OLLAMA_MODELS", str(store))
            monkeypatch.setenv("DSLOCAL_HOME", str(tmp_path / f"home-{target}"))
            with run_ollama(store, "0.32.15") as ollama:
                env(hub.url, ollama.url)
                argv = [sys.executable, "-c", CHILD, target, str(Path(__file__).parent), MODEL]
                first = subprocess.run(argv, capture_output=True, text=True, timeout=300)
                if target != "none":
                    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
                second = subprocess.run(argv[:3] + ["never"] + argv[4:], capture_output=True, text=True, timeout=300)
                assert second.returncode == 0, second.stderr[-2000:]
                digest = second.stdout.split("DIGEST")[-1].strip()
                if reference is None:
                    reference = digest
                assert digest == reference, target
                assert Store(store).model_layer(digest and OllamaClient(ollama.url).tags()[0]["name"]) == reference


def test_pull_a_local_folder_keeps_the_users_files(env, hub_root, tmp_path):
    folder = tmp_path / "usb"
    folder.mkdir()
    for shard in (hub_root / REPO / "Q8_0").iterdir():
        (folder / shard.name).write_bytes(shard.read_bytes())
    before = sorted(p.name for p in folder.iterdir())
    with run_ollama(env.store, "0.32.15") as ollama:
        env("http://127.0.0.1:9", ollama.url)  # no hub: an air-gapped install
        result = pull(PullRequest(model=str(folder), name="offline"), load_settings(), load_profile("cpu-only-64gb"))
        assert result.name == "offline:latest" and result.smoke
        assert "offline:latest" in [m["name"] for m in OllamaClient(ollama.url).tags()]
    assert sorted(p.name for p in folder.iterdir()) == before, "the user's own shards are never deleted"


def test_an_ollama_too_old_for_the_create_api(env, hub_root):
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.5.4") as ollama:
        env(hub.url, ollama.url)
        with pytest.raises(OllamaError, match="older than 0.5.5") as info:
            pull(PullRequest(model=MODEL), load_settings(), load_profile("cpu-only-64gb"))
        assert "--direct" in info.value.hint


def test_pull_by_catalog_id(env, tmp_path):
    from dslocal.catalog import load_catalog

    variant = load_catalog().get("r1-671b-iq1s")
    folder = tmp_path / "hub" / variant.hf_repo / variant.hf_folder
    folder.mkdir(parents=True)
    write_model(folder / "DeepSeek-R1-UD-IQ1_S.gguf", ModelSpec.deepseek2("legacy"), dtype="q8_0", shards=3)
    with run_hub(tmp_path / "hub") as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        result = pull(PullRequest(model="r1-671b-iq1s"), load_settings(), load_profile("2xh100-512gb"))
        assert result.name == "r1-671b-iq1s:latest"
        params = OllamaClient(ollama.url).show(result.name)["parameters"]
        assert "min_p" in params and "0.05" in params, "the variant's own sampling advice"
        assert result.plan["variant"] == "r1-671b-iq1s"


def test_a_second_pull_is_a_no_op_and_hostile_names_are_refused(env, hub_root):
    from dslocal.errors import UsageError

    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        first = pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile("cpu-only-64gb"))
        requests_before = hub.stats.file_requests
        notes = []
        again = pull(PullRequest(model=MODEL), load_settings(), load_profile("cpu-only-64gb"), notify=notes.append)
        assert again.digest == first.digest and again.resumed == ["all"]
        assert hub.stats.file_requests == requests_before and "already in Ollama" in notes[-1]
        for bad in ("hf:../../etc:Q8_0", "hf:a/b/c", "hf:noslash"):
            with pytest.raises(UsageError):
                pull(PullRequest(model=bad), load_settings(), load_profile("cpu-only-64gb"))


@pytest.mark.parametrize("name", ["../../x", "team.x/r1", "r1:", "x" * 81, "r1:cloud", "", " "])
def test_a_name_ollama_would_refuse_is_refused_before_any_request(env, hub_root, name, tmp_path):
    """Protocol audit finding 12 (and the newcomer trial's A1): refused before the hours of download.
    An empty --name (B15) is a usage error too, not 'already in Ollama'."""
    with run_hub(hub_root) as hub:
        env(hub.url)
        for direct in ("--direct", None):
            out = subprocess.run(
                [sys.executable, "-m", "dslocal", "pull", MODEL, "--name", name, *([direct] if direct else [])],
                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            assert out.returncode == 2, out.stderr
            assert "not a valid Ollama model name" in out.stderr or "source suffix" in out.stderr
            assert "Traceback" not in out.stderr and out.stderr.count("\n") <= 2
        assert hub.stats.listing_requests == 0 and hub.stats.resolve_requests == 0
    assert not (env.home / "data").exists() or not list((env.home / "data").rglob("*.gguf"))
    assert not Path(env.store, "manifests").exists()


def test_creates_per_tensor_progress_is_one_line_and_one_bar(env, hub_root):
    """Protocol audit finding 11: a thousand 'validating GGUF model' events become one line and one bar."""
    with run_hub(hub_root) as hub, run_ollama(env.store, "0.32.15") as ollama:
        env(hub.url, ollama.url)
        lines, events = [], []
        pull(PullRequest(model=MODEL, smoke_test=False), load_settings(), load_profile("cpu-only-64gb"),
             notify=lines.append, progress=events.append)
    validating = [line for line in lines if line == "ollama: validating GGUF model"]
    assert len(validating) == 1, lines
    bars = [e for e in events if e.task == "validate"]
    assert len(bars) > 10 and all(e.total == bars[0].total for e in bars)
    assert [e.done for e in bars] == sorted(e.done for e in bars)
    assert any(line.startswith("disk plan: needs") and "3x the model" in line for line in lines)
