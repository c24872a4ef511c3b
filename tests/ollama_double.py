"""A double of the Ollama HTTP server, on loopback, for dslocal's tests.

This is a test double, not Ollama. It keeps a real on-disk store laid out as
``ollama pull`` writes it and answers the routes dslocal uses the way Ollama does
(``/work/shared/reference/ollama-and-deepseek-facts.md`` sections 1-4 and
``ollama-observed.md``). ``version`` picks the behaviour: from 0.30.0 the server
groups split GGUFs and rewrites every imported GGUF; before it, neither.

Store (``MODELS`` = the folder given, like ``OLLAMA_MODELS``):
* blobs at ``MODELS/blobs/sha256-<hex>``, always written atomically (temp + rename);
* manifests at ``MODELS/manifests/<host>/<namespace>/<model>/<tag>`` (``registry.ollama.ai``,
  ``library`` and ``latest`` by default), Docker v2 JSON naming a config blob
  (``model_format``, ``model_family``, ``file_type`` ...) and layers
  ``application/vnd.ollama.image.{model,template,params,system,license,messages}``;
* at start, unless ``noprune``, blobs that no manifest references are deleted.

Routes:
* ``GET|HEAD /`` - "Ollama is running"; ``GET|HEAD /api/version`` - ``{"version"}``.
* ``HEAD /api/blobs/<digest>`` - 200 / 404, 400 "invalid digest format".
* ``POST /api/blobs/<digest>`` - 201 created, 200 when present (body not read), 400 on a digest
  mismatch (the data is discarded). The body (Content-Length or chunked) is streamed to disk in
  1 MiB pieces while hashing.
* ``POST /api/create`` - ``from`` / ``files`` / ``template`` / ``system`` / ``parameters`` / ``license`` /
  ``messages``; NDJSON progress or, with ``stream: false``, one object. From 0.30: split sets are grouped
  and every GGUF is rewritten the way llama-quantize COPY does (split.* keys dropped,
  ``general.quantization_version`` = 2, ``general.file_type`` moved last, tensors in llama.cpp load
  order, alignment padding) into a new blob; the uploaded blobs stay until the next prune.
* ``GET /api/tags``, ``POST /api/show``, ``DELETE /api/delete``, ``POST /api/copy``, ``GET /api/ps``.
* ``POST /api/chat`` and ``POST /api/generate`` - real greedy generation with llama.cpp
  (``llama_cpp.Llama``, ``n_ctx=512``) from a fixed DeepSeek prompt
  (``<｜User｜>...<｜Assistant｜>``; the Go TEMPLATE is not executed), thinking split at ``</think>``,
  load / unload with an empty prompt and ``keep_alive``.
* ``POST /api/pull`` - the double cannot pull: "pulling manifest" then an error line.
* anything else - 404 "404 page not found" (text/plain), as Gin answers.

Texts that are the double's own, not verified against a real server: the pre-0.30 shard refusal
"sharded GGUF files are not supported by this version of Ollama", the exact wording around the
0.30 shard errors (the quoted fragments are Ollama's), "blob sha256:... not found", and the errors
for features the double does not implement (quantize, adapters).

Counters for tests: ``requests_log`` [(method, path)], ``blob_uploads`` (201s), ``blob_exists``
(200s without reading), ``blob_bytes_read``, ``blob_mismatches``, ``creates``, ``rewrites``,
``loads``, ``unloads``, ``pruned`` (file names).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

DEFAULT_VERSION = "0.32.15"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

MT_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_MODEL = "application/vnd.ollama.image.model"
MT_TEMPLATE = "application/vnd.ollama.image.template"
MT_PARAMS = "application/vnd.ollama.image.params"
MT_SYSTEM = "application/vnd.ollama.image.system"
MT_LICENSE = "application/vnd.ollama.image.license"
MT_MESSAGES = "application/vnd.ollama.image.messages"
LAYER_ORDER = (MT_MODEL, MT_TEMPLATE, MT_PARAMS, MT_SYSTEM, MT_LICENSE, MT_MESSAGES)

DIGEST_RE = re.compile(r"^sha256[:-]([0-9a-fA-F]{64})$")
SHARD_RE = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")
PIECE = 1 << 20
GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
DEFAULT_ALIGNMENT = 32
SPLIT_KEYS = ("split.no", "split.count", "split.tensors.count")
HEAD_TENSORS = ("output.weight", "output_norm.weight", "token_embd.weight")

ERR_NO_SOURCE = "neither 'from' or 'files' was specified"
ERR_FILE_PATH = "file path must be relative"
ERR_MISSING_DIGEST = "missing digest"
ERR_INVALID_DIGEST = "invalid digest format"
ERR_INVALID_NAME = "invalid model name"
ERR_MAGIC = "invalid file magic"
ERR_SHARDS_OLD = "sharded GGUF files are not supported by this version of Ollama"
ERR_NO_BODY = "missing request body"
ERR_PULL = "pull model manifest: file does not exist"

# DeepSeek chat markers (U+FF5C bars, U+2581 spaces).
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
EOS = "<｜end▁of▁sentence｜>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
N_CTX = 512
DEFAULT_NUM_PREDICT = 16
DEFAULT_CONTEXT_LENGTH = 4096  # what a CPU-only (< 23 GiB VRAM) server of v0.15.5+ defaults to
DEFAULT_KEEP_ALIVE = 300.0


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_version(version: str) -> tuple[int, int, int]:
    numbers = [int(x) for x in re.findall(r"\d+", version.split("-", 1)[0])[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))  # type: ignore[return-value]


def go_json(obj: Any) -> str:
    """JSON as Go's encoding/json writes it: compact, UTF-8, with <, > and & escaped."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def now_local() -> str:
    return datetime.now().astimezone().isoformat()


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def human_number(n: int) -> str:
    """Ollama's format.HumanNumber."""
    if n >= 1_000_000_000:
        x = n / 1_000_000_000
        return f"{x:.0f}B" if x == int(x) else f"{x:.1f}B"
    if n >= 1_000_000:
        x = n / 1_000_000
        return f"{x:.0f}M" if x == int(x) else f"{x:.2f}M"
    if n >= 1_000:
        return f"{n / 1000:.0f}K"
    return str(n)


