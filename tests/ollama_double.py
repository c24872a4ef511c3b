"""A double of the Ollama HTTP server, on loopback, for dslocal's tests.

This is a test double, not Ollama. It follows Ollama v0.32.15's source (server/create.go,
routes.go, images.go, manifest/*, types/model/name.go, template/template.go,
thinking/template.go; shared/reference/protocol-audit-2026-12.md), errors included, and where
the real server runs a llama.cpp or Go piece it runs that piece: llama.cpp's own quantizer for
the import rewrite (``tests/llamacpp_copy.py``), Go's own ``text/template`` for TEMPLATEs
(``tests/gotemplate``), llama.cpp (llama-cpp-python) for generation. ``version`` picks the
behaviour: from 0.30.0 the server groups split GGUFs and rewrites every imported GGUF; before
it, neither. The scenarios every server must pass are in ``tests/contract/``.

Store (``MODELS`` = the folder given, like ``OLLAMA_MODELS``):
* blobs at ``MODELS/blobs/sha256-<hex>``, written as manifest.NewLayer does (a ``sha256-<digits>``
  temp while hashing, then a rename); manifests at ``MODELS/manifests/<host>/<ns>/<model>/<tag>``
  in Go's JSON encoding, with a ConfigV2 config (no rootfs) and layers in create's order;
* at start, unless ``noprune``, PruneLayers: files older than an hour that are not digests or that
  no manifest of any host references are deleted; a corrupt manifest skips the prune.

Routes and their errors:
* ``GET|HEAD /``, ``/api/version``; unknown routes "404 page not found" (text/plain).
* ``HEAD /api/blobs/<digest>`` 200 / 404 ``blob "<digest>" not found`` / 400 "invalid digest format";
  ``POST`` 201, 200 when present (body not read), and on a digest mismatch 400 with the data kept
  under its real digest (the path digest is compared literally).
* ``POST /api/create``: file paths and empty digests checked before streaming (HTTP 400), then
  "invalid model name"; everything else after ``parsing GGUF`` as NDJSON error lines under 200
  (open ...: no such file or directory, not in GGUF format, split GGUF ...). From 0.30 the COPY
  rewrite writes ``blobs/COPY<digits>`` with llama.cpp's quantizer, reports one ``validating GGUF
  model`` event per tensor (sent once the copy is done), ``verifying conversion``, then copies it
  into the store as NewLayer does: three copies at the peak. Re-creating a name removes the old
  version's unreferenced layers (unless noprune); ``from`` layers are touched and get ``from``.
* ``GET /api/tags``, ``POST /api/show`` (details from the config; capabilities and ``template`` as
  GetModel decides them, the GGUF's jinja preferred when it can do more than the TEMPLATE),
  ``DELETE /api/delete`` (unreferenced blobs go at once), ``POST /api/copy``, ``GET /api/ps`` (sizes
  from llama.cpp's own buffer log; CPU only, so size_vram 0).
* ``POST /api/chat`` and ``/api/generate``: names matched case-insensitively, ``model 'X' not found``,
  ``think`` defaulting on for thinking models and refused for others; the prompt is the Go
  TEMPLATE rendered by Go (thinking split with the tags InferTags finds) or, on the native path,
  the GGUF's jinja rendered by jinja2 (llama-server uses minja) with ``enable_thinking``; real
  greedy generation; load / unload with an empty prompt and ``keep_alive``.
* ``POST /api/pull``: the double cannot pull: "pulling manifest" then an error line.

OpenAI compatibility (routes.go registers it; middleware/openai.go converts, openai/openai.go holds
the types and converters), run through the ``/api/chat`` handler above, as the middleware does:
* ``POST /v1/chat/completions`` (ChatMiddleware): the body decoded as gin's ShouldBindJSON decodes
  it into openai.ChatCompletionRequest, with Go's encoding/json texts ("EOF", "unexpected EOF",
  the scanner's ``invalid character 'x' ...``, ``json: cannot unmarshal T into Go struct field
  S.path of type G``; keys matched case-insensitively; unknown fields ignored, among them
  ``max_completion_tokens``, which this version does not read); no messages is 400 "[] is too
  short - 'messages'". Then FromChatRequest: content a string, parts (text, image_url as base64
  data, input_audio; one message per part) or absent with tool calls; ``reasoning`` becomes
  ``thinking``; options temperature and top_p (1.0 when absent), max_tokens -> num_predict, stop
  (a string, or the strings of a list), seed, frequency_penalty, presence_penalty; response_format
  -> format; ``reasoning.effort`` (read before ``reasoning_effort``) -> ``think`` by
  thinkFromReasoningEffort: none -> false, minimal -> "low", low/medium/high/max as they are,
  xhigh/ultra -> "max", "" the model's default, anything else 400 ``invalid reasoning value: "x"
  (must be ...)``. Middleware errors are written by gin (no newline); the handler's (``model 'x'
  not found`` 404, ``"x" does not support thinking`` 400, ...) by ChatWriter.writeError; both as
  ``{"error": {"message", "type", "param": null, "code": null}}``, type invalid_request_error for
  400, not_found_error for 404, api_error otherwise (NewError).
  Answers (ChatWriter): ``stream`` defaults to false; non-streamed a chat.completion
  (ToChatCompletion: ``message.reasoning``, finish_reason, usage); streamed (the v0.32.6+ format,
  #17485) ``data: <chunk>\\n\\n`` events of text/event-stream: ``role`` on the first chunk only,
  ``content`` always written (""), ``reasoning`` in the delta, a response holding both reasoning
  and content split in two chunks (ToStreamChunks), no chunk for the empty done trailer, the
  finish_reason on a chunk of its own with ``delta {}`` (FinishChunk), with
  ``stream_options.include_usage`` a usage chunk with ``choices []``, then ``data: [DONE]``; one id
  ``chatcmpl-<rand.Intn(999)>`` and one ``created`` (the first response's) for the stream,
  system_fingerprint ``fp_ollama``; usage prompt/completion/total_tokens (ToUsage).
* ``GET /v1/models`` (ListMiddleware: ToListCompletion of /api/tags; ``data`` null when empty) and
  ``GET /v1/models/:model`` (RetrieveMiddleware: ToModel of /api/show; its errors as above).
Not modelled there: the sampling options, format and logprobs have no effect (generation is greedy
and unconstrained, as on /api/chat); the cloud passthrough, zstd bodies, ``_debug_render_only``,
/v1/completions, /v1/embeddings, /v1/responses, /v1/messages, /v1/audio/transcriptions.

The double's own texts, for what it does not implement: quantize, adapters, cloud models.
Not modelled: the template index that autodetects a Go template for a GGUF ("using autodetected
template ..."), the per-tensor events' timing.

Counters for tests of the double itself: ``requests_log`` [(method, path)], ``blob_uploads``
(201s), ``blob_exists`` (200s without reading), ``blob_bytes_read``, ``blob_mismatches``,
``creates``, ``rewrites``, ``loads``, ``unloads``, ``pruned`` (file names), ``prune_skipped``.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import tempfile
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
PRUNE_GRACE_SECONDS = 3600.0  # images.go layerPruneGracePeriod
SHARD_RE = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.gguf$")
PIECE = 1 << 20
GGUF_MAGIC = b"GGUF"

ERR_NO_SOURCE = "neither 'from' or 'files' was specified"
ERR_FILE_PATH = "file path must be relative"
ERR_INVALID_DIGEST = "invalid digest format"
ERR_INVALID_NAME = "invalid model name"
ERR_SHARDS_OLD = "sharded GGUF files are not supported by this version of Ollama"
ERR_NO_BODY = "missing request body"
ERR_PULL = "pull model manifest: file does not exist"

# DeepSeek chat markers (U+FF5C bars, U+2581 spaces).
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
N_CTX = 512
DEFAULT_NUM_PREDICT = 16
DEFAULT_CONTEXT_LENGTH = 4096  # what a CPU-only (< 23 GiB VRAM) server of v0.15.5+ defaults to
DEFAULT_KEEP_ALIVE = 300.0


class ApiError(Exception):
    """An error answer. ``status`` None: no status attached (HTTP 500 when it is the first message)."""

    def __init__(self, status: int | None, message: str) -> None:
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


MISSING = "!MISSING!"
_NAME_LIMITS = (350, 80, 80, 80)  # host, namespace, model, tag (types/model/name.go isValidLen)


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @property
    def display(self) -> str:
        """DisplayShortest: the default host and namespace are left out (compared case-insensitively)."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def valid(self) -> bool:
        return all(_valid_part(kind, part) for kind, part in enumerate(self.parts))

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return (self.host, self.namespace, self.model, self.tag)

    def path(self, models_dir: Path) -> Path:
        return models_dir / "manifests" / self.host / self.namespace / self.model / self.tag


def _valid_part(kind: int, text: str) -> bool:
    """isValidPart: a letter, digit or '_' first; then also '-', '.' (not in a namespace), ':' (host only)."""
    raw = text.encode("utf-8")
    if not 1 <= len(raw) <= _NAME_LIMITS[kind]:
        return False
    for i, byte in enumerate(raw):
        char = chr(byte)
        if char.isascii() and (char.isalnum() or char == "_"):
            continue
        if i == 0:
            return False
        if char == "-" or (char == "." and kind != 1) or (char == ":" and kind == 0):
            continue
        return False
    return True


def _cut_promised(text: str, sep: str) -> tuple[str, str, bool]:
    i = text.rfind(sep)
    if i < 0:
        return text, "", False
    return text[:i] or MISSING, text[i + len(sep):] or MISSING, True


def parse_bare(text: str) -> ModelName:
    """ParseName merged with the defaults; check ``.valid`` (the fields of an invalid name are undefined)."""
    tag = ""
    if text.rfind(":") > text.rfind("/"):
        text, tag, _ = _cut_promised(text, ":")
    rest, model, found = _cut_promised(text, "/")
    if not found:
        return ModelName(DEFAULT_HOST, DEFAULT_NAMESPACE, text, tag or DEFAULT_TAG)
    rest, namespace, found = _cut_promised(rest, "/")
    if not found:
        return ModelName(DEFAULT_HOST, rest, model, tag or DEFAULT_TAG)
    host = rest.split("://", 1)[1] if "://" in rest else rest
    return ModelName(host or DEFAULT_HOST, namespace, model, tag or DEFAULT_TAG)


