"""HTTP and file helpers of the contract suite (plain functions over ``requests``)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import requests

MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_PARAMS = "application/vnd.ollama.image.params"
ZEROS = "0" * 19  # the digest Ollama puts on llama-quantize's progress events

# A chat template in the shape of DeepSeek-R1's (the distills' and R1-0528's): tool calls with a
# round trip (role 'tool' messages), and earlier reasoning stripped with content.split('</think>').
# dslocal's test data, written for these tests.
R1_JINJA = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{{ bos_token }}{% if tools %}{% for tool in tools %}{{ tool['function']['name'] }}\n{% endfor %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] }}"
    "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content }}"
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "{{ '<｜tool▁call▁begin｜>' + call['function']['name'] + '<｜tool▁sep｜>' }}{% endfor %}{% endif %}"
    "{{ '<｜end▁of▁sentence｜>' }}"
    "{% elif message['role'] == 'tool' %}{{ '<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)


def digest_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def upload(url: str, path: Path, digest: str | None = None) -> requests.Response:
    with open(path, "rb") as handle:
        return requests.post(f"{url}/api/blobs/{digest or digest_of(path)}", data=handle, timeout=120)


def create(url: str, body: dict[str, Any], timeout: float = 300) -> tuple[int, str, list[dict]]:
    """(HTTP status, Content-Type, the JSON lines) of an /api/create."""
    r = requests.post(f"{url}/api/create", json=body, timeout=timeout)
    kind = r.headers.get("Content-Type", "")
    if kind.startswith("application/x-ndjson"):
        return r.status_code, kind, [json.loads(line) for line in r.text.splitlines() if line]
    return r.status_code, kind, [r.json()]


def import_files(url: str, name: str, paths: list[Path], **extra: Any) -> list[dict]:
    for path in paths:
        assert upload(url, path).status_code in (200, 201)
    status, _, lines = create(url, {"model": name, "files": {p.name: digest_of(p) for p in paths}, **extra})
    assert status == 200 and lines[-1] == {"status": "success"}, lines
    return lines


def manifest_path(models_dir: Path, name: str, tag: str = "latest", namespace: str = "library") -> Path:
    return models_dir / "manifests" / "registry.ollama.ai" / namespace / name / tag


def manifest(models_dir: Path, name: str, tag: str = "latest") -> dict:
    return json.loads(manifest_path(models_dir, name, tag).read_text())


def layer(man: dict, media_type: str) -> dict:
    return next(x for x in man["layers"] if x["mediaType"] == media_type)


def blob_names(models_dir: Path) -> set[str]:
    return {p.name for p in (models_dir / "blobs").iterdir() if p.is_file()}


def chat(url: str, model: str, text: str, **extra: Any) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": False,
            "options": {"num_predict": 8}, **extra}
    return requests.post(f"{url}/api/chat", json=body, timeout=600)


def with_chat_template(src: Path, dst: Path, template: str) -> Path:
    """A copy of the GGUF ``src`` whose ``tokenizer.chat_template`` is ``template`` (gguf-py rewrites it)."""
    import gguf

    reader = gguf.GGUFReader(src)
    arch = str(reader.fields["general.architecture"].contents())
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name in ("general.architecture", "tokenizer.chat_template"):
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    writer.add_chat_template(template)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data)
    writer.close()
    return dst