def file_type_name(value: int | None) -> str:
    if value is None:
        return "unknown"
    try:
        from gguf import LlamaFileType

        name = LlamaFileType(int(value)).name
    except (ImportError, ValueError):
        return "unknown"
    for prefix in ("MOSTLY_", "ALL_"):
        name = name.removeprefix(prefix)
    return name


def go_value(value: Any) -> str:
    """A parameter value as Go's %#v prints it (strings quoted, floats shortest)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else repr(value)
    return str(value)


def go_plain(value: Any) -> str:
    """A value as Go's %v prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value == int(value) else repr(value)
    return str(value)


def modelfile_quote(value: str) -> str:
    """parser.quote: quote only values with a newline or a leading/trailing space."""
    if "\n" in value or value.startswith(" ") or value.endswith(" "):
        return f'"""{value}"""' if '"' in value else f'"{value}"'
    return value


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_keep_alive(value: Any) -> float:
    """keep_alive as seconds (a number of seconds or a Go duration); negative means forever."""
    if value is None:
        return DEFAULT_KEEP_ALIVE
    if isinstance(value, bool):
        raise ApiError(400, "invalid keep_alive")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    parts = _DURATION.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ApiError(400, f'time: invalid duration "{text}"')
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# Names


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        if self.host == DEFAULT_HOST and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_HOST:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def path(self, models_dir: Path) -> Path:
        return models_dir / "manifests" / self.host / self.namespace / self.model / self.tag


_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_HOST = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,349}$")


def parse_name(text: Any) -> ModelName | None:
    """model.ParseName: [host/][namespace/]model[:tag]; None when invalid."""
    if not isinstance(text, str) or not text:
        return None
    head, slash, last = text.rpartition("/")
    tag = DEFAULT_TAG
    if ":" in last:
        last, tag = last.rsplit(":", 1)
    parts = (head.split("/") if slash else []) + [last]
    if len(parts) == 1:
        host, namespace, model = DEFAULT_HOST, DEFAULT_NAMESPACE, parts[0]
    elif len(parts) == 2:
        host, namespace, model = DEFAULT_HOST, parts[0], parts[1]
    elif len(parts) == 3:
        host, namespace, model = parts
    else:
        return None
    if not (_HOST.match(host) and _PART.match(namespace) and _PART.match(model) and _TAG.match(tag)):
        return None
    return ModelName(host, namespace, model, tag)


# ---------------------------------------------------------------------------------------------
# GGUF


def _kv_u32(key: str, value: int) -> bytes:
    raw = key.encode()
    return struct.pack("<Q", len(raw)) + raw + struct.pack("<II", 4, value)


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _reader(path: Path):  # -> gguf.GGUFReader
    from gguf import GGUFReader

    return GGUFReader(path)


def _field_value(field) -> Any:
    from gguf import GGUFValueType

    if not field.types or field.types[0] == GGUFValueType.ARRAY:
        return None
    value = field.contents()
    if hasattr(value, "item"):
        value = value.item()
    if field.types[0] == GGUFValueType.BOOL:
        value = bool(value)
    return value


def _split_field(reader, key: str) -> int:
    f = reader.fields.get(key)
    return int(_field_value(f)) if f is not None and _field_value(f) is not None else 0


def tensor_sort_key(name: str) -> tuple:
    """llama.cpp load order: output, output_norm, token_embd, blk.N.* (N numeric, names sorted), rest."""
    if name in HEAD_TENSORS:
        return (0, HEAD_TENSORS.index(name), 0, "")
    m = re.match(r"^blk\.(\d+)\.", name)
    if m:
        return (1, 0, int(m[1]), name)
    return (2, 0, 0, name)


def canonical_gguf(paths: list[Path], out, hasher) -> None:
    """Write ``paths`` (one file or the shards in split.no order) as llama-quantize COPY would.

    Metadata = the first file's KV minus split.*, general.quantization_version set to 2 (in place or
    appended), general.file_type moved to the end; the tensors of all files in llama.cpp load order,
    each padded with zeros to the alignment. Tensor data is copied from the memory maps in pieces.
    """
    readers = [_reader(p) for p in paths]
    first = readers[0]
    kvs: list[tuple[str, bytes]] = []
    for f in list(first.fields.values())[3:]:  # the first three are GGUF.version/tensor_count/kv_count
        if f.name in SPLIT_KEYS:
            continue
        size = sum(int(p.nbytes) for p in f.parts)
        kvs.append((f.name, bytes(first.data[f.offset : f.offset + size])))
    qv = _kv_u32("general.quantization_version", 2)
    names = [k for k, _ in kvs]
    if "general.quantization_version" in names:
        kvs[names.index("general.quantization_version")] = ("general.quantization_version", qv)
    else:
        kvs.append(("general.quantization_version", qv))
    names = [k for k, _ in kvs]
    if "general.file_type" in names:
        kvs.append(kvs.pop(names.index("general.file_type")))
    alignment = int(first.alignment) or DEFAULT_ALIGNMENT

    tensors = []
    seen: set[str] = set()
    for reader in readers:
        for t in reader.tensors:
            if t.name in seen:
                raise ApiError(400, f"duplicate tensor name {t.name!r}")
            seen.add(t.name)
            tensors.append((reader, t))
    tensors.sort(key=lambda rt: tensor_sort_key(rt[1].name))

    header = bytearray(GGUF_MAGIC)
    header += struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs))
    for _, raw in kvs:
        header += raw
    offset = 0
    for _, t in tensors:
        name = t.name.encode()
        dims = [int(d) for d in t.field.parts[3]]
        header += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(dims))
        header += struct.pack(f"<{len(dims)}Q", *dims)
        header += struct.pack("<IQ", int(t.field.parts[4][0]), offset)
        offset += _align(int(t.n_bytes), alignment)
    header += bytes(_align(len(header), alignment) - len(header))

    def emit(data) -> None:
        out.write(data)
        hasher.update(data)

    emit(bytes(header))
    for reader, t in tensors:
        start, n = int(t.data_offset), int(t.n_bytes)
        for pos in range(start, start + n, PIECE):
            emit(memoryview(reader.data[pos : min(pos + PIECE, start + n)]))
        pad = _align(n, alignment) - n
        if pad:
            emit(bytes(pad))
    del readers


# ---------------------------------------------------------------------------------------------
# The double