def parse_name(text: Any) -> ModelName | None:
    """model.ParseName, None when not IsValid."""
    if not isinstance(text, str):
        return None
    name = parse_bare(text)
    return name if name.valid else None


def source_suffix(raw: str) -> tuple[str, str]:
    """internal/modelref parseSourceSuffix: (base, "cloud" | "local" | "")."""
    i = raw.rfind(":")
    if i >= 0:
        suffix = raw[i + 1:].strip()
        lower = suffix.lower()
        if lower in ("cloud", "local"):
            return raw[:i], lower
        if "/" not in suffix and lower.endswith("-cloud"):
            return raw[: i + 1] + suffix[: -len("-cloud")], "cloud"
    return raw, ""


# ---------------------------------------------------------------------------------------------
# GGUF


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


# ---------------------------------------------------------------------------------------------
# The double


@dataclass
class _Loaded:
    name: str
    model_digest: str
    llm: Any
    expires_at: float  # epoch seconds; inf = forever
    context_length: int
    memory: int = 0  # bytes of the runner's buffers (model, KV cache, compute), from llama.cpp's log
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

    def __init__(self, models_dir: Path, version: str = DEFAULT_VERSION, *, noprune: bool = False,
                 go_template: str | None = None) -> None:
        self.models_dir = Path(models_dir)
        self.version = version
        self.version_tuple = parse_version(version)
        self.noprune = noprune
        self.go_template_env = go_template  # OLLAMA_GO_TEMPLATE as set, or None when unset
        self.prune_skipped = False
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
        """manifest.BlobsPath: sha256:<hex> or sha256-<hex>, any case, kept as given."""
        if not DIGEST_RE.match(digest):
            raise ApiError(400, ERR_INVALID_DIGEST)
        return self.blobs_dir / digest.replace(":", "-")

    def blob_files(self) -> list[Path]:
        return sorted(p for p in self.blobs_dir.glob("sha256-*") if p.is_file() and DIGEST_RE.match(p.name))

    def _temp(self, prefix: str) -> Path:
        """os.CreateTemp(blobs, prefix): PREFIX followed by random digits."""
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, dir=self.blobs_dir)
        os.close(fd)
        final = Path(name).with_name(prefix + str(uuid.uuid4().int)[:10])
        os.replace(name, final)
        return final

    def new_layer(self, source, media_type: str) -> tuple[dict, str]:
        """manifest.NewLayer: copy into a ``sha256-<digits>`` temp while hashing, then rename or drop it.

        ``source`` is bytes or an open binary file. Returns the layer and its status line.
        """
        temp = self._temp("sha256-")
        hasher = hashlib.sha256()
        size = 0
        try:
            with open(temp, "wb") as out:
                pieces = [source] if isinstance(source, bytes) else iter(lambda: source.read(PIECE), b"")
                for piece in pieces:
                    out.write(piece)
                    hasher.update(piece)
                    size += len(piece)
                out.flush()
                os.fsync(out.fileno())
            digest = f"sha256:{hasher.hexdigest()}"
            target = self.blobs_dir / digest.replace(":", "-")
            with self.lock:
                if target.exists():
                    status = f"using existing layer {digest}"
                else:
                    os.replace(temp, target)
                    os.chmod(target, 0o644)
                    status = f"creating new layer {digest}"
            _touch(target)
        finally:
            temp.unlink(missing_ok=True)
        return {"mediaType": media_type, "digest": digest, "size": size}, status

    def write_blob(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` as a blob; returns ("sha256:<hex>", created)."""
        layer, status = self.new_layer(data, "")
        return layer["digest"], status.startswith("creating")

    def _manifest_paths(self) -> Iterator[tuple[ModelName, Path]]:
        root = self.models_dir / "manifests"
        for path in sorted(root.glob("*/*/*/*")):
            if path.is_file():
                yield ModelName(*path.relative_to(root).parts), path

    def manifests(self, continue_on_error: bool = True) -> list[_Model]:
        """manifest.Manifests: every host; a bad name or manifest is skipped, or (strict) an error."""
        out = []
        for name, path in self._manifest_paths():
            try:
                if not name.valid:
                    raise ValueError(f"{path.relative_to(self.models_dir / 'manifests')} is not a valid name")
                raw = path.read_bytes()
                manifest = json.loads(raw)
                if not isinstance(manifest, dict):
                    raise ValueError("not a manifest")
            except (OSError, ValueError) as exc:
                if not continue_on_error:
                    raise ApiError(500, str(exc)) from None
                continue
            out.append(_Model(name, manifest, hashlib.sha256(raw).hexdigest(), path))
        return out

    def existing_name(self, name: ModelName) -> ModelName:
        """getExistingName: each part matched case-insensitively against any manifest (first match wins)."""
        parts = list(name.parts)
        for model in self.manifests():
            for i, part in enumerate(model.name.parts):
                if part.lower() == parts[i].lower():
                    parts[i] = part
        return ModelName(*parts)

    def get_model(self, text: Any) -> _Model | None:
        name = parse_name(text)
        if name is None:
            return None
        path = self.existing_name(name).path(self.models_dir)
        try:
            raw = path.read_bytes()
            manifest = json.loads(raw)
        except (OSError, ValueError):
            return None
        return _Model(ModelName(*path.relative_to(self.models_dir / "manifests").parts), manifest,
                      hashlib.sha256(raw).hexdigest(), path)

    def write_manifest(self, name: ModelName, manifest: dict) -> None:
        path = name.path(self.models_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes((go_json(manifest) + "\n").encode())
        os.replace(tmp, path)

    def referenced(self) -> set[str]:
        """Digest strings of every layer and config, exactly as the manifests write them."""
        refs = set()
        for model in self.manifests():
            for layer in [model.manifest.get("config") or {}, *(model.manifest.get("layers") or [])]:
                refs.add(str(layer.get("digest", "")))
        return refs

    def remove_layers(self, manifest: dict) -> list[str]:
        """Manifest.RemoveLayers: delete its layers and config unless another manifest references them."""
        in_use = self.referenced()
        removed = []
        for layer in [*(manifest.get("layers") or []), manifest.get("config") or {}]:
            digest = str(layer.get("digest", ""))
            if digest and digest not in in_use and DIGEST_RE.match(digest):
                with contextlib.suppress(FileNotFoundError):
                    self.blob_path(digest).unlink()
                    removed.append(digest)
        return removed

    def prune(self) -> list[str]:
        """Serve's start-up prune: skipped if any manifest is bad; a 1 h grace; non-digest names go too."""
        with self.lock:
            try:
                self.manifests(continue_on_error=False)
            except ApiError:
                self.prune_skipped = True  # "corrupt manifests detected, skipping prune operation."
                return []
            refs = {d.replace(":", "-") for d in self.referenced()}
            removed = []
            now = time.time()
            for path in sorted(self.blobs_dir.iterdir()):
                if not path.is_file() or now - path.stat().st_mtime < PRUNE_GRACE_SECONDS:
                    continue
                if not DIGEST_RE.match(path.name.replace("-", ":")) or path.name not in refs:
                    path.unlink()
                    removed.append(path.name)
            self.pruned.extend(removed)
            _prune_dirs(self.models_dir / "manifests")
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

    def config(self, model: _Model) -> dict:
        digest = (model.manifest.get("config") or {}).get("digest", "")
        try:
            return json.loads(self.blob_path(digest).read_text(encoding="utf-8"))
        except (ApiError, OSError, ValueError):
            return {}

    def details(self, model: _Model, *, listing: bool = False) -> dict:
        """ModelDetails from the config (routes.go): what create wrote, not what the GGUF says."""
        config = self.config(model)
        layer = model.layer(MT_MODEL) or {}
        level = config.get("file_type", "")
        if level in ("", "unknown") and layer:
            ft = self.gguf_info(layer["digest"])["file_type"]
            level = file_type_name(ft) if (ft or listing) else "unknown"  # tags say F32 for 0, show "unknown"
        return {
            "parent_model": str(layer.get("from", "")),
            "format": config.get("model_format", ""),
            "family": config.get("model_family", ""),
            "families": config.get("model_families") or None,
            "parameter_size": config.get("model_type", ""),
            "quantization_level": level,
        }

    def _text_layer(self, model: _Model, media_type: str) -> str | None:
        layer = model.layer(media_type)
        if layer is None:
            return None
        return self.blob_path(layer["digest"]).read_text(encoding="utf-8")

    def params(self, model: _Model) -> dict:
        text = self._text_layer(model, MT_PARAMS)
        return json.loads(text) if text else {}

    def go_template(self, model: _Model) -> str | None:
        """The TEMPLATE layer's text (None: no layer, the server then uses ``{{ .Prompt }}``)."""
        return self._text_layer(model, MT_TEMPLATE)

    def template(self, model: _Model) -> str:
        text = self.go_template(model)
        return "{{ .Prompt }}" if text is None else text

    def chat_template(self, model: _Model) -> str:
        layer = model.layer(MT_MODEL)
        return str(self.gguf_info(layer["digest"])["kv"].get("tokenizer.chat_template") or "") if layer else ""

    def _go_env(self) -> bool:
        """envconfig.GoTemplate(true): OLLAMA_GO_TEMPLATE as a bool, true when unset."""
        return True if self.go_template_env is None else _env_bool(self.go_template_env, True)

    def uses_go_template(self, model: _Model) -> bool:
        """shouldUseGoTemplate (routes.go), with PreferChatTemplate decided as GetModel does (images.go)."""
        go = self.go_template(model)
        if go is None:
            return False
        if self.go_template_env is not None:  # goTemplateEnvSet: the variable decides
            return self._go_env()
        chat = self.chat_template(model)
        return not (chat and prefer_chat_template(chat, go))

    def selected_template(self, model: _Model) -> str:
        """What /api/show reports as ``template``: the GGUF's jinja on the native path."""
        chat = self.chat_template(model)
        return chat if chat and not self.uses_go_template(model) else self.template(model)

    def capabilities(self, model: _Model, *, listing: bool = False) -> list[str]:
        """Model.Capabilities (show) or the list cache's (tags, which never reads the GGUF's template)."""
        caps: list[str] = []
        go = self.go_template(model)
        uses_go = self.uses_go_template(model)
        if not listing and not uses_go:
            caps += chat_template_caps(self.chat_template(model))
        caps.append("completion")
        if go is None or uses_go or listing:
            caps += go_template_caps(self.template(model))
        return list(dict.fromkeys(caps))

    # -- create (server/create.go)
    def validate_create(self, req: dict) -> tuple[ModelName, dict[str, str] | None]:
        """The checks Ollama answers before streaming: file paths, empty digests, the name."""
        files = req.get("files")
        if files is not None and not isinstance(files, dict):
            raise ApiError(400, "json: cannot unmarshal array into Go struct field CreateRequest.files of type "
                                "map[string]string")
        for fname, digest in sorted((files or {}).items()):
            if not isinstance(digest, str):
                raise ApiError(400, "json: cannot unmarshal number into Go struct field CreateRequest.files of "
                                    "type string")
            if not _valid_path(fname):
                raise ApiError(400, ERR_FILE_PATH)
            if digest == "":
                raise ApiError(400, ERR_INVALID_DIGEST)
        name = parse_name(req.get("model") or req.get("name"))
        if name is None:
            raise ApiError(400, ERR_INVALID_NAME)
        return self.existing_name(name), files

    def create(self, req: dict, name: ModelName, files: dict[str, str] | None) -> Iterator[dict]:
        """The streamed part of /api/create; an ApiError is an error message (HTTP status only if first)."""
        if req.get("quantize") or req.get("quantization"):
            raise ApiError(400, "quantize is not implemented by the Ollama test double")
        if req.get("adapters"):
            raise ApiError(400, "adapters are not implemented by the Ollama test double")
        old = self.get_model(name.display) if name.path(self.models_dir).is_file() else None
        if req.get("from"):
            layers, config = yield from self._from_layers(req["from"])
        elif files is not None:
            layers, config = yield from self._file_layers(files)
        else:
            raise ApiError(400, ERR_NO_SOURCE)
        layers = self._text_layers(layers, req)
        manifest = self._manifest(layers, config)
        for layer in layers:
            if layer.get("_status"):
                yield {"status": layer["_status"]}
        yield {"status": "writing manifest"}
        with self.lock:
            self.write_manifest(name, manifest)
            self.creates += 1
        if not self.noprune and old is not None:
            self.remove_layers(old.manifest)  # the old version's layers that nothing uses any more
        self._evict(name.display)  # a re-created model is reloaded on next use
        yield {"status": "success"}

    def _from_layers(self, source: Any) -> Iterator[dict]:
        base_text, suffix = source_suffix(str(source).strip())
        if parse_name(base_text) is None:
            raise ApiError(400, ERR_INVALID_NAME)
        if suffix == "cloud":
            raise ApiError(400, "cloud models are not implemented by the Ollama test double")
        base = self.get_model(base_text)
        if base is None:
            yield {"status": "pulling manifest"}
            raise ApiError(None, ERR_PULL)
        layers = []
        for layer in base.manifest.get("layers") or []:
            path = self.blob_path(layer["digest"])
            _touch(path)
            entry = {**layer, "from": base.name.display, "_status": f"using existing layer {layer['digest']}"}
            layers.append(entry)
        return layers, self._config_for(layers)

    def _file_layers(self, files: dict[str, str]) -> Iterator[dict]:
        kind = self._detect_type(files)
        if kind != "gguf":
            raise ApiError(400, "unknown type")
        singles, groups = [], {}
        for fname in sorted(files):
            digest = files[fname]
            yield {"status": "parsing GGUF"}
            path = self._open_gguf(digest)
            key = self._split_key(fname, path)
            _touch(path)
            layer = {"mediaType": MT_MODEL, "digest": digest, "size": path.stat().st_size, "from": fname,
                     "_status": f"using existing layer {digest}", "_path": path}
            if key is None:
                singles.append(layer)
            else:
                groups.setdefault(key, []).append(layer)
        if groups and not self.new_engine:
            raise ApiError(400, ERR_SHARDS_OLD)
        layers = singles + [self._merge_group(group) for group in groups.values()]
        if self.new_engine:
            rewritten = []
            for layer in layers:
                new = yield from self._rewrite(layer)
                rewritten.append(new)
            layers = rewritten
        return layers, self._config_for(layers)

    def _detect_type(self, files: dict[str, str]) -> str:
        """detectModelTypeFromFiles: the first file (sorted here; Go's map order) decides."""
        for fname in sorted(files):
            if fname.endswith(".safetensors"):
                return "safetensors"
            if fname.endswith(".gguf"):
                return "gguf"
            try:
                with open(self.blob_path(files[fname]), "rb") as handle:
                    return "gguf" if handle.read(4) == GGUF_MAGIC else ""
            except (ApiError, OSError):
                return ""
        return ""

    def _open_gguf(self, digest: str) -> Path:
        path = self.blob_path(digest)  # "invalid digest format", after "parsing GGUF"
        try:
            with open(path, "rb") as handle:
                head = handle.read(512)
        except FileNotFoundError:
            raise ApiError(None, f"open {path}: no such file or directory") from None
        if not head.startswith(GGUF_MAGIC):
            raise ApiError(400, "supplied file was not in GGUF format")
        try:
            reader = _reader(path)
            del reader
        except Exception as exc:  # noqa: BLE001 - ggml.Decode's own error, verbatim enough
            raise ApiError(None, str(exc) or type(exc).__name__) from None
        return path

    def _split_key(self, fname: str, path: Path) -> tuple | None:
        """splitGGUFGroupKey: None for a file that is not a shard."""
        reader = _reader(path)
        count, no = _split_field(reader, "split.count"), _split_field(reader, "split.no")
        has_no = reader.fields.get("split.no") is not None
        del reader
        if count <= 1:
            return None
        base = fname.rsplit("/", 1)[-1]
        m = SHARD_RE.match(base)
        if m is None or int(m[2]) == 0 or int(m[3]) == 0:
            raise ApiError(None, f"split GGUF {json.dumps(fname)} must use llama.cpp split filename pattern")
        if int(m[3]) != count:
            raise ApiError(None, f"split GGUF {json.dumps(fname)} filename count {int(m[3])} does not match "
                                 f"metadata count {count}")
        if not has_no:
            raise ApiError(None, f"split GGUF {json.dumps(fname)} is missing split.no metadata")
        if int(m[2]) - 1 != no:
            raise ApiError(None, f"split GGUF {json.dumps(fname)} filename index {int(m[2]) - 1} does not match "
                                 f"metadata index {no}")
        return (MT_MODEL, m[1], count)

    def _merge_group(self, group: list[dict]) -> dict:
        """mergeSplitGGUFLayers: the primary shard's layer, with every shard in index order."""
        first = group[0]
        count = _split_field(_reader(first["_path"]), "split.count")
        if len(group) != count:
            raise ApiError(None, f"split GGUF {json.dumps(first['from'])} has {len(group)} shards, expected {count}")
        by_index: dict[int, dict] = {}
        for layer in group:
            index = _split_field(_reader(layer["_path"]), "split.no")
            if index >= count:
                raise ApiError(None, f"split GGUF {json.dumps(layer['from'])} has invalid shard index {index}")
            if index in by_index:
                raise ApiError(None, f"split GGUF has duplicate shard index {index}")
            by_index[index] = layer
        primary = dict(by_index[0])
        primary["_parts"] = [by_index[i] for i in range(count)]
        return primary

    def _rewrite(self, layer: dict) -> Iterator[dict]:
        """rewriteLayerWithLlamaQuantize (COPY): llama.cpp's own quantizer writes ``blobs/COPY<digits>``,
        then NewLayer copies that into ``blobs/sha256-<digits>`` while hashing: three copies at the peak."""
        from llamacpp_copy import llama_quantize_copy

        parts = layer.get("_parts")
        link_dir = None
        source = layer["_path"]
        if parts:
            link_dir = self._temp("split-gguf-")
            link_dir.unlink()
            link_dir.mkdir()
            for part in parts:
                os.link(part["_path"], link_dir / part["from"].rsplit("/", 1)[-1])
            source = link_dir / parts[0]["from"].rsplit("/", 1)[-1]
        temp = self._temp("COPY")
        try:
            llama_quantize_copy(source, temp)
            yield from self._copy_progress(layer)
            yield {"status": "verifying conversion"}
            with open(temp, "rb") as handle:
                new, status = self.new_layer(handle, layer["mediaType"])
            with self.lock:
                self.rewrites += 1
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - llama-quantize refused the file
            raise ApiError(None, f"failed to validate GGUF with llama-quantize without compatibility patches: "
                                 f"{exc}") from None
        finally:
            temp.unlink(missing_ok=True)
            if link_dir is not None:
                shutil.rmtree(link_dir, ignore_errors=True)
        return {**new, "_status": status, "_path": self.blob_path(new["digest"])}

    def _copy_progress(self, layer: dict) -> Iterator[dict]:
        """The ``validating GGUF model`` events, one per tensor llama-quantize reports ("[ i/ n]").

        As Ollama computes them: ``total`` is the input layer's size, ``completed`` the share of the
        primary file's tensor bytes done, scaled in float32. (The double sends them once the copy
        has finished; the real server streams them while llama-quantize runs.)
        """
        reader = _reader(layer["_path"])
        offset = int(reader.tensors[0].data_offset) if len(reader.tensors) else 0
        total_size = sum(int(t.n_bytes) for t in reader.tensors)
        n = sum(len(_reader(p["_path"]).tensors) for p in layer.get("_parts") or [layer])
        del reader
        size = int(layer["size"])
        span = max(size - offset, 1)
        done = last = 0
        for i in range(1, n + 1):
            step = total_size * i // n
            if step <= last:
                continue
            done, last = step, step
            ratio = struct.unpack("f", struct.pack("f", done / span))[0]
            completed = int(struct.unpack("f", struct.pack("f", ratio * size))[0])
            event: dict[str, Any] = {"status": "validating GGUF model", "digest": "0" * 19, "total": size}
            if completed:
                event["completed"] = completed
            yield event

    def _config_for(self, layers: list[dict]) -> dict:
        """ConfigV2 as create fills it from the model layer (no rootfs since v0.32.7)."""
        model = next((x for x in layers if x["mediaType"] == MT_MODEL), None)
        info = self.gguf_info(model["digest"]) if model else {"arch": "", "params": 0, "file_type": None}
        arch = info["arch"] or "unknown"
        ft = info["file_type"]
        return {
            "model_format": "gguf", "model_family": arch, "model_families": [arch] if model else None,
            "model_type": human_number(info["params"]),
            "file_type": file_type_name(ft) if ft else "unknown",
            "architecture": "amd64", "os": "linux",
        }

    def _text_layers(self, layers: list[dict], req: dict) -> list[dict]:
        """setTemplate, setSystem, license, setParameters, setMessages: each replaces its kind at the end."""

        def replace(kind: str, data: bytes) -> None:
            nonlocal layers
            for old in [x for x in layers if x["mediaType"] == kind]:
                layers.remove(old)
            layer, status = self.new_layer(data, kind)
            layers.append({**layer, "_status": status})

        if req.get("template"):
            replace(MT_TEMPLATE, str(req["template"]).encode())
        if req.get("system"):
            replace(MT_SYSTEM, str(req["system"]).encode())
        licenses = req.get("license")
        for text in ([licenses] if isinstance(licenses, str) else licenses or []):
            if text:
                layer, status = self.new_layer(str(text).encode(), MT_LICENSE)
                layers.append({**layer, "_status": status})
        params = dict(req.get("parameters") or {})
        for old in [x for x in layers if x["mediaType"] == MT_PARAMS]:
            for key, value in json.loads(self.blob_path(old["digest"]).read_text(encoding="utf-8")).items():
                params.setdefault(key, value)
        if params:
            replace(MT_PARAMS, (go_json(dict(sorted(params.items()))) + "\n").encode())
        if req.get("messages"):
            replace(MT_MESSAGES, (go_json(req["messages"]) + "\n").encode())
        return layers

    def _manifest(self, layers: list[dict], config: dict) -> dict:
        config_layer, _ = self.new_layer((go_json(config) + "\n").encode(), MT_CONFIG)
        clean = []
        for layer in layers:
            entry = {"mediaType": layer["mediaType"], "digest": layer["digest"], "size": layer["size"]}
            if layer.get("from"):
                entry["from"] = layer["from"]
            clean.append(entry)
        return {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": config_layer, "layers": clean}

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
            f"TEMPLATE {modelfile_quote(template)}",
        ]
        if system:
            mf.append(f"SYSTEM {modelfile_quote(system)}")
        for key in sorted(params):
            values = params[key] if isinstance(params[key], list) else [params[key]]
            mf.extend(f"PARAMETER {key} {modelfile_quote(go_plain(v))}" for v in values)
        mf.extend(f"LICENSE {modelfile_quote(text)}" for text in licenses)
        mf.extend(f"MESSAGE {m.get('role')} {modelfile_quote(str(m.get('content', '')))}" for m in messages)
        model_info = {k: v for k, v in info["kv"].items() if k not in ("general.name", "tokenizer.chat_template")}
        for key, values in info["arrays"].items():  # non-verbose: every non-empty array is null
            model_info[key] = values if verbose or not values else None
        out: dict[str, Any] = {
            "modelfile": "\n".join(mf) + "\n",
            "parameters": "\n".join(lines),
            "template": self.selected_template(model),
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
                "details": self.details(model, listing=True),
                "capabilities": self.capabilities(model, listing=True),
                "_mtime": int(model.path.stat().st_mtime),
            })
        out.sort(key=lambda m: (-m["_mtime"], m["name"]))
        for entry in out:
            del entry["_mtime"]
        return out

    def delete(self, text: Any) -> bool:
        """DELETE /api/delete: the manifest, then at once every blob of it that no other manifest uses."""
        model = self.get_model(text)
        if model is None:
            return False
        self._evict(model.name.display)
        with self.lock:
            model.path.unlink()
            _prune_dirs(self.models_dir / "manifests")
            self.remove_layers(model.manifest)  # RemoveLayers ignores OLLAMA_NOPRUNE
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
        from llama_load import no_repack

        no_repack()
        started = time.perf_counter_ns()
        with _llama_log() as log:
            llm = llama_cpp.Llama(str(self.blob_path(digest)), n_ctx=N_CTX, verbose=False, n_threads=2)
        memory = _buffer_bytes("".join(log))
        took = time.perf_counter_ns() - started
        entry = _Loaded(display, digest, llm, expires, context_length,
                        memory or self.blob_path(digest).stat().st_size)
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
                "size": entry.memory,  # the runner's footprint, as llama-server's log reports it
                "digest": model.digest,
                "details": {**self.details(model), "parent_model": ""},
                "expires_at": expires,
                "size_vram": 0,  # a CPU-only runner
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


def chat_template_caps(chat: str) -> list[str]:
    """chatTemplateCapabilities (images.go): tools, thinking, from the jinja's text."""
    caps = []
    if "tools" in chat or "tool_call" in chat:
        caps.append("tools")
    split = "content.split('</think>')" in chat or 'content.split("</think>")' in chat
    if ("<think>" in chat and "</think>" in chat) or (split and "reasoning_content" not in chat
                                                       and "<SPECIAL_12>" not in chat):
        caps.append("thinking")
    return caps


def chat_template_round_trip(chat: str) -> bool:
    if not ("tools" in chat or "tool_call" in chat):
        return False
    calls = "tool_calls" in chat or "assistant_tool_call" in chat
    marks = ("tool_response", "tool_results", "role'] == 'tool'", "role'] == \"tool\"", "role\"] == 'tool'",
             "role\"] == \"tool\"", "message.role == 'tool'", "message.role == \"tool\"", "ipython")
    return calls and any(m in chat for m in marks)


def go_template_caps(template: str) -> list[str]:
    """goTemplateCapabilities: tools and insert from the template's identifiers, thinking from InferTags."""
    import gotemplate

    try:
        facts = gotemplate.inspect(template)
    except gotemplate.GoTemplateError:
        return []
    caps = []
    if "tools" in facts["vars"]:
        caps.append("tools")
    if "suffix" in facts["vars"]:
        caps.append("insert")
    if facts["thinking_open"] and facts["thinking_close"]:
        caps.append("thinking")
    return caps


def prefer_chat_template(chat: str, go: str) -> bool:
    """shouldPreferChatTemplate (images.go)."""
    import gotemplate

    chat_caps, go_caps = chat_template_caps(chat), go_template_caps(go)
    try:
        go_round_trip = bool(gotemplate.inspect(go)["tool_round_trip"])
    except gotemplate.GoTemplateError:
        go_round_trip = False
    if len(chat_caps) > len(go_caps):
        return not go_round_trip or chat_template_round_trip(chat)
    if set(chat_caps) != set(go_caps) or "tools" not in chat_caps or "tools" not in go_caps:
        return False
    return chat_template_round_trip(chat) and not go_round_trip


def _env_bool(value: str, default: bool) -> bool:
    """envconfig.Bool: strconv.ParseBool; an unparsable non-empty value is true."""
    text = value.strip().strip("\"'")
    if not text:
        return default
    if text.lower() in ("1", "t", "true"):
        return True
    if text.lower() in ("0", "f", "false"):
        return False
    return True


_LOG_LOCK = threading.Lock()
_BUFFER = re.compile(r"(?:model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")


@contextmanager
def _llama_log() -> Iterator[list[str]]:
    """llama.cpp's log lines while a model loads (the callback is process-wide, so one load at a time)."""
    import ctypes

    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level, text, user_data):  # noqa: ARG001
        lines.append(text.decode("utf-8", "replace"))

    with _LOG_LOCK:
        llama_cpp.llama_log_set(collect, ctypes.c_void_p())
        try:
            yield lines
        finally:
            from llama_cpp import _logger

            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p())


def _buffer_bytes(log: str) -> int:
    """The sum of the buffers llama.cpp reports (Ollama's MemorySize parses the same lines)."""
    return int(sum(float(m) for m in _BUFFER.findall(log)) * (1 << 20))


def _bos_text(ollama: OllamaDouble, model: _Model) -> str:
    info = ollama.gguf_info(model.layer(MT_MODEL)["digest"])
    tokens, index = info["arrays"].get("tokenizer.ggml.tokens") or [], info["kv"].get("tokenizer.ggml.bos_token_id")
    return str(tokens[index]) if isinstance(index, int) and 0 <= index < len(tokens) else ""


def _render_jinja(ollama: OllamaDouble, model: _Model, messages: list[dict], tools: Any, think: Any) -> str:
    """The native path: the GGUF's chat template applied to the messages, ``enable_thinking`` and, for a
    level, ``reasoning_effort`` passed as Ollama's ``chat_template_kwargs`` (llm/llama_server.go
    llamaServerChatTemplateKwargs). llama-server uses minja; jinja2 is its close stand-in."""
    import jinja2

    chat = ollama.chat_template(model)
    kv = ollama.gguf_info(model.layer(MT_MODEL)["digest"])["kv"]
    if not chat:
        return "".join(f"{m.get('role')}: {m.get('content', '')}\n" for m in messages) + "assistant:"
    tokens = ollama.gguf_info(model.layer(MT_MODEL)["digest"])["arrays"].get("tokenizer.ggml.tokens") or []

    def token(key: str) -> str:
        index = kv.get(key)
        return str(tokens[index]) if isinstance(index, int) and 0 <= index < len(tokens) else ""

    env = jinja2.Environment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = lambda message: (_ for _ in ()).throw(ApiError(500, str(message)))
    kwargs: dict[str, Any] = {} if think is None else {"enable_thinking": bool(think)}
    if isinstance(think, str) and think:
        kwargs["reasoning_effort"] = think
    try:
        return env.from_string(chat).render(messages=messages, tools=tools, add_generation_prompt=True,
                                            bos_token=token("tokenizer.ggml.bos_token_id"),
                                            eos_token=token("tokenizer.ggml.eos_token_id"), **kwargs)
    except jinja2.TemplateError as exc:
        raise ApiError(500, f"chat template: {exc}") from None


def _touch(path: Path) -> None:
    """touchLayer / NewLayerFromLayer: the blob's times set to now."""
    now = time.time()
    os.utime(path, (now, now))


def _prune_dirs(root: Path) -> None:
    """manifest.PruneDirectory: remove empty folders, the root too."""
    if not root.is_dir():
        return
    for folder in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if not any(root.iterdir()):
        root.rmdir()


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
    """thinking.Parser: text between the opening and closing tags is thinking, the rest content.

    Leading whitespace is skipped; output that does not open with the tag is all content, unless
    the prompt already ended with the opening tag (then the output starts inside the thinking);
    whitespace after the closing tag is eaten; partial tags are held back.
    """

    def __init__(self, enabled: bool, open_tag: str = THINK_OPEN, close_tag: str = THINK_CLOSE,
                 inside: bool = False) -> None:
        self.open, self.close = open_tag, close_tag
        self.state = ("think_ws" if inside else "start") if enabled else "content"
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
                if s.startswith(self.open):
                    self.buf, self.state = s[len(self.open):], "think_ws"
                    continue
                if self.open.startswith(s):
                    return thinking, content
                self.buf, self.state = "", "content"
                return thinking, content + s
            if self.state == "think_ws":
                self.buf = self.buf.lstrip()
                if not self.buf:
                    return thinking, content
                self.state = "thinking"
                continue
            if self.state == "thinking":
                i = self.buf.find(self.close)
                if i >= 0:
                    thinking += self.buf[:i]
                    self.buf, self.state = self.buf[i + len(self.close):], "after"
                    continue
                keep = 0
                for n in range(min(len(self.buf), len(self.close) - 1), 0, -1):
                    if self.close.startswith(self.buf[-n:]):
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
        if self.state == "start":
            return "", rest.lstrip()
        if self.state in ("think_ws", "thinking"):
            return rest, ""
        return "", rest.lstrip() if self.state == "after" else rest


# ---------------------------------------------------------------------------------------------
# OpenAI compatibility (middleware/openai.go over openai/openai.go): the request decoded as Go's
# encoding/json decodes it into openai.ChatCompletionRequest, FromChatRequest's translation to
# /api/chat, and the writers that turn the chat handler's answers back into OpenAI's shapes.

OPENAI_FINGERPRINT = "fp_ollama"
ERR_OPENAI_NO_MESSAGES = "[] is too short - 'messages'"  # ChatMiddleware
ERR_INVALID_MESSAGE = "invalid message format"
GO_MAX_DEPTH = 10000  # encoding/json scanner maxNestingDepth
GO_ZERO_UNIX = -62135596800  # time.Time{}.Unix()


class GoJSONError(Exception):
    """A decode error with the text Go's encoding/json gives it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _go_printable(char: str) -> bool:
    """strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space."""
    import unicodedata

    return char == " " or unicodedata.category(char)[0] in "LMNPS"


def go_quote(text: str) -> str:
    """strconv.Quote (what Go's %q prints for a string)."""
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v",
             '"': '\\"', "\\": "\\\\"}
    out = []
    for char in text:
        code = ord(char)
        if char in named:
            out.append(named[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif _go_printable(char):
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def _quote_char(byte: int) -> str:
    """scanner.go quoteChar: the offending byte as the syntax errors show it."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


def go_decoder_syntax(data: bytes) -> str | None:
    """The error json.Decoder.Decode reports for the first value in ``data`` (scanner.go's
    messages; "EOF" for nothing but whitespace, "unexpected EOF" for a value cut short), or None
    when that value is well formed. What follows the first value is not read."""
    n, i = len(data), 0
    ws = b" \t\n\r"
    stack: list[int] = []  # '{' or '['

    def bad(byte: int, context: str) -> str:
        return f"invalid character {_quote_char(byte)} {context}"

    def skip(j: int) -> int:
        while j < n and data[j] in ws:
            j += 1
        return j

    def string(j: int) -> tuple[int, str | None]:  # j after the opening quote
        while True:
            if j >= n:
                return j, "unexpected EOF"
            c = data[j]
            if c == 0x22:
                return j + 1, None
            if c == 0x5C:
                j += 1
                if j >= n:
                    return j, "unexpected EOF"
                e = data[j]
                if e in b'"\\/bfnrt':
                    j += 1
                    continue
                if e != 0x75:
                    return j, bad(e, "in string escape code")
                for _ in range(4):
                    j += 1
                    if j >= n:
                        return j, "unexpected EOF"
                    if data[j] not in b"0123456789abcdefABCDEF":
                        return j, bad(data[j], "in \\u hexadecimal character escape")
                j += 1
                continue
            if c < 0x20:
                return j, bad(c, "in string literal")
            j += 1

    def digits(j: int) -> int:
        while j < n and 0x30 <= data[j] <= 0x39:
            j += 1
        return j

    def number(j: int) -> tuple[int, str | None]:
        if data[j] == 0x2D:
            j += 1
            if j >= n:
                return j, "unexpected EOF"
            if not 0x30 <= data[j] <= 0x39:
                return j, bad(data[j], "in numeric literal")
        j = j + 1 if data[j] == 0x30 else digits(j)
        if j < n and data[j] == 0x2E:
            j += 1
            if j >= n:
                return j, "unexpected EOF"
            if not 0x30 <= data[j] <= 0x39:
                return j, bad(data[j], "after decimal point in numeric literal")
            j = digits(j)
        if j < n and data[j] in b"eE":
            j += 1
            if j < n and data[j] in b"+-":
                j += 1
            if j >= n:
                return j, "unexpected EOF"
            if not 0x30 <= data[j] <= 0x39:
                return j, bad(data[j], "in exponent of numeric literal")
            j = digits(j)
        return j, None

    def literal(j: int, word: bytes) -> tuple[int, str | None]:
        for k in range(1, len(word)):
            if j + k >= n:
                return j + k, "unexpected EOF"
            if data[j + k] != word[k]:
                return j + k, bad(data[j + k], f"in literal {word.decode()} (expecting {_quote_char(word[k])})")
        return j + len(word), None

    i = skip(0)
    if i >= n:
        return "EOF"
    mode = "value"
    while True:
        if mode == "value":
            i = skip(i)
            if i >= n:
                return "unexpected EOF"
            c = data[i]
            if c in b"{[":
                if len(stack) >= GO_MAX_DEPTH:
                    return bad(c, "exceeded max depth")
                stack.append(c)
                i = skip(i + 1)
                if i >= n:
                    return "unexpected EOF"
                if data[i] == (0x7D if c == 0x7B else 0x5D):
                    stack.pop()
                    i, mode = i + 1, "end"
                else:
                    mode = "key" if c == 0x7B else "value"
                continue
            if c == 0x22:
                i, err = string(i + 1)
            elif c == 0x2D or 0x30 <= c <= 0x39:
                i, err = number(i)
            elif c in b"tfn":
                i, err = literal(i, {0x74: b"true", 0x66: b"false", 0x6E: b"null"}[c])
            else:
                return bad(c, "looking for beginning of value")
            if err:
                return err
            mode = "end"
        elif mode == "key":
            if data[i] != 0x22:
                return bad(data[i], "looking for beginning of object key string")
            i, err = string(i + 1)
            if err:
                return err
            i = skip(i)
            if i >= n:
                return "unexpected EOF"
            if data[i] != 0x3A:
                return bad(data[i], "after object key")
            i, mode = i + 1, "value"
        else:  # end of a value
            if not stack:
                return None
            i = skip(i)
            if i >= n:
                return "unexpected EOF"
            c = data[i]
            if stack[-1] == 0x7B:
                if c == 0x2C:
                    i = skip(i + 1)
                    if i >= n:
                        return "unexpected EOF"
                    mode = "key"
                elif c == 0x7D:
                    stack.pop()
                    i += 1
                else:
                    return bad(c, "after object key:value pair")
            elif c == 0x2C:
                i, mode = i + 1, "value"
            elif c == 0x5D:
                stack.pop()
                i += 1
            else:
                return bad(c, "after array element")


class _Num(str):
    """A JSON number literal, kept as written (Go's type errors quote it)."""


class _Pairs(list):
    """A JSON object's (key, value) pairs in document order (Go matches struct keys case-insensitively)."""


# Go types of openai.ChatCompletionRequest (openai/openai.go), for encoding/json's type errors:
# (kind, Go type name, ...): "string" "bool" "int" "float64" "any" "raw"; ("slice", name, elem);
# ("struct", name, {json key: type}); ("opaque", name) is a struct whose fields are not checked.
_STR, _BOOL, _INT, _F64, _ANY = ("string", "string"), ("bool", "bool"), ("int", "int"), ("float64", "float64"), ("any", "")
_TOOL_CALL = ("struct", "openai.ToolCall", {
    "id": _STR, "index": _INT, "type": _STR,
    "function": ("struct", 'struct { Name string "json:\\"name\\""; Arguments string "json:\\"arguments\\"" }',
                 {"name": _STR, "arguments": _STR}),
})
_MESSAGE = ("struct", "openai.Message", {
    "role": _STR, "content": _ANY, "reasoning": _STR, "tool_calls": ("slice", "[]openai.ToolCall", _TOOL_CALL),
    "name": _STR, "tool_call_id": _STR,
})
CHAT_COMPLETION_REQUEST = ("struct", "openai.ChatCompletionRequest", {
    "model": _STR,
    "messages": ("slice", "[]openai.Message", _MESSAGE),
    "stream": _BOOL,
    "stream_options": ("struct", "openai.StreamOptions", {"include_usage": _BOOL}),
    "max_tokens": _INT,
    "seed": _INT,
    "stop": _ANY,
    "temperature": _F64,
    "frequency_penalty": _F64,
    "presence_penalty": _F64,
    "top_p": _F64,
    "response_format": ("struct", "openai.ResponseFormat", {
        "type": _STR, "json_schema": ("struct", "openai.JsonSchema", {"schema": ("raw", "json.RawMessage")})}),
    "tools": ("slice", "[]api.Tool", ("opaque", "api.Tool")),
    "reasoning": ("struct", "openai.Reasoning", {"effort": _STR}),
    "reasoning_effort": _STR,
    "logprobs": _BOOL,
    "top_logprobs": _INT,
    "_debug_render_only": _BOOL,
})


def _plain(value: Any) -> Any:
    """A decoded value as Go's ``any`` holds it (numbers are float64; integral ones kept as int here
    so that they re-encode as Go writes them)."""
    if isinstance(value, _Pairs):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, _Num):
        number = float(value)
        return int(number) if number.is_integer() and abs(number) < 1e21 else number
    return value


def _go_decode(value: Any, typ: tuple, struct: str, path: list[str], errors: list[str]) -> Any:
    """``value`` into Go type ``typ``; the first type error goes to ``errors`` (decoding goes on,
    as Go's does). None is JSON null (no effect, or a nil pointer/slice)."""
    kind = typ[0]
    if value is None or kind in ("any", "raw"):
        return _plain(value)

    def mismatch(what: str) -> None:
        if not errors:
            where = f"Go struct field {struct}.{'.'.join(path)}" if struct or path else "Go value"
            errors.append(f"json: cannot unmarshal {what} into {where} of type {typ[1]}")

    if isinstance(value, _Pairs):
        if kind == "opaque":
            return _plain(value)
        if kind != "struct":
            return mismatch("object")
        fields, out = typ[2], {}
        for key, item in value:
            name = key if key in fields else next((f for f in fields if f.lower() == key.lower()), None)
            if name is None or item is None:
                continue  # unknown fields are ignored; null leaves a field as it is (or its pointer nil)
            out[name] = _go_decode(item, fields[name], typ[1].rsplit(".", 1)[-1] if "{" not in typ[1] else "",
                                   [*path, name], errors)
        return out
    if isinstance(value, list):
        if kind != "slice":
            return mismatch("array")
        elem = typ[2]  # a null element of a struct slice is the zero struct
        return [{} if item is None and elem[0] in ("struct", "opaque") else _go_decode(item, elem, struct, path, errors)
                for item in value]
    if isinstance(value, bool):
        return value if kind == "bool" else mismatch("bool")
    if isinstance(value, str) and not isinstance(value, _Num):
        return value if kind == "string" else mismatch("string")
    if kind == "int":
        if re.fullmatch(r"-?\d+", value) and -(1 << 63) <= int(value) < (1 << 63):
            return int(value)
        return mismatch(f"number {value}")
    if kind == "float64":
        number = float(value)
        return number if number not in (float("inf"), float("-inf")) else mismatch(f"number {value}")
    return mismatch("number")


def go_decode_request(raw: bytes, typ: tuple = CHAT_COMPLETION_REQUEST) -> dict:
    """gin's ShouldBindJSON: json.NewDecoder(body).Decode into ``typ``; GoJSONError with Go's text."""
    syntax = go_decoder_syntax(raw)
    if syntax:
        raise GoJSONError(syntax)
    text = raw.decode("utf-8", "replace")  # invalid UTF-8 becomes U+FFFD, as Go decodes strings
    start = len(text) - len(text.lstrip(" \t\n\r"))
    decoder = json.JSONDecoder(object_pairs_hook=_Pairs, parse_int=_Num, parse_float=_Num,
                               parse_constant=lambda name: name)
    value, _ = decoder.raw_decode(text, start)
    errors: list[str] = []
    out = _go_decode(value, typ, "", [], errors)
    if errors:
        raise GoJSONError(errors[0])
    return out if isinstance(out, dict) else {}


def _go_type_name(value: Any) -> str:
    """%T of what encoding/json puts in an ``any``."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, dict):
        return "map[string]interface {}"
    return "[]interface {}" if isinstance(value, list) else "string"


class OpenAIRequestError(Exception):
    """FromChatRequest's errors (ChatMiddleware answers them 400)."""


def think_from_reasoning_effort(effort: str) -> bool | str | None:
    """openai.go thinkFromReasoningEffort at v0.32.15."""
    if effort == "":
        return None
    if effort == "none":
        return False
    if effort == "minimal":
        return "low"
    if effort in ("low", "medium", "high", "max"):
        return effort
    if effort in ("xhigh", "ultra"):
        return "max"
    raise OpenAIRequestError(f"invalid reasoning value: {go_quote(effort)} (must be \"minimal\", \"low\", "
                             '"medium", "high", "xhigh", "ultra", "max", or "none")')


def _go_base64(text: str) -> bytes:
    """base64.StdEncoding.DecodeString (newlines ignored); ValueError with Go's CorruptInputError text."""
    import base64
    import binascii

    clean = text.replace("\r", "").replace("\n", "")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    body = clean.rstrip("=")
    for index, char in enumerate(body):
        if char not in alphabet:
            raise ValueError(f"illegal base64 data at input byte {index}")
    try:
        return base64.b64decode(clean, validate=True)
    except binascii.Error:
        raise ValueError(f"illegal base64 data at input byte {len(body) - len(body) % 4}") from None


def _decode_image_url(url: str) -> str:
    """openai.go decodeImageURL; the image as api.ImageData marshals it (base64)."""
    import base64

    if url.startswith(("http://", "https://")):
        raise OpenAIRequestError("image URLs are not currently supported, please use base64 encoded data instead")
    if url.startswith("data:;base64,"):
        url = url[len("data:;base64,"):]
    else:
        for kind in ("jpeg", "jpg", "png", "webp"):
            prefix = f"data:image/{kind};base64,"
            if url.startswith(prefix):
                url = url[len(prefix):]
                break
        else:
            raise OpenAIRequestError("invalid image input")
    try:
        return base64.b64encode(_go_base64(url)).decode()
    except ValueError:
        raise OpenAIRequestError("invalid image input") from None


def _from_completion_tool_calls(calls: list | None) -> list[dict]:
    """openai.go FromCompletionToolCall: arguments must be a JSON object."""
    out = []
    for call in calls or []:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments", ""))
        except ValueError:
            raise OpenAIRequestError("invalid tool call arguments") from None
        if arguments is not None and not isinstance(arguments, dict):
            raise OpenAIRequestError("invalid tool call arguments")
        entry: dict[str, Any] = {}
        if call.get("id"):
            entry["id"] = call["id"]
        entry["function"] = {"index": 0, "name": function.get("name", ""), "arguments": arguments or {}}
        out.append(entry)
    return out


def _api_message(role: str, content: str = "", thinking: str = "", images: list | None = None,
                 tool_calls: list | None = None, tool_name: str = "", tool_call_id: str = "") -> dict:
    """An api.Message as JSON (omitempty fields left out); the role lower-cased, as
    api.Message.UnmarshalJSON does when the chat handler reads it."""
    message: dict[str, Any] = {"role": role.lower(), "content": content}
    for key, value in (("thinking", thinking), ("images", images), ("tool_calls", tool_calls),
                       ("tool_name", tool_name), ("tool_call_id", tool_call_id)):
        if value:
            message[key] = value
    return message


def from_chat_request(r: dict) -> dict:
    """openai.go FromChatRequest: the /api/chat request (api.ChatRequest as JSON) for a decoded
    ChatCompletionRequest; OpenAIRequestError for what it refuses."""
    source = r.get("messages") or []
    messages: list[dict] = []
    for msg in source:
        role, call_id = msg.get("role", ""), msg.get("tool_call_id", "")
        tool_name = ""
        if role.lower() == "tool":
            tool_name = msg.get("name", "")
            if not tool_name and call_id:  # nameFromToolCallID: the last call with that id wins
                tool_name = next((c.get("function", {}).get("name", "") for m in reversed(source)
                                  for c in (m.get("tool_calls") or []) if c.get("id") == call_id), "")
        content, calls = msg.get("content"), msg.get("tool_calls")
        if isinstance(content, str):
            messages.append(_api_message(role, content, msg.get("reasoning", ""),
                                         tool_calls=_from_completion_tool_calls(calls), tool_name=tool_name,
                                         tool_call_id=call_id))
        elif isinstance(content, list):
            for part in content:
                if not isinstance(part, dict):
                    raise OpenAIRequestError(ERR_INVALID_MESSAGE)
                kind = part.get("type")
                if kind == "text":
                    if not isinstance(part.get("text"), str):
                        raise OpenAIRequestError(ERR_INVALID_MESSAGE)
                    messages.append(_api_message(role, part["text"]))
                elif kind == "image_url":
                    image = part.get("image_url")
                    url = image.get("url") if isinstance(image, dict) else image
                    if not isinstance(url, str):
                        raise OpenAIRequestError(ERR_INVALID_MESSAGE)
                    messages.append(_api_message(role, images=[_decode_image_url(url)]))
                elif kind == "input_audio":
                    audio = part.get("input_audio")
                    if not isinstance(audio, dict):
                        raise OpenAIRequestError("invalid input_audio format")
                    if not isinstance(audio.get("data"), str):
                        raise OpenAIRequestError("invalid input_audio format: missing data")
                    try:
                        data = _go_base64(audio["data"])
                    except ValueError as exc:
                        raise OpenAIRequestError(f"invalid input_audio base64 data: {exc}") from None
                    import base64

                    messages.append(_api_message(role, images=[base64.b64encode(data).decode()]))
                else:
                    raise OpenAIRequestError(ERR_INVALID_MESSAGE)
            if messages and calls:  # the tool calls go on the last message added so far
                last = messages[-1]
                converted = _from_completion_tool_calls(calls)
                for key, value in (("tool_calls", converted), ("tool_name", tool_name),
                                   ("tool_call_id", call_id), ("thinking", msg.get("reasoning", ""))):
                    if value:
                        last[key] = value
                    else:
                        last.pop(key, None)
        else:
            if calls is None:  # content is optional only with tool calls
                raise OpenAIRequestError(f"invalid message content type: {_go_type_name(content)}")
            messages.append(_api_message(role, "", msg.get("reasoning", ""),
                                         tool_calls=_from_completion_tool_calls(calls), tool_call_id=call_id))

    options: dict[str, Any] = {}
    stop = r.get("stop")
    if isinstance(stop, str):
        options["stop"] = [stop]
    elif isinstance(stop, list):
        options["stop"] = [s for s in stop if isinstance(s, str)] or None
    if r.get("max_tokens") is not None:
        options["num_predict"] = r["max_tokens"]
    options["temperature"] = r["temperature"] if r.get("temperature") is not None else 1.0
    for key in ("seed", "frequency_penalty", "presence_penalty"):
        if r.get(key) is not None:
            options[key] = r[key]
    options["top_p"] = r["top_p"] if r.get("top_p") is not None else 1.0

    fmt: Any = None
    response_format = r.get("response_format")
    if response_format is not None:
        kind = (response_format.get("type") or "").strip().lower()
        if kind == "json_object":
            fmt = "json"
        elif kind == "json_schema" and response_format.get("json_schema") is not None:
            fmt = response_format["json_schema"].get("schema")

    if r.get("reasoning") is not None:
        effort = r["reasoning"].get("effort", "")
    else:
        effort = r.get("reasoning_effort") or ""
    think = think_from_reasoning_effort(effort)

    chat: dict[str, Any] = {"model": r.get("model", ""), "messages": messages, "stream": bool(r.get("stream"))}
    if fmt is not None:
        chat["format"] = fmt
    if r.get("tools"):
        chat["tools"] = r["tools"]
    chat["options"] = options
    if think is not None:
        chat["think"] = think
    if r.get("_debug_render_only"):
        chat["_debug_render_only"] = True
    if r.get("logprobs"):
        chat["logprobs"] = True
    if r.get("top_logprobs"):
        chat["top_logprobs"] = r["top_logprobs"]
    return chat


def openai_error(status: int, message: str) -> dict:
    """openai.go NewError."""
    kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _unix(stamp: Any) -> int:
    """time.Time.Unix of an RFC 3339 stamp; the zero time's for none."""
    if not stamp:
        return GO_ZERO_UNIX
    try:
        return int(datetime.fromisoformat(str(stamp)).timestamp() // 1)
    except ValueError:
        return GO_ZERO_UNIX


def to_usage(resp: dict) -> dict:
    """openai.go ToUsage."""
    prompt, completion = int(resp.get("prompt_eval_count") or 0), int(resp.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def to_tool_calls(calls: list | None) -> list[dict]:
    """openai.go ToToolCalls."""
    return [{"id": c.get("id", ""), "index": (c.get("function") or {}).get("index", 0), "type": "function",
             "function": {"name": (c.get("function") or {}).get("name", ""),
                          "arguments": go_json((c.get("function") or {}).get("arguments") or {})}}
            for c in calls or []]


def to_chat_completion(cid: str, resp: dict) -> dict:
    """openai.go ToChatCompletion: a non-streamed answer."""
    message = resp.get("message") or {}
    calls = to_tool_calls(message.get("tool_calls"))
    out_message: dict[str, Any] = {"role": message.get("role", ""), "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning"] = message["thinking"]
    if calls:
        out_message["tool_calls"] = calls
    reason = resp.get("done_reason") or ""
    if reason == "stop" and calls:
        reason = "tool_calls"
    choice: dict[str, Any] = {"index": 0, "message": out_message, "finish_reason": reason or None}
    if resp.get("logprobs"):
        choice["logprobs"] = {"content": resp["logprobs"]}
    out = {"id": cid, "object": "chat.completion", "created": _unix(resp.get("created_at")),
           "model": resp.get("model", ""), "system_fingerprint": OPENAI_FINGERPRINT, "choices": [choice],
           "usage": to_usage(resp)}
    if resp.get("_debug_info"):
        out["_debug_info"] = resp["_debug_info"]
    return out


def _to_chunk(cid: str, resp: dict, created: int, include_role: bool) -> dict:
    """openai.go toChunk: ``content`` is an ``any`` holding the string, so "" is written."""
    message = resp.get("message") or {}
    delta: dict[str, Any] = {"role": "assistant"} if include_role else {}
    delta["content"] = message.get("content", "")
    if message.get("thinking"):
        delta["reasoning"] = message["thinking"]
    calls = to_tool_calls(message.get("tool_calls"))
    if calls:
        delta["tool_calls"] = calls
    choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": None}
    if resp.get("logprobs"):
        choice["logprobs"] = {"content": resp["logprobs"]}
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": resp.get("model", ""),
            "system_fingerprint": OPENAI_FINGERPRINT, "choices": [choice]}


def to_stream_chunks(cid: str, resp: dict, created: int, include_role: bool) -> list[dict]:
    """openai.go ToStreamChunks: a response with both reasoning and content (or tool calls) is split
    in two chunks, the reasoning first (with the role, if any), the content second."""
    message = resp.get("message") or {}
    if not (message.get("thinking") and (message.get("content") or message.get("tool_calls"))):
        return [_to_chunk(cid, resp, created, include_role)]
    reasoning = _to_chunk(cid, resp, created, include_role)
    delta = reasoning["choices"][0]["delta"]
    delta.pop("content", None)
    delta.pop("tool_calls", None)
    content = _to_chunk(cid, resp, created, False)
    content["choices"][0]["delta"].pop("reasoning", None)
    content["choices"][0].pop("logprobs", None)
    return [reasoning, content]


def finish_chunk(cid: str, resp: dict, created: int, tool_call_sent: bool) -> dict:
    """openai.go FinishChunk: the finish reason on its own chunk, with an empty delta."""
    reason = resp.get("done_reason") or "stop"
    if reason == "stop" and tool_call_sent:
        reason = "tool_calls"
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": resp.get("model", ""),
            "system_fingerprint": OPENAI_FINGERPRINT,
            "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def _sse(obj: Any) -> bytes:
    return b"data: " + go_json(obj).encode() + b"\n\n"


class _CompatWriter:
    """A gin.ResponseWriter the OpenAI middleware puts in front of a handler (BaseWriter): what the
    handler writes at a status other than 200 becomes an OpenAI error (writeError, encoded by
    json.Encoder, hence the newline); what it writes at 200 goes to ``response``."""

    def __init__(self, handler: BaseHTTPRequestHandler) -> None:
        self.h = handler

    def json(self, status: int | None, obj: Any) -> None:
        status = status or 500
        if status != 200:
            message = obj.get("error") if isinstance(obj, dict) else None
            text = str(message) if message else "something went wrong, please see the ollama server logs for details"
            return self.h._send(status, (go_json(openai_error(status, text)) + "\n").encode(), "application/json")
        return self.response(obj)

    def response(self, obj: Any) -> None:
        raise NotImplementedError

    def stream_start(self) -> None:
        raise NotImplementedError

    def stream_line(self, obj: Any) -> None:
        raise NotImplementedError

    def stream_end(self) -> None:
        raise NotImplementedError


class _OpenAIChatWriter(_CompatWriter):
    """middleware/openai.go ChatWriter: the chat handler's answers as chat.completion(.chunk)s."""

    def __init__(self, handler: BaseHTTPRequestHandler, stream: bool, stream_options: dict | None) -> None:
        super().__init__(handler)
        self.stream = stream
        self.include_usage = bool((stream_options or {}).get("include_usage"))
        self.id = f"chatcmpl-{random.randrange(999)}"  # rand.Intn(999)
        self.tool_call_sent = False
        self.first_chunk_sent = False
        self.created: int | None = None  # pinned from the first response
        self.chunked = False  # the streamed answer's headers are out

    def response(self, obj: Any) -> None:
        """One c.JSON at 200 (a non-streamed answer, or a load answer): a single write."""
        if self.stream:
            return self.h._send(200, b"".join(self._events(obj)), "text/event-stream")
        self.h._send(200, (go_json(to_chat_completion(self.id, obj)) + "\n").encode(), "application/json")

    def stream_start(self) -> None:
        """streamResponse: nothing goes out before the first line (net/http sends headers with it)."""

    def stream_line(self, obj: Any) -> None:
        if isinstance(obj, dict) and set(obj) == {"error"}:
            if not self.chunked:  # an error before anything was written: c.JSON(500, ...)
                return self.json(500, obj)
            obj = {}  # json.Encoder's {"error": ...} read back as an empty api.ChatResponse
        if not self.chunked:
            self.h._begin_chunked("text/event-stream")
            self.chunked = True
        self.h._write_chunk(b"".join(self._events(obj)))

    def stream_end(self) -> None:
        if self.chunked:
            self.h._end_chunked()

    def _events(self, resp: dict) -> list[bytes]:
        """ChatWriter.writeResponse, streaming: the chunks of one api.ChatResponse."""
        stamp = _unix(resp.get("created_at")) if resp.get("created_at") else int(time.time())
        if self.created is None:
            self.created = stamp
        created = self.created
        message = resp.get("message") or {}
        done = bool(resp.get("done"))
        empty_trailer = (done and self.first_chunk_sent and not message.get("content") and not message.get("thinking")
                         and not message.get("tool_calls") and not resp.get("logprobs"))
        out = []
        if not empty_trailer:
            for chunk in to_stream_chunks(self.id, resp, created, not self.first_chunk_sent):
                if chunk["choices"][0]["delta"].get("tool_calls"):
                    self.tool_call_sent = True
                out.append(_sse(chunk))
            self.first_chunk_sent = True
        if done:
            final = finish_chunk(self.id, resp, created, self.tool_call_sent)
            out.append(_sse(final))
            if self.include_usage:
                out.append(_sse({**final, "choices": [], "usage": to_usage(resp)}))
            out.append(b"data: [DONE]\n\n")
        return out


class _OpenAIModelWriter(_CompatWriter):
    """middleware/openai.go RetrieveWriter: /api/show's answer as openai.ToModel."""

    def __init__(self, handler: BaseHTTPRequestHandler, model: str) -> None:
        super().__init__(handler)
        self.model = model

    def response(self, obj: Any) -> None:
        body = {"id": self.model, "object": "model", "created": _unix(obj.get("modified_at")),
                "owned_by": parse_bare(self.model).namespace}
        self.h._send(200, (go_json(body) + "\n").encode(), "application/json")


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
            self._compat = None
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
            """c.JSON: one write of ``obj`` at ``status``; under an OpenAI route its writer converts it."""
            if self._compat is not None:
                return self._compat.json(status, obj)
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
            """streamResponse: NDJSON lines; under an OpenAI route its writer converts each line."""
            self._streaming = True
            if self._compat is not None:
                return self._compat.stream_start()
            self._begin_chunked("application/x-ndjson")

        def _stream_line(self, obj: Any) -> None:
            if self._compat is not None:
                return self._compat.stream_line(obj)
            self._write_chunk((go_json(obj) + "\n").encode())

        def _stream_end(self) -> None:
            if self._compat is not None:
                return self._compat.stream_end()
            self._end_chunked()

        def _begin_chunked(self, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

        def _write_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _end_chunked(self) -> None:
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
            self._compat: _CompatWriter | None = None
            try:
                self._route(method, path)
            except ApiError as exc:
                self._error(exc.status, exc.message)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            except Exception as exc:  # noqa: BLE001 - a bug in the double: answer 500, keep serving
                import traceback

                traceback.print_exc()
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
                ("POST", "/v1/chat/completions"): self._openai_chat,
                ("GET", "/v1/models"): self._openai_models,
            }
            if method == "GET" and path.startswith("/v1/models/"):
                model = path[len("/v1/models/"):]
                if model and "/" not in model:  # gin's :model is one path segment
                    return self._openai_model(model)
            handler = routes.get((method, path))
            if handler is None:
                return self._not_found()
            return handler()

        # -- blobs
        def _blob(self, method: str, digest: str) -> None:
            """HEAD / POST /api/blobs/:digest (routes.go). POST keeps the upload under its real digest
            before comparing it with the path's, literally: a mismatch is a 400 with the data kept."""
            if not DIGEST_RE.match(digest):
                return self._error(400, ERR_INVALID_DIGEST)
            target = ollama.blob_path(digest)
            if method == "HEAD":
                if target.is_file():
                    return self._empty(200)
                return self._error(404, f"blob {json.dumps(digest)} not found")
            if target.is_file():
                with ollama.lock:
                    ollama.blob_exists += 1
                return self._empty(200)

            class Body:
                def __init__(self, pieces: Iterator[bytes]) -> None:
                    self.pieces = pieces

                def read(self, _n: int) -> bytes:
                    piece = next(self.pieces, b"")
                    with ollama.lock:
                        ollama.blob_bytes_read += len(piece)
                    return piece

            layer, _ = ollama.new_layer(Body(self._iter_body()), "")
            if layer["digest"] != digest:
                with ollama.lock:
                    ollama.blob_mismatches += 1
                return self._error(400, f"digest mismatch, expected {json.dumps(digest)}, got "
                                        f"{json.dumps(layer['digest'])}")
            with ollama.lock:
                ollama.blob_uploads += 1
            return self._empty(201)

        # -- create
        def _create(self) -> None:
            """Errors before streaming are HTTP statuses; after the first line, NDJSON error lines."""
            req = self._read_json()
            name, files = ollama.validate_create(req)
            events = ollama.create(req, name, files)
            if req.get("stream", True) is False:
                last: dict = {}
                try:
                    for event in events:
                        last = event
                except ApiError as exc:
                    return self._error(exc.status or 500, exc.message)
                return self._json(200, last)
            started = False
            try:
                for event in events:
                    if not started:
                        self._stream_start()
                        started = True
                    self._stream_line(event)
            except ApiError as exc:
                if not started:
                    return self._send(exc.status or 500, go_json({"error": exc.message}).encode(),
                                      "application/json")
                self._stream_line({"error": exc.message})
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # noqa: BLE001
                if not started:
                    return self._error(500, str(exc))
                self._stream_line({"error": str(exc)})
            self._stream_end()

        # -- listing
        def _tags(self) -> None:
            self._json(200, {"models": ollama.tags()})

        def _ps(self) -> None:
            self._json(200, {"models": ollama.ps()})

        def _show(self, req: dict | None = None) -> None:
            req = self._read_json() if req is None else req
            text = req.get("model") or req.get("name")
            if not text:
                raise ApiError(400, "model is required")
            base, _ = source_suffix(str(text).strip())
            name = parse_name(base)
            if name is None:
                raise ApiError(400, ERR_INVALID_NAME)
            model = ollama.get_model(base)
            if model is None or model.layer(MT_MODEL) is None:
                shown = ollama.existing_name(name).display
                return self._error(404, f"model '{shown}' not found")
            self._json(200, ollama.show(model, bool(req.get("verbose"))))

        def _delete(self) -> None:
            req = self._read_json()
            text = req.get("model") or req.get("name")
            if not text:
                raise ApiError(400, "model is required")
            base, suffix = source_suffix(str(text).strip())
            if suffix == "cloud":
                base = base + ("-cloud" if base.rfind(":") > base.rfind("/") else ":cloud")
            if parse_name(base) is None:
                return self._error(400, f"name {json.dumps(text)} is invalid")
            if not ollama.delete(base):
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
        def _prepare(self, req: dict, chat: bool) -> tuple[_Model, dict, Any]:
            """Name, capability and ``think`` checks, in the handlers' order; ``think`` defaults on."""
            text = req.get("model")
            if not text:
                raise ApiError(400, "model is required") if chat else ApiError(404, "model '' not found")
            base, suffix = source_suffix(str(text).strip())
            if suffix == "cloud":
                raise ApiError(400, "cloud models are not implemented by the Ollama test double")
            if parse_name(base) is None:
                raise ApiError(400, ERR_INVALID_NAME)
            model = ollama.get_model(base)
            if model is None or model.layer(MT_MODEL) is None:
                raise ApiError(404, f"model '{text}' not found")
            options = {**ollama.params(model), **(req.get("options") or {})}
            think = req.get("think")
            if think is not None and not isinstance(think, bool):
                if not isinstance(think, str):
                    raise ApiError(400, 'think must be a boolean or string ("high", "medium", "low", "max", true, '
                                        "or false)")
                if think not in ("high", "medium", "low", "max"):
                    raise ApiError(400, f'invalid think value: {json.dumps(think)} (must be "high", "medium", '
                                        '"low", "max", true, or false)')
            if "thinking" in ollama.capabilities(model):
                if think is None:
                    think = True
            elif think not in (None, False):
                raise ApiError(400, f"{json.dumps(text)} does not support thinking")
            return model, options, think

        def _render(self, model: _Model, messages: list[dict], tools: Any, think: Any) -> tuple[str, _ThinkSplitter]:
            """The prompt and the thinking parser of the path that runs: the Go TEMPLATE (rendered by Go's
            text/template) or the GGUF's jinja, as llama-server would apply it (here with jinja2)."""
            system = ollama._text_layer(model, MT_SYSTEM)
            stored = ollama._text_layer(model, MT_MESSAGES)
            messages = [*(json.loads(stored) if stored else []), *messages]
            if system and not (messages and messages[0].get("role") == "system"):
                messages = [{"role": "system", "content": system}, *messages]
            if ollama.uses_go_template(model):
                import gotemplate

                template = ollama.template(model)
                values = {"messages": messages, "tools": tools or None, "think": bool(think),
                          "think_level": think if isinstance(think, str) else "", "is_think_set": think is not None}
                try:
                    prompt = gotemplate.render(template, values)
                except gotemplate.GoTemplateError as exc:
                    raise ApiError(500, f"template: {exc}") from None
                facts = gotemplate.inspect(template)
                open_tag, close_tag = facts["thinking_open"], facts["thinking_close"]
                enabled = bool(think) and bool(open_tag and close_tag)
                inside = enabled and prompt.rstrip().endswith(open_tag)
                return prompt, _ThinkSplitter(enabled, open_tag or THINK_OPEN, close_tag or THINK_CLOSE, inside)
            prompt = _render_jinja(ollama, model, messages, tools, think)
            bos = _bos_text(ollama, model)
            prompt = prompt[len(bos):] if bos and prompt.startswith(bos) else prompt  # the runner adds BOS
            return prompt, _ThinkSplitter(True, inside=prompt.rstrip().endswith(THINK_OPEN))

        def _chat(self, req: dict | None = None) -> None:
            """ChatHandler; ``req`` is the decoded body (ChatMiddleware's translation on /v1/chat/completions)."""
            req = self._read_json() if req is None else req
            model, options, think = self._prepare(req, chat=True)
            messages = req.get("messages") or []
            if not messages:
                return self._load_or_unload(req, model, options, chat=True)
            prompt, splitter = self._render(model, messages, req.get("tools"), think)
            self._run(req, model, options, splitter, prompt, chat=True)

        def _generate(self) -> None:
            req = self._read_json()
            model, options, think = self._prepare(req, chat=False)
            if not req.get("prompt"):
                return self._load_or_unload(req, model, options, chat=False)
            if req.get("raw"):
                return self._run(req, model, options, _ThinkSplitter(False), str(req["prompt"]), chat=False)
            messages = [{"role": "user", "content": str(req["prompt"])}]
            if req.get("system"):
                messages.insert(0, {"role": "system", "content": str(req["system"])})
            prompt, splitter = self._render(model, messages, None, think)
            self._run(req, model, options, splitter, prompt, chat=False)

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

        def _run(self, req: dict, model: _Model, options: dict, splitter: _ThinkSplitter, prompt: str,
                 chat: bool) -> None:
            keep_alive = parse_keep_alive(req.get("keep_alive"))
            started = time.perf_counter_ns()
            entry, load_ns = ollama.load(model, keep_alive, self._context_length(options))
            num_predict = options.get("num_predict")
            num_predict = DEFAULT_NUM_PREDICT if num_predict is None else int(num_predict)
            stops = options.get("stop") or []
            stops = [stops] if isinstance(stops, str) else list(stops)
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

        # -- OpenAI compatibility (routes.go: ChatMiddleware before ChatHandler, ListMiddleware before
        # ListHandler, RetrieveMiddleware before ShowHandler)
        def _openai_abort(self, status: int, message: str) -> None:
            """c.AbortWithStatusJSON(status, openai.NewError(...)): gin's JSON render (no newline)."""
            self._send(status, go_json(openai_error(status, message)).encode(), "application/json; charset=utf-8")

        def _openai_chat(self) -> None:
            """POST /v1/chat/completions: ChatMiddleware, then the chat handler behind a ChatWriter."""
            try:
                req = go_decode_request(b"".join(self._iter_body()))
            except GoJSONError as exc:
                return self._openai_abort(400, exc.message)
            if not req.get("messages"):
                return self._openai_abort(400, ERR_OPENAI_NO_MESSAGES)
            try:
                chat = from_chat_request(req)
            except OpenAIRequestError as exc:
                return self._openai_abort(400, str(exc))
            self._compat = _OpenAIChatWriter(self, bool(req.get("stream")), req.get("stream_options"))
            self._chat(chat)

        def _openai_models(self) -> None:
            """GET /v1/models: openai.ToListCompletion of /api/tags' list (``data`` null when empty)."""
            data = [{"id": m.get("model") or m["name"], "object": "model", "created": _unix(m.get("modified_at")),
                     "owned_by": parse_bare(m.get("model") or m["name"]).namespace} for m in ollama.tags()]
            self._send(200, (go_json({"object": "list", "data": data or None}) + "\n").encode(), "application/json")

        def _openai_model(self, model: str) -> None:
            """GET /v1/models/:model: ShowHandler for ``{"name": model}`` behind a RetrieveWriter."""
            self._compat = _OpenAIModelWriter(self, model)
            self._show({"name": model})

        do_GET = do_HEAD = do_POST = do_DELETE = do_PUT = do_PATCH = do_OPTIONS = _dispatch

    return Handler


@contextmanager
def run_ollama(
    models_dir: Path,
    version: str = DEFAULT_VERSION,
    host: str = "127.0.0.1",
    port: int = 0,
    noprune: bool = False,
    **options: Any,
) -> Iterator[OllamaDouble]:
    """Start the double on ``host:port`` (port 0 picks a free one) and stop it afterwards."""
    double = OllamaDouble(models_dir, version, noprune=noprune, **options)
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
    go_template: str | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (exit status 0), as ``ollama serve`` does; 1 when the port is taken."""
    double = OllamaDouble(models_dir, version, noprune=noprune, go_template=go_template)
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
