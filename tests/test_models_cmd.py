"""``dslocal pull`` (CLI), ``ls``, ``ps``, ``tune`` and ``rm`` against the Ollama double."""

from __future__ import annotations

import json
import re

from hubdouble import run_hub
from ollama_double import run_ollama
from test_pull import MODEL, hub_root  # noqa: F401 - the module-scoped fixture

from dslocal.ollama.client import OllamaClient
from dslocal.ollama.store import Store


def test_pull_cli_then_manage_the_model(cli, dslocal_home, hub_root, tmp_path):  # noqa: F811
    store = tmp_path / "models"
    with run_hub(hub_root) as hub, run_ollama(store, "0.32.15") as ollama:
        env = {"DSLOCAL_HF_ENDPOINT": hub.url, "OLLAMA_HOST": ollama.url.removeprefix("http://"),
               "OLLAMA_MODELS": str(store), "DSLOCAL_SOURCE": "hf"}
        pulled = cli("pull", MODEL, "--name", "r1test", "--hw", "cpu-only-64gb", "--json", env=env, timeout=300)
        assert pulled.returncode == 0, pulled.stderr
        data = json.loads(pulled.stdout)["data"]
        assert data["name"] == "r1test:latest" and data["digest"].startswith("sha256:")
        assert data["steps"][:2] == ["download", "verify"] and "smoke" in data["steps"]
        assert "disk plan: needs" in pulled.stderr

        listing = json.loads(cli("ls", "--json", env=env).stdout)["data"]["models"]
        entry = next(m for m in listing if m["name"] == "r1test:latest")
        assert entry["provenance"]["repo"] == "unsloth/Test-R1-GGUF" and entry["provenance"]["files"]
        assert entry["template"]["runs"] == "ollama", "dslocal's TEMPLATE is what runs"
        human = cli("ls", env=env).stdout.splitlines()
        assert human[0].split() == ["NAME", "SIZE", "TEMPLATE", "FROM"] and "ollama" in human[1]

        ps = json.loads(cli("ps", "--json", env=env).stdout)["data"]["models"]
        assert [m["name"] for m in ps] == ["r1test:latest"] and ps[0]["gpu_share"] == 0.0
        table = cli("ps", env=env).stdout.splitlines()
        assert table[0].split() == ["NAME", "MEMORY", "ON", "GPU", "CONTEXT"] and table[1].startswith("r1test:latest")

        blobs_before = sorted(p.name for p in Store(store).blobs.iterdir())
        tuned = cli("tune", "r1test", "--ctx", "2048", env=env)
        assert tuned.returncode == 0, tuned.stderr
        params = OllamaClient(ollama.url).show("r1test")["parameters"]
        assert re.search(r"^num_ctx\s+2048$", params, re.M) and re.search(r"^temperature\s+0.6$", params, re.M)
        assert len(re.findall(r"^stop\s", params, re.M)) == 4
        new_blobs = set(p.name for p in Store(store).blobs.iterdir()) - set(blobs_before)
        assert all(Store(store).blobs.joinpath(n).stat().st_size < 10_000 for n in new_blobs), "no weights copied"

        again = cli("pull", MODEL, "--name", "r1test", "--hw", "cpu-only-64gb", "--json", "--dry-run", env=env)
        assert json.loads(again.stdout)["data"]["dry_run"]

        removed = cli("rm", "r1test", env=env)
        assert removed.returncode == 0
        assert "r1test:latest" not in [m["name"] for m in OllamaClient(ollama.url).tags()]
        missing = cli("rm", "r1test", env=env)
        assert missing.returncode == 5