@dataclass
class _Loaded:
    name: str
    model_digest: str
    llm: Any
    expires_at: float  # epoch seconds; inf = forever
    context_length: int
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Model:
    name: ModelName
    manifest: dict
    digest: str  # hex of the manifest bytes
    path: Path

    def layer(self, media_type: str) -> dict | None:
        for layer in self.manifest.get("layers", []):
            if layer.get("mediaType") == media_type:
                return layer
        return None


class OllamaDouble:
    """The Ollama server double. Use :func:`run_ollama` or ``start()`` / ``stop()``."""

    def __init__(self, models_dir: Path, version: str = DEFAULT_VERSION, *, noprune: bool = False) -> None:
        self.models_dir = Path(models_dir)
        self.version = version
        self.version_tuple = parse_version(version)
        self.noprune = noprune
        self.url = ""
        self.host = ""
        self.port = 0
        self.requests_log: list[tuple[str, str]] = []
        self.blob_uploads = 0
        self.blob_exists = 0
        self.blob_mismatches = 0
        self.blob_bytes_read = 0
        self.creates = 0
        self.rewrites = 0
        self.loads = 0
        self.unloads = 0
        self.pruned: list[str] = []
        self.lock = threading.RLock()
        self._loaded: dict[str, _Loaded] = {}
        self._info_cache: dict[str, dict] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        (self.models_dir / "blobs").mkdir(parents=True, exist_ok=True)
        (self.models_dir / "manifests").mkdir(parents=True, exist_ok=True)

    @property
    def new_engine(self) -> bool:
        return self.version_tuple >= (0, 30, 0)

    # -- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> OllamaDouble:
        if not self.noprune:
            self.prune()
        server = ThreadingHTTPServer((host, port), _handler(self))
        server.daemon_threads = True
        self._server = server
        self.host, self.port = host, server.server_address[1]
        url_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{url_host}:{self.port}"
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            for entry in list(self._loaded.values()):
                self._close(entry)
            self._loaded.clear()

    def __enter__(self) -> OllamaDouble:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- store
    @property
    def blobs_dir(self) -> Path:
        return self.models_dir / "blobs"

    def blob_path(self, digest: str) -> Path:
        m = DIGEST_RE.match(digest)
        if not m:
            raise ApiError(400, ERR_INVALID_DIGEST)
        return self.blobs_dir / f"sha256-{m[1]}"

    def blob_files(self) -> list[Path]:
        return sorted(p for p in self.blobs_dir.glob("sha256-*") if p.is_file())

    def _tmp(self) -> Path:
        return self.blobs_dir / f".tmp-{uuid.uuid4().hex}"

    def write_blob(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` as a blob; returns ("sha256:<hex>", created)."""
        hexd = hashlib.sha256(data).hexdigest()
        target = self.blobs_dir / f"sha256-{hexd}"
        if target.exists():
            return f"sha256:{hexd}", False
        tmp = self._tmp()
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return f"sha256:{hexd}", True

    def manifests(self) -> list[_Model]:
        root = self.models_dir / "manifests"
        out = []
        for path in sorted(root.glob("*/*/*/*")):
            if not path.is_file():
                continue
            rel = path.relative_to(root).parts
            name = ModelName(*rel)
            try:
                raw = path.read_bytes()
                manifest = json.loads(raw)
            except (OSError, ValueError):
                continue
            out.append(_Model(name, manifest, hashlib.sha256(raw).hexdigest(), path))
        return out

    def get_model(self, text: Any) -> _Model | None:
        name = parse_name(text)
        if name is None:
            return None
        path = name.path(self.models_dir)
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
        except (OSError, ValueError):
            return None
        return _Model(name, manifest, hashlib.sha256(raw).hexdigest(), path)

    def write_manifest(self, name: ModelName, manifest: dict) -> None:
        path = name.path(self.models_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(go_json(manifest).encode())
        os.replace(tmp, path)

    def referenced(self) -> set[str]:
        refs = set()
        for model in self.manifests():
            for layer in [model.manifest.get("config") or {}, *model.manifest.get("layers", [])]:
                digest = layer.get("digest", "")
                if DIGEST_RE.match(digest):
                    refs.add(self.blob_path(digest).name)
        return refs

    def prune(self) -> list[str]:
        """Delete blobs no manifest references (and leftover temp files), as the server does at start."""
        with self.lock:
            refs = self.referenced()
            removed = []
            for path in sorted(self.blobs_dir.iterdir()):
                if path.is_file() and (path.name.startswith(".tmp-") or path.name not in refs):
                    path.unlink()
                    removed.append(path.name)
            self.pruned.extend(removed)
            root = self.models_dir / "manifests"
            for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
            return removed

    # -- model facts
    def gguf_info(self, digest: str) -> dict:
        """KV scalars, architecture, file type and parameter count of a GGUF blob (cached)."""
        if digest in self._info_cache:
            return self._info_cache[digest]
        reader = _reader(self.blob_path(digest))
        kv: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        for f in list(reader.fields.values())[3:]:
            value = _field_value(f)
            if value is None:
                try:
                    arrays[f.name] = [x.item() if hasattr(x, "item") else x for x in f.contents()]
                except Exception:  # noqa: BLE001 - nested arrays: leave them out
                    arrays[f.name] = None
            else:
                kv[f.name] = value
        params = sum(int(t.n_elements) for t in reader.tensors)
        arch = kv.get("general.architecture", "")
        kv["general.parameter_count"] = params
        info = {
            "kv": kv, "arrays": arrays, "arch": arch, "params": params,
            "file_type": kv.get("general.file_type"),
            "context_length": kv.get(f"{arch}.context_length"),
        }
        del reader
        self._info_cache[digest] = info
        return info

    def details(self, model: _Model) -> dict:
        layer = model.layer(MT_MODEL)
        info = self.gguf_info(layer["digest"]) if layer else {"arch": "", "params": 0, "file_type": None}
        return {
            "parent_model": "",
            "format": "gguf",
            "family": info["arch"],
            "families": [info["arch"]] if info["arch"] else None,
            "parameter_size": human_number(info["params"]),
            "quantization_level": file_type_name(info["file_type"]),
        }

    def _text_layer(self, model: _Model, media_type: str) -> str | None:
        layer = model.layer(media_type)
        if layer is None:
            return None
        return self.blob_path(layer["digest"]).read_text(encoding="utf-8")

    def params(self, model: _Model) -> dict:
        text = self._text_layer(model, MT_PARAMS)
        return json.loads(text) if text else {}

    def template(self, model: _Model) -> str:
        text = self._text_layer(model, MT_TEMPLATE)
        return "{{ .Prompt }}" if text is None else text

    def capabilities(self, model: _Model) -> list[str]:
        caps = ["completion"]
        template = self.template(model)
        if ".Tools" in template:
            caps.append("tools")
        i = template.find(".Thinking")
        if i >= 0 and "range" in template[:i]:
            caps.append("thinking")
        return caps

    # -- create
    def validate_create(self, req: dict) -> tuple[ModelName, dict[str, str]]:
        """The checks Ollama answers with HTTP 400 before streaming."""
        files = req.get("files")
        if files is not None and not isinstance(files, dict):
            raise ApiError(400, "files must be an object of file name to digest")
        files = files or {}
        for fname in files:
            if not _valid_path(fname):
                raise ApiError(400, ERR_FILE_PATH)
        name = parse_name(req.get("model") or req.get("name"))
        if name is None:
            raise ApiError(400, ERR_INVALID_NAME)
        if not req.get("from") and not files:
            raise ApiError(400, ERR_NO_SOURCE)
        for fname, digest in files.items():
            if not digest:
                raise ApiError(400, ERR_MISSING_DIGEST)
            m = DIGEST_RE.match(str(digest))
            if not m:
                raise ApiError(400, ERR_INVALID_DIGEST)
            if not self.blob_path(digest).is_file():
                raise ApiError(400, f"blob sha256:{m[1]} not found")
        return name, {f: "sha256:" + DIGEST_RE.match(str(d))[1] for f, d in files.items()}

    def create(self, req: dict, name: ModelName, files: dict[str, str]) -> Iterator[dict]:
        """The streamed part of /api/create; raises ApiError for an error line."""
        if req.get("quantize") or req.get("quantization"):
            raise ApiError(400, "quantize is not implemented by the Ollama test double")
        if req.get("adapters"):
            raise ApiError(400, "adapters are not implemented by the Ollama test double")
        components: dict[str, list[dict]] = {}
        created: set[str] = set()
        if files:
            ggufs = []
            for fname, digest in files.items():
                path = self.blob_path(digest)
                with open(path, "rb") as handle:
                    magic = handle.read(4)
                yield {"status": "parsing GGUF"}
                if magic != GGUF_MAGIC:
                    raise ApiError(400, ERR_MAGIC)
                ggufs.append((fname, digest, path))
            if not self.new_engine:
                if len(ggufs) > 1:
                    raise ApiError(400, ERR_SHARDS_OLD)
                digest = ggufs[0][1]
            else:
                ordered = self._group_shards(ggufs)
                yield {"status": "validating GGUF model"}
                digest, was_created = self._rewrite(ordered)
                if was_created:
                    created.add(digest)
            components[MT_MODEL] = [{"mediaType": MT_MODEL, "digest": digest,
                                     "size": self.blob_path(digest).stat().st_size}]
        else:
            base = self.get_model(req.get("from"))
            if base is None:
                raise ApiError(400, ERR_PULL)
            for layer in base.manifest.get("layers", []):
                components.setdefault(layer["mediaType"], []).append(dict(layer))

        def text_layer(media_type: str, data: bytes) -> None:
            digest, was_created = self.write_blob(data)
            if was_created:
                created.add(digest)
            components[media_type] = [{"mediaType": media_type, "digest": digest, "size": len(data)}]

        if req.get("template"):
            text_layer(MT_TEMPLATE, str(req["template"]).encode())
        if req.get("system"):
            text_layer(MT_SYSTEM, str(req["system"]).encode())
        if req.get("parameters"):
            text_layer(MT_PARAMS, go_json(dict(sorted(req["parameters"].items()))).encode())
        if req.get("license"):
            licenses = req["license"] if isinstance(req["license"], list) else [req["license"]]
            components[MT_LICENSE] = []
            for text in licenses:
                digest, was_created = self.write_blob(str(text).encode())
                if was_created:
                    created.add(digest)
                components[MT_LICENSE].append({"mediaType": MT_LICENSE, "digest": digest,
                                               "size": len(str(text).encode())})
        if req.get("messages"):
            text_layer(MT_MESSAGES, go_json(req["messages"]).encode())

        if MT_MODEL not in components:
            raise ApiError(400, "no model layer")
        layers: list[dict] = []
        for media_type in LAYER_ORDER:
            layers.extend(components.pop(media_type, []))
        for rest in components.values():
            layers.extend(rest)
        for layer in layers:
            word = "creating new" if layer["digest"] in created else "using existing"
            yield {"status": f"{word} layer {layer['digest']}"}

        model_layer = layers[0]
        info = self.gguf_info(model_layer["digest"])
        config = {
            "model_format": "gguf",
            "model_family": info["arch"],
            "model_families": [info["arch"]],
            "model_type": human_number(info["params"]),
            "file_type": file_type_name(info["file_type"]),
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer["digest"] for layer in layers]},
        }
        config_bytes = go_json(config).encode()
        config_digest, _ = self.write_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": [{"mediaType": x["mediaType"], "digest": x["digest"], "size": x["size"]} for x in layers],
        }
        yield {"status": "writing manifest"}
        with self.lock:
            self.write_manifest(name, manifest)
            self.creates += 1
        self._evict(name.display)  # a re-created model is reloaded on next use
        yield {"status": "success"}

    def _group_shards(self, ggufs: list[tuple[str, str, Path]]) -> list[Path]:
        """v0.30 grouping: the files of one split set in split.no order (or the single file)."""
        entries = []
        for fname, _digest, path in ggufs:
            reader = _reader(path)
            count, no = _split_field(reader, "split.count"), _split_field(reader, "split.no")
            del reader
            base = fname.rsplit("/", 1)[-1]
            m = SHARD_RE.match(base)
            if m is None and len(ggufs) > 1:
                raise ApiError(400, f'split GGUF file "{fname}" must use llama.cpp split filename pattern')
            if m is not None and int(m[3]) != max(count, 1):
                raise ApiError(400, f'split GGUF file "{fname}": filename count {int(m[3])} '
                                    f"does not match metadata count {max(count, 1)}")
            prefix = fname[: -len(m[0]) + len(m[1])] if m else fname
            entries.append((prefix, max(count, 1), no, path))
        prefixes = {e[0] for e in entries}
        if len(prefixes) > 1:
            raise ApiError(400, "files name more than one split GGUF set: " + ", ".join(sorted(prefixes)))
        prefix, expected = entries[0][0], entries[0][1]
        if len(entries) != expected:
            raise ApiError(400, f'split GGUF "{prefix}" has {len(entries)} shards, expected {expected}')
        by_no = {e[2]: e[3] for e in entries}
        for i in range(expected):
            if i not in by_no:
                raise ApiError(400, f'split GGUF "{prefix}" missing shard {i + 1}')
        return [by_no[i] for i in range(expected)]

    def _rewrite(self, paths: list[Path]) -> tuple[str, bool]:
        """Rewrite to a new blob; reuse an existing blob with the same digest."""
        tmp = self._tmp()
        hasher = hashlib.sha256()
        try:
            with open(tmp, "wb") as handle:
                canonical_gguf(paths, handle, hasher)
                handle.flush()
                os.fsync(handle.fileno())
            hexd = hasher.hexdigest()
            target = self.blobs_dir / f"sha256-{hexd}"
            with self.lock:
                self.rewrites += 1
                if target.exists():
                    tmp.unlink()
                    return f"sha256:{hexd}", False
                os.replace(tmp, target)
                return f"sha256:{hexd}", True
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- show / list
    def show(self, model: _Model, verbose: bool = False) -> dict:
        layer = model.layer(MT_MODEL)
        info = self.gguf_info(layer["digest"])
        template = self.template(model)
        system = self._text_layer(model, MT_SYSTEM) or ""
        params = self.params(model)
        lines = []
        for key in sorted(params):
            values = params[key] if isinstance(params[key], list) else [params[key]]
            lines.extend(f"{key:<30} {go_value(v)}" for v in values)
        licenses = [self.blob_path(x["digest"]).read_text(encoding="utf-8")
                    for x in model.manifest.get("layers", []) if x["mediaType"] == MT_LICENSE]
        messages_text = self._text_layer(model, MT_MESSAGES)
        messages = json.loads(messages_text) if messages_text else []
        mf = [
            '# Modelfile generated by "ollama show"',
            "# To build a new Modelfile based on this, replace FROM with:",
            f"# FROM {model.name.display}",
            "",
            f"FROM {self.blob_path(layer['digest'])}",
        ]
        if model.layer(MT_TEMPLATE):
            mf.append(f"TEMPLATE {modelfile_quote(template)}")
        if system:
            mf.append(f"SYSTEM {modelfile_quote(system)}")
        for key in sorted(params):
            values = params[key] if isinstance(params[key], list) else [params[key]]
            mf.extend(f"PARAMETER {key} {modelfile_quote(go_plain(v))}" for v in values)
        mf.extend(f"LICENSE {modelfile_quote(text)}" for text in licenses)
        mf.extend(f"MESSAGE {m.get('role')} {modelfile_quote(str(m.get('content', '')))}" for m in messages)
        model_info = dict(info["kv"])
        if verbose:
            model_info.update(info["arrays"])
        out: dict[str, Any] = {
            "modelfile": "\n".join(mf) + "\n",
            "parameters": "\n".join(lines),
            "template": template,
            "system": system,
            "details": self.details(model),
            "model_info": model_info,
            "capabilities": self.capabilities(model),
            "modified_at": _mtime(model.path),
        }
        if licenses:
            out["license"] = "\n".join(licenses)
        if messages:
            out["messages"] = messages
        return out

    def tags(self) -> list[dict]:
        out = []
        for model in self.manifests():
            if model.layer(MT_MODEL) is None:
                continue
            size = sum(int(x.get("size", 0)) for x in model.manifest.get("layers", []))
            size += int((model.manifest.get("config") or {}).get("size", 0))
            out.append({
                "name": model.name.display,
                "model": model.name.display,
                "modified_at": _mtime(model.path),
                "size": size,
                "digest": model.digest,
                "details": self.details(model),
                "_mtime": model.path.stat().st_mtime,
            })
        out.sort(key=lambda m: (-m["_mtime"], m["name"]))
        for entry in out:
            del entry["_mtime"]
        return out

    def delete(self, text: Any) -> bool:
        model = self.get_model(text)
        if model is None:
            return False
        self._evict(model.name.display)
        with self.lock:
            model.path.unlink()
            folder = model.path.parent
            root = self.models_dir / "manifests"
            while folder != root and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        return True

    def copy(self, source: Any, destination: Any) -> None:
        src = self.get_model(source)
        dst = parse_name(destination)
        if dst is None or parse_name(source) is None:
            raise ApiError(400, ERR_INVALID_NAME)
        if src is None:
            raise ApiError(404, f"model {json.dumps(source)} not found")
        with self.lock:
            self.write_manifest(dst, src.manifest)
        self._evict(dst.display)

    # -- running models
    def _close(self, entry: _Loaded) -> None:
        with contextlib.suppress(Exception):
            entry.llm.close()

    def _evict(self, display: str) -> bool:
        with self.lock:
            entry = self._loaded.pop(display, None)
        if entry is None:
            return False
        with entry.lock:
            self._close(entry)
        self.unloads += 1
        return True

    def _expire(self) -> None:
        now = time.time()
        with self.lock:
            stale = [k for k, e in self._loaded.items() if e.expires_at <= now]
        for key in stale:
            self._evict(key)

    def load(self, model: _Model, keep_alive: float, context_length: int) -> tuple[_Loaded, int]:
        """The loaded runner of ``model`` (loading it if needed) and the load time in ns."""
        self._expire()
        digest = model.layer(MT_MODEL)["digest"]
        display = model.name.display
        expires = float("inf") if keep_alive < 0 else time.time() + keep_alive
        with self.lock:
            entry = self._loaded.get(display)
            if entry is not None and entry.model_digest == digest:
                entry.expires_at = expires
                entry.context_length = context_length
                return entry, 0
        if entry is not None:
            self._evict(display)
        import llama_cpp

        started = time.perf_counter_ns()
        llm = llama_cpp.Llama(str(self.blob_path(digest)), n_ctx=N_CTX, verbose=False, n_threads=2)
        took = time.perf_counter_ns() - started
        entry = _Loaded(display, digest, llm, expires, context_length)
        with self.lock:
            old = self._loaded.pop(display, None)
            self._loaded[display] = entry
            self.loads += 1
        if old is not None:
            self._close(old)
        return entry, took

    def ps(self) -> list[dict]:
        self._expire()
        out = []
        with self.lock:
            entries = list(self._loaded.values())
        for entry in entries:
            model = self.get_model(entry.name)
            if model is None:
                continue
            if entry.expires_at == float("inf"):
                expires = (datetime.now().astimezone() + timedelta(days=365 * 290)).isoformat()
            else:
                expires = datetime.fromtimestamp(entry.expires_at).astimezone().isoformat()
            out.append({
                "name": entry.name,
                "model": entry.name,
                "size": self.blob_path(entry.model_digest).stat().st_size,
                "digest": model.digest,
                "details": self.details(model),
                "expires_at": expires,
                "size_vram": 0,
                "context_length": entry.context_length,
            })
        return out

    def run_model(self, entry: _Loaded, prompt: str, num_predict: int, stops: list[str]) -> Iterator[Any]:
        """Greedy generation. Yields text pieces, then a final dict of counts and durations."""
        llm = entry.llm
        with entry.lock:
            started = time.perf_counter_ns()
            tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
            if len(tokens) > N_CTX - 1:
                tokens = tokens[:1] + tokens[-(N_CTX - 2):]
            limit = N_CTX - len(tokens)
            if num_predict >= 0:
                limit = min(limit, num_predict)
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            eos = llm.token_eos()
            is_eog = getattr(getattr(llm, "_model", None), "token_is_eog", None)
            text = ""
            count = 0
            reason = "length"
            first_at = None
            if limit > 0:
                for token in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0,
                                          repeat_penalty=1.0, reset=True):
                    if first_at is None:
                        first_at = time.perf_counter_ns()
                    if token == eos or (is_eog is not None and is_eog(token)):
                        reason = "stop"
                        break
                    count += 1
                    piece = decoder.decode(llm.detokenize([token]))
                    hit = [s for s in stops if s and s in text + piece]
                    if hit:
                        cut = min((text + piece).find(s) for s in hit)
                        piece = (text + piece)[len(text):cut] if cut > len(text) else ""
                        if piece:
                            yield piece
                        reason = "stop"
                        break
                    text += piece
                    if piece:
                        yield piece
                    if count >= limit:
                        break
            tail = decoder.decode(b"", final=True)
            if tail and reason == "length":
                yield tail
            ended = time.perf_counter_ns()
            first_at = first_at or ended
            yield {
                "done_reason": reason,
                "prompt_eval_count": len(tokens),
                "prompt_eval_duration": first_at - started,
                "eval_count": count,
                "eval_duration": max(ended - first_at, 1),
            }


def _valid_path(name: Any) -> bool:
    """Go's fs.ValidPath: relative, slash-separated, no '.', '..' or empty elements."""
    if not isinstance(name, str):
        return False
    if name == ".":
        return True
    if not name or name.startswith("/") or "\\" in name:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _mtime(path: Path) -> str:
    return datetime.fromtimestamp(path.stat().st_mtime).astimezone().isoformat()


class _ThinkSplitter:
    """Splits streamed text into thinking (before ``</think>``, after an optional ``<think>``) and content."""

    def __init__(self, enabled: bool) -> None:
        self.state = "start" if enabled else "content"
        self.buf = ""

    def feed(self, text: str) -> tuple[str, str]:
        if self.state == "content":
            return "", text
        self.buf += text
        thinking = content = ""
        while True:
            if self.state == "start":
                s = self.buf.lstrip()
                if not s:
                    return thinking, content
                if s.startswith(THINK_OPEN):
                    self.buf, self.state = s[len(THINK_OPEN):], "think_ws"
                    continue
                if THINK_OPEN.startswith(s):
                    return thinking, content
                self.buf, self.state = s, "thinking"
                continue
            if self.state == "think_ws":
                self.buf = self.buf.lstrip()
                if not self.buf:
                    return thinking, content
                self.state = "thinking"
                continue
            if self.state == "thinking":
                i = self.buf.find(THINK_CLOSE)
                if i >= 0:
                    thinking += self.buf[:i]
                    self.buf, self.state = self.buf[i + len(THINK_CLOSE):], "after"
                    continue
                keep = 0
                for n in range(min(len(self.buf), len(THINK_CLOSE) - 1), 0, -1):
                    if THINK_CLOSE.startswith(self.buf[-n:]):
                        keep = n
                        break
                thinking += self.buf[: len(self.buf) - keep]
                self.buf = self.buf[len(self.buf) - keep:]
                return thinking, content
            if self.state == "after":
                s = self.buf.lstrip()
                self.buf = ""
                if s:
                    self.state = "content"
                    content += s
                return thinking, content
            return thinking, content  # content: unreachable

    def flush(self) -> tuple[str, str]:
        rest, self.buf = self.buf, ""
        if self.state in ("start", "think_ws", "thinking"):
            return rest, ""
        return "", rest.lstrip() if self.state == "after" else rest


# ---------------------------------------------------------------------------------------------
# HTTP


def _handler(ollama: OllamaDouble) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "ollama-double"
        sys_version = ""

        def log_message(self, *args: object) -> None:
            pass

        # -- request bodies
        def setup(self) -> None:
            super().setup()
            self._body_left: int | None = 0
            self._chunked = False
            self._body_done = True

        def _begin_body(self) -> None:
            self._chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
            length = self.headers.get("Content-Length")
            self._body_left = None if self._chunked else int(length or 0)
            self._body_done = not self._chunked and not self._body_left

        def _iter_body(self) -> Iterator[bytes]:
            """The request body in pieces of at most 1 MiB."""
            if self._body_done:
                return
            if not self._chunked:
                while self._body_left:
                    data = self.rfile.read(min(PIECE, self._body_left))
                    if not data:
                        raise ConnectionError("request body ended early")
                    self._body_left -= len(data)
                    yield data
                self._body_done = True
                return
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    self._body_done = True
                    return
                while size:
                    data = self.rfile.read(min(PIECE, size))
                    if not data:
                        raise ConnectionError("request body ended early")
                    size -= len(data)
                    yield data
                self.rfile.readline(3)

        def _read_json(self) -> dict:
            raw = b"".join(self._iter_body())
            if not raw.strip():
                raise ApiError(400, ERR_NO_BODY)
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise ApiError(400, f"invalid character in request body: {exc}") from None
            if not isinstance(body, dict):
                raise ApiError(400, "json: cannot unmarshal non-object into Go value")
            return body

        def _linger(self) -> None:
            """After answering without reading the body: half-close, then discard what the client sends."""
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_WR)
                self.connection.settimeout(1.0)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    if not self.connection.recv(PIECE):
                        break
            except OSError:
                pass

        # -- responses
        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Date", self.date_time_string())
            if not self._body_done:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, go_json(obj).encode(), "application/json; charset=utf-8")

        def _error(self, status: int, message: str) -> None:
            self._json(status, {"error": message})

        def _empty(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            if not self._body_done:
                self.send_header("Connection", "close")
            self.end_headers()

        def _not_found(self) -> None:
            self._send(404, b"404 page not found", "text/plain")

        def _stream_start(self) -> None:
            self._streaming = True
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _stream_line(self, obj: Any) -> None:
            data = (go_json(obj) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _stream_end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        # -- dispatch
        def _dispatch(self) -> None:
            path = unquote(urlsplit(self.path).path)
            method = self.command
            with ollama.lock:
                ollama.requests_log.append((method, path))
            self._begin_body()
            self._streaming = False
            try:
                self._route(method, path)
            except ApiError as exc:
                self._error(exc.status, exc.message)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            except Exception as exc:  # noqa: BLE001 - a bug in the double: answer 500, keep serving
                if self._streaming:
                    self.close_connection = True
                    return
                self._error(500, f"{type(exc).__name__}: {exc}")
            if not self._body_done:
                self._linger()

        def _route(self, method: str, path: str) -> None:
            if path == "/" and method in ("GET", "HEAD"):
                return self._send(200, b"Ollama is running", "text/plain; charset=utf-8")
            if path == "/api/version" and method in ("GET", "HEAD"):
                return self._json(200, {"version": ollama.version})
            if path.startswith("/api/blobs/") and method in ("HEAD", "POST"):
                return self._blob(method, path[len("/api/blobs/"):])
            routes = {
                ("POST", "/api/create"): self._create,
                ("GET", "/api/tags"): self._tags,
                ("HEAD", "/api/tags"): self._tags,
                ("POST", "/api/show"): self._show,
                ("DELETE", "/api/delete"): self._delete,
                ("POST", "/api/copy"): self._copy,
                ("POST", "/api/chat"): self._chat,
                ("POST", "/api/generate"): self._generate,
                ("GET", "/api/ps"): self._ps,
                ("POST", "/api/pull"): self._pull,
            }
            handler = routes.get((method, path))
            if handler is None:
                return self._not_found()
            return handler()

        # -- blobs
        def _blob(self, method: str, digest: str) -> None:
            m = DIGEST_RE.match(digest)
            if not m:
                return self._error(400, ERR_INVALID_DIGEST)
            target = ollama.blobs_dir / f"sha256-{m[1]}"
            if method == "HEAD":
                if target.is_file():
                    return self._empty(200)
                return self._error(404, f"blob {json.dumps(digest)} not found")
            if target.is_file():
                with ollama.lock:
                    ollama.blob_exists += 1
                return self._empty(200)
            expected = f"sha256:{m[1]}"
            tmp = ollama._tmp()
            hasher = hashlib.sha256()
            try:
                with open(tmp, "wb") as handle:
                    for piece in self._iter_body():
                        handle.write(piece)
                        hasher.update(piece)
                        with ollama.lock:
                            ollama.blob_bytes_read += len(piece)
                    handle.flush()
                    os.fsync(handle.fileno())
                got = f"sha256:{hasher.hexdigest()}"
                if got != expected:
                    tmp.unlink()
                    with ollama.lock:
                        ollama.blob_mismatches += 1
                    return self._error(400, f"digest mismatch, expected {json.dumps(expected)}, got {json.dumps(got)}")
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            with ollama.lock:
                ollama.blob_uploads += 1
            return self._empty(201)

        # -- create
        def _create(self) -> None:
            req = self._read_json()
            name, files = ollama.validate_create(req)
            events = ollama.create(req, name, files)
            if req.get("stream", True) is False:
                last: dict = {}
                try:
                    for event in events:
                        last = event
                except ApiError as exc:
                    return self._error(exc.status, exc.message)
                except Exception as exc:  # noqa: BLE001
                    return self._error(500, str(exc))
                return self._json(200, last)
            self._stream_start()
            try:
                for event in events:
                    self._stream_line(event)
            except ApiError as exc:
                self._stream_line({"error": exc.message})
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001
                self._stream_line({"error": str(exc)})
            self._stream_end()

        # -- listing
        def _tags(self) -> None:
            self._json(200, {"models": ollama.tags()})

        def _ps(self) -> None:
            self._json(200, {"models": ollama.ps()})

        def _show(self) -> None:
            req = self._read_json()
            text = req.get("model") or req.get("name")
            model = ollama.get_model(text)
            if model is None or model.layer(MT_MODEL) is None:
                return self._error(404, f"model '{text}' not found")
            self._json(200, ollama.show(model, bool(req.get("verbose"))))

        def _delete(self) -> None:
            req = self._read_json()
            text = req.get("model") or req.get("name")
            if parse_name(text) is None:
                return self._error(400, ERR_INVALID_NAME)
            if not ollama.delete(text):
                return self._error(404, f"model '{text}' not found")
            self._empty(200)

        def _copy(self) -> None:
            req = self._read_json()
            ollama.copy(req.get("source"), req.get("destination"))
            self._empty(200)

        def _pull(self) -> None:
            req = self._read_json()
            if parse_name(req.get("model") or req.get("name")) is None:
                return self._error(400, ERR_INVALID_NAME)
            if req.get("stream", True) is False:
                return self._error(500, ERR_PULL)
            self._stream_start()
            self._stream_line({"status": "pulling manifest"})
            self._stream_line({"error": ERR_PULL})
            self._stream_end()

        # -- generation
        def _prepare(self, req: dict) -> tuple[_Model, dict, bool]:
            text = req.get("model")
            if not text:
                raise ApiError(400, "model is required")
            model = ollama.get_model(text)
            if model is None or model.layer(MT_MODEL) is None:
                raise ApiError(404, f"model {json.dumps(text)} not found, try pulling it first")
            options = {**ollama.params(model), **(req.get("options") or {})}
            capable = "thinking" in ollama.capabilities(model)
            think = req.get("think")
            if think not in (None, False) and not capable:
                raise ApiError(400, f"{json.dumps(text)} does not support thinking")
            if think is None:
                thinking = capable and ollama.version_tuple >= (0, 12, 4)
            else:
                thinking = think is not False
            return model, options, thinking

        def _chat(self) -> None:
            req = self._read_json()
            model, options, thinking = self._prepare(req)
            messages = req.get("messages") or []
            if not messages:
                return self._load_or_unload(req, model, options, chat=True)
            system = ollama._text_layer(model, MT_SYSTEM) or ""
            prompt = "" if any(m.get("role") == "system" for m in messages) else system
            for i, message in enumerate(messages):
                role, content = message.get("role"), str(message.get("content") or "")
                last = i == len(messages) - 1
                if role == "system":
                    prompt += content
                elif role == "assistant":
                    prompt += ASSISTANT + content + ("" if last else EOS)
                else:
                    prompt += USER + content
            if messages[-1].get("role") != "assistant":
                prompt += ASSISTANT
                if req.get("think") is False and "thinking" in ollama.capabilities(model):
                    prompt += "<think>\n\n</think>\n\n"
            self._run(req, model, options, thinking, prompt, chat=True)

        def _generate(self) -> None:
            req = self._read_json()
            model, options, thinking = self._prepare(req)
            if not req.get("prompt"):
                return self._load_or_unload(req, model, options, chat=False)
            if req.get("raw"):
                prompt = str(req["prompt"])
            else:
                system = req.get("system") or ollama._text_layer(model, MT_SYSTEM) or ""
                prompt = system + USER + str(req["prompt"]) + ASSISTANT
            self._run(req, model, options, thinking, prompt, chat=False)

        def _context_length(self, options: dict) -> int:
            try:
                return int(options.get("num_ctx") or DEFAULT_CONTEXT_LENGTH)
            except (TypeError, ValueError):
                return DEFAULT_CONTEXT_LENGTH

        def _load_or_unload(self, req: dict, model: _Model, options: dict, chat: bool) -> None:
            keep_alive = parse_keep_alive(req.get("keep_alive"))
            started = time.perf_counter_ns()
            if keep_alive == 0:
                ollama._evict(model.name.display)
                reason = "unload"
            else:
                ollama.load(model, keep_alive, self._context_length(options))
                reason = "load"
            body: dict[str, Any] = {"model": req.get("model"), "created_at": now_utc()}
            if chat:
                body["message"] = {"role": "assistant", "content": ""}
            else:
                body["response"] = ""
            body.update({"done": True, "done_reason": reason})
            if reason == "load":
                body["total_duration"] = time.perf_counter_ns() - started
            self._json(200, body)

        def _run(self, req: dict, model: _Model, options: dict, thinking: bool, prompt: str, chat: bool) -> None:
            keep_alive = parse_keep_alive(req.get("keep_alive"))
            started = time.perf_counter_ns()
            entry, load_ns = ollama.load(model, keep_alive, self._context_length(options))
            num_predict = options.get("num_predict")
            num_predict = DEFAULT_NUM_PREDICT if num_predict is None else int(num_predict)
            stops = options.get("stop") or []
            stops = [stops] if isinstance(stops, str) else list(stops)
            splitter = _ThinkSplitter(thinking)
            stream = req.get("stream", True) is not False
            name = req.get("model")
            all_thinking, all_content = [], []

            def chunk(thinking_text: str, content: str, final: dict | None = None) -> dict:
                body: dict[str, Any] = {"model": name, "created_at": now_utc()}
                if chat:
                    message: dict[str, Any] = {"role": "assistant", "content": content}
                    if thinking_text:
                        message["thinking"] = thinking_text
                    body["message"] = message
                else:
                    body["response"] = content
                    if thinking_text:
                        body["thinking"] = thinking_text
                if final is None:
                    body["done"] = False
                else:
                    body["done"] = True
                    body["done_reason"] = final["done_reason"]
                    body["total_duration"] = time.perf_counter_ns() - started
                    body["load_duration"] = max(load_ns, 1)
                    for key in ("prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration"):
                        body[key] = final[key]
                return body

            if stream:
                self._stream_start()
            final: dict = {}
            try:
                for item in ollama.run_model(entry, prompt, num_predict, stops):
                    if isinstance(item, dict):
                        final = item
                        break
                    t, c = splitter.feed(item)
                    all_thinking.append(t)
                    all_content.append(c)
                    if stream and (t or c):
                        self._stream_line(chunk(t, c))
                t, c = splitter.flush()
                all_thinking.append(t)
                all_content.append(c)
                if stream and (t or c):
                    self._stream_line(chunk(t, c))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001
                if not stream:
                    return self._error(500, str(exc))
                self._stream_line({"error": str(exc)})
                return self._stream_end()
            if keep_alive == 0:
                ollama._evict(model.name.display)
            if stream:
                self._stream_line(chunk("", "", final))
                return self._stream_end()
            self._json(200, chunk("".join(all_thinking), "".join(all_content), final))

        do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _dispatch

    return Handler


@contextmanager
def run_ollama(
    models_dir: Path,
    version: str = DEFAULT_VERSION,
    host: str = "127.0.0.1",
    port: int = 0,
    noprune: bool = False,
) -> Iterator[OllamaDouble]:
    """Start the double on ``host:port`` (port 0 picks a free one) and stop it afterwards."""
    double = OllamaDouble(models_dir, version, noprune=noprune)
    double.start(host, port)
    try:
        yield double
    finally:
        double.stop()


def serve_forever(
    models_dir: Path,
    version: str = DEFAULT_VERSION,
    host: str = "127.0.0.1",
    port: int = 11434,
    *,
    noprune: bool = False,
) -> int:
    """Serve until SIGTERM/SIGINT (exit status 0), as ``ollama serve`` does; 1 when the port is taken."""
    double = OllamaDouble(models_dir, version, noprune=noprune)
    try:
        double.start(host, port)
    except OSError as exc:
        reason = "bind: address already in use" if exc.errno == errno.EADDRINUSE else f"bind: {exc.strerror}"
        print(f"Error: listen tcp {host}:{port}: {reason}", file=sys.stderr, flush=True)
        return 1

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    if double.pruned:
        print(f'time={stamp} level=INFO source=images.go:1089 msg="total unused blobs removed: '
              f'{len(double.pruned)}"', file=sys.stderr)
    print(f'time={stamp} level=INFO source=routes.go:1331 msg="Listening on {host}:{double.port} '
          f'(version {version})"', file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        double.stop()
    return 0
