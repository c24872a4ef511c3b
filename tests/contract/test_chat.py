"""Which template runs, thinking on and off through it, and what chat, show and ps report
(audit findings 8 and 16)."""

from __future__ import annotations

import requests
from contract.api import MT_TEMPLATE, R1_JINJA, chat, import_files, layer, manifest

from dslocal.ollama.modelfile import load_family
from dslocal.ollama.templates import GO, JINJA, expected_use, observed_use

DSLOCAL_R1 = load_family("deepseek-r1").template  # dslocal's TEMPLATE: tools with a round trip, thinking
OLD_R1 = (  # dslocal's TEMPLATE before it had tools: thinking only
    "{{- range $i, $_ := .Messages }}{{- $last := eq (len (slice $.Messages $i)) 1 }}"
    "{{- if eq .Role \"user\" }}<｜User｜>{{ .Content }}{{- else if eq .Role \"assistant\" }}<｜Assistant｜>"
    "{{- if and $.IsThinkSet (and $last .Thinking) -}}<think>\n{{ .Thinking }}\n</think>{{- end }}{{ .Content }}"
    "{{- end }}{{- if and $last (ne .Role \"assistant\") }}<｜Assistant｜>"
    "{{- if and $.IsThinkSet (not $.Think) -}}<think>\n\n</think>\n\n{{ end }}{{- end -}}{{- end -}}"
)
PLAIN = "{{ .System }}<｜User｜>{{ .Prompt }}<｜Assistant｜>"


def show(url: str, name: str) -> dict:
    r = requests.post(f"{url}/api/show", json={"model": name})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_template_with_a_tool_round_trip_is_kept_over_the_ggufs_jinja(ollama, models):
    server = ollama()
    import_files(server.url, "ours", models["r1-jinja"], template=DSLOCAL_R1)
    shown = show(server.url, "ours")
    assert shown["template"] == DSLOCAL_R1
    assert set(shown["capabilities"]) == {"completion", "tools", "thinking"}
    # dslocal's reading of the rules, and of the server's answer, agree with the server.
    assert observed_use(shown).runs == GO == expected_use(DSLOCAL_R1, R1_JINJA).runs


def test_a_template_without_tools_loses_to_a_jinja_that_has_them(ollama, models):
    server = ollama()
    import_files(server.url, "old", models["r1-jinja"], template=OLD_R1)
    shown = show(server.url, "old")
    gguf_jinja = shown["template"]
    assert gguf_jinja != OLD_R1 and "tool_calls" in gguf_jinja, "the native path: show reports the GGUF's jinja"
    assert set(shown["capabilities"]) == {"completion", "tools", "thinking"}
    assert observed_use(shown).runs == JINJA == expected_use(OLD_R1, R1_JINJA).runs
    # Setting OLLAMA_GO_TEMPLATE keeps the Go template whatever the GGUF says.
    server.restart(OLLAMA_GO_TEMPLATE="1")
    assert show(server.url, "old")["template"] == OLD_R1
    assert observed_use(show(server.url, "old")).runs == GO == expected_use(OLD_R1, R1_JINJA, "1").runs


def test_thinking_off_through_dslocals_template(ollama, models):
    server = ollama()
    import_files(server.url, "r1", models["r1-jinja"], template=DSLOCAL_R1)
    off = chat(server.url, "r1", "Why is the sky blue?", think=False)
    assert off.status_code == 200
    body = off.json()
    assert body["done"] is True and "thinking" not in body["message"], "the template closed the think block"
    on = chat(server.url, "r1", "Why is the sky blue?", think=True)
    assert on.status_code == 200 and on.json()["done"] is True
    default = chat(server.url, "r1", "Why is the sky blue?")
    assert default.json()["message"] == on.json()["message"], "think defaults on for a thinking model"


def test_thinking_cannot_be_turned_off_on_the_native_r1_path(ollama, models):
    """The R1 jinja opens <think> in the generation prompt and ignores enable_thinking: with Ollama
    on the native path, ``think: false`` still thinks. Why dslocal's TEMPLATE must be kept."""
    server = ollama()
    import_files(server.url, "native", models["r1-jinja"], template=OLD_R1)
    body = chat(server.url, "native", "Why is the sky blue?", think=False).json()
    assert body["done"] is True and body["message"].get("thinking"), body


def test_think_on_a_model_without_thinking_and_missing_models(ollama, models):
    server = ollama()
    import_files(server.url, "plain", models["single"], template=PLAIN)
    r = chat(server.url, "plain", "hi", think=True)
    assert (r.status_code, r.json()) == (400, {"error": '"plain" does not support thinking'})
    assert chat(server.url, "plain", "hi", think=False).status_code == 200
    r = chat(server.url, "ghost", "hi")
    assert (r.status_code, r.json()) == (404, {"error": "model 'ghost' not found"})
    r = chat(server.url, "plain", "hi", think="loud")
    assert r.status_code == 400 and "invalid think value" in r.json()["error"]


def test_ps_reports_the_runners_memory(ollama, models):
    server = ollama()
    import_files(server.url, "r1", models["single"], template=DSLOCAL_R1)
    assert chat(server.url, "r1", "hi").status_code == 200
    (entry,) = requests.get(f"{server.url}/api/ps").json()["models"]
    model_bytes = layer(manifest(server.models_dir, "r1"), "application/vnd.ollama.image.model")["size"]
    assert entry["name"] == "r1:latest"
    assert entry["size"] > model_bytes, "weights plus KV cache and compute buffers"
    assert 0 <= entry["size_vram"] <= entry["size"]
    assert entry["details"]["parameter_size"] and entry["details"]["family"] == "deepseek2"


def test_template_layer_is_the_text_sent(ollama, models):
    server = ollama()
    import_files(server.url, "r1", models["single"], template=DSLOCAL_R1)
    man = manifest(server.models_dir, "r1")
    text = (server.models_dir / "blobs" / layer(man, MT_TEMPLATE)["digest"].replace(":", "-")).read_text()
    assert text == DSLOCAL_R1
    order = [x["mediaType"].rsplit(".", 1)[-1] for x in man["layers"]]
    assert order[0] == "model" and order[1] == "template"
