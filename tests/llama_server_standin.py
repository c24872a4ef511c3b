#!/usr/bin/env python3
"""A STAND-IN for llama.cpp's ``llama-server`` executable, for tests. It is not llama.cpp: it loads no
model and answers no completions.

It reads its argv exactly as llama.cpp's ``common_params_parse_ex`` does, by the option table in
``dslocal/engines/llama_server_flags.toml`` (read out of llama.cpp b11549's own parser), so a test
that runs a launcher against it fails where the real binary would refuse the command line:

* an unknown argument (a positional, ``--port=8080``, a spelling from another llama.cpp version):
  ``error: invalid argument: X`` on stderr, exit 1;
* a value option at the end of argv: ``error while handling argument "X": expected value for
  argument`` followed by the option's usage, exit 1; a value option takes the next argument
  whatever it looks like, as llama.cpp does;
* a bad value (``-fa maybe``, ``-ctk q9``, ``--reasoning-format x``, ``-c abc``, ``-np 0``,
  ``-ot exps`` without ``=CPU``...): llama.cpp's message for it, exit 1;
* ``--`` arguments have ``_`` read as ``-``; ``LLAMA_ARG_*`` environment variables (and
  ``LLAMA_API_KEY``) are applied before argv, a flag on the command line winning over them.

Values of the few string options whose checks it does not copy (``validated`` in the table) are
accepted; numbers follow C++'s ``std::stoi``/``std::stof`` (``12abc`` is 12).

It writes what it parsed as JSON to the file named by ``LLAMA_STANDIN_RECORD`` (written again once
it listens, with ``listening``; with ``error`` and ``exit`` when it refused the command line)::

    {"argv": [...], "options": [{"arg": "-c", "key": "--ctx-size", "value": "8192", "from": "argv"}],
     "values": {"--ctx-size": "8192", "--ui": false, ...}, "env": {"LLAMA_API_KEY": "..."},
     "api_keys": [...], "pid": 123, "listening": ["http://127.0.0.1:8080"]}

``values`` is keyed by each option's ``key`` (its first long spelling: ``-ngl`` and
``--n-gpu-layers`` are both ``--gpu-layers``, ``--no-webui`` is ``--ui`` = false); a flag is true,
a two-value option a list, a repeated option its last value (``options`` keeps them all).

Given ``--port`` or ``--host`` (default host 127.0.0.1, port 8080; port 0 picks a free one) it
listens like the real server until SIGTERM or SIGINT (then exits 0), printing ``main: server is
listening on http://HOST:PORT - starting the main loop`` to stderr, and answers:

* ``GET /health``, ``/v1/health``: 200 ``{"status":"ok"}``; 503 ``Loading model`` for
  ``LLAMA_STANDIN_LOAD_SECONDS`` after it starts listening (every path is 503 then, as in llama.cpp);
* ``GET /models``, ``/v1/models``: the model list, its id the first ``--alias`` or the model path;
* with an API key (``--api-key``, ``--api-key-file``, ``LLAMA_API_KEY``): everything but the two
  health paths needs ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY``, else 401;
* CORS as llama-server b11549: ``--cors-origins`` ``*`` (the default) echoes the request's Origin,
  ``localhost`` echoes only a localhost Origin, anything else is sent verbatim; OPTIONS is answered
  before the key check with the ``--cors-credentials``/``--cors-methods``/``--cors-headers`` headers;
* anything else: 404 ``File Not Found`` (501 for a POST: the stand-in has no model).

Once listening, a ``--model`` path that is not a file makes it exit 1 with llama.cpp's load error,
after the load delay, as the real server does when the model cannot be loaded;
``LLAMA_STANDIN_FAIL=load`` does the same whatever the path.

Other environment: ``LLAMA_STANDIN_FLAGS`` (another table), ``LLAMA_STANDIN_BUFFER_TYPES``
(``-ot`` buffer types, default ``CPU``: a CPU build), ``LLAMA_STANDIN_DEVICES`` (``--device`` names
besides ``none``, default none), ``LLAMA_STANDIN_VERSION`` (the ``--version`` text; default
llama.cpp's ``version: BUILD (COMMIT)`` / ``built with ... for ...`` with the table's build),
``LLAMA_STANDIN_NO_SERVE`` (parse and record only, even with ``--port``).
``--version`` (stderr), ``-h`` (stdout), ``--list-devices``, ``--cache-list`` and
``--completion-bash`` print and exit 0.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

DEFAULT_TABLE = Path(__file__).resolve().parent.parent / "dslocal" / "engines" / "llama_server_flags.toml"
TRUTHY = ("on", "enabled", "true", "1")
FALSEY = ("off", "disabled", "false", "0")
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
FLT_MAX = struct.unpack("f", b"\xff\xff\x7f\x7f")[0]


class ArgError(Exception):
    """What llama.cpp prints before exiting 1."""


class BadValue(Exception):
    """A handler's exception: its text becomes the ``what`` of llama.cpp's handler error."""


def load_table(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    with open(path or os.environ.get("LLAMA_STANDIN_FLAGS") or DEFAULT_TABLE, "rb") as f:
        return tomllib.load(f)


# --- C++ number conversions -------------------------------------------------------------------------

_INT = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_FLOAT = re.compile(r"[ \t\n\v\f\r]*([+-]?(?:0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?"
                    r"|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf(?:inity)?|nan(?:\([0-9A-Za-z_]*\))?))",
                    re.IGNORECASE)


def stoi(text: str, name: str = "stoi") -> int:
    """``std::stoi``: a leading integer (``12abc`` is 12); none, or beyond int32: ``stoi``."""
    m = _INT.match(text)
    if not m:
        raise BadValue(name)
    value = int(m.group(1))
    if name == "stoi" and not INT_MIN <= value <= INT_MAX:
        raise BadValue(name)
    if name in ("stoul", "stoull") and abs(value) >= 2**64:
        raise BadValue(name)
    return value


def stof(text: str, name: str = "stof") -> float:
    """``std::stof``/``std::stod``: a leading number, ``inf`` or ``nan``; beyond the type's range raises."""
    m = _FLOAT.match(text)
    if not m:
        raise BadValue(name)
    token = m.group(1)
    try:
        hexadecimal = "x" in token.lower() and "n" not in token.lower()
        value = float.fromhex(token) if hexadecimal else float(token.split("(")[0])
    except (ValueError, OverflowError):
        raise BadValue(name) from None
    limit = FLT_MAX if name == "stof" else sys.float_info.max
    if math.isfinite(value) and abs(value) > limit:
        raise BadValue(name)
    return value


def getline_split(text: str, sep: str = ",") -> list[str]:
    """llama.cpp's ``string_split`` (``std::getline``): a final empty piece is dropped."""
    parts = text.split(sep)
    if parts and parts[-1] == "":
        parts.pop()
    return parts


# --- the parser ---------------------------------------------------------------------------------------


class Parser:
    def __init__(self, table: dict[str, Any]):
        self.table = table
        self.by_name: dict[str, tuple[dict[str, Any], bool]] = {}
        for opt in table["option"]:
            negative = set(opt.get("negative", ()))
            for name in opt["names"]:
                self.by_name[name] = (opt, name not in negative)
        self.buffer_types = [b for b in os.environ.get("LLAMA_STANDIN_BUFFER_TYPES", "CPU").split(",") if b]
        self.devices = [d for d in os.environ.get("LLAMA_STANDIN_DEVICES", "").split(",") if d]

    def check(self, opt: dict[str, Any], value: str) -> Any:
        """The value as llama.cpp's handler for ``opt`` takes it, or BadValue with its message."""
        kind = opt["kind"]
        conversion = opt.get("conversion")
        if value == "" and "empty" in opt:
            raise BadValue(opt["empty"])
        if kind in ("int", "uint"):
            if value in opt.get("keywords", ()):
                return value
            number = stoi(value, conversion or ("stoi" if kind == "int" else "stoul"))
            self.refuse(opt, number)
            if "removed" in opt:
                raise BadValue(opt["removed"])
            return number
        if kind == "float":
            number = stof(value, conversion or "stof")
            if "trailing" in opt and not _FLOAT.fullmatch(value.rstrip()):
                raise BadValue(opt["trailing"])
            self.refuse(opt, number)
            return number
        if kind in ("float-list", "uint-list"):
            convert = stof if kind == "float-list" else stoi
            for part in getline_split(value) or [""]:
                convert(part, conversion or ("stof" if kind == "float-list" else "stoull"))
                if "trailing" in opt and not (_FLOAT if kind == "float-list" else _INT).fullmatch(part.rstrip()):
                    raise BadValue(opt["trailing"])
            return value
        if kind == "refused":
            raise BadValue(opt["error"])
        if kind == "enum":
            if value not in opt["values"]:
                raise BadValue(opt["error"].replace("{value}", value))
            return value
        if kind == "enum-list":
            for item in getline_split(value) or [""]:
                if item not in opt["values"]:
                    raise BadValue(opt["error"].replace("{value}", item))
            return value
        if kind == "cpumask":
            digits = value[2:] if value[:2] in ("0x", "0X") else value
            if any(c not in "0123456789abcdefABCDEF" for c in digits):
                raise BadValue(opt["error"])
            return value
        if kind == "cpurange":
            if "-" not in value:
                raise BadValue(opt["error"])
            for part in value.split("-", 1):
                if part:
                    stoi(part, "stoull")
            return value
        if kind == "devices":
            for device in getline_split(value) or [""]:
                if device not in opt.get("values", ()) and device not in self.devices:
                    raise BadValue(opt["error"].replace("{value}", device))
            return value
        if kind == "tensor-overrides":
            for item in getline_split(value) or [""]:
                if "=" not in item:
                    raise BadValue(opt.get("error", "invalid value"))
                if item.split("=", 1)[1] not in self.buffer_types:
                    print("Available buffer types:\n" + "".join(f"  {b}\n" for b in sorted(self.buffer_types)), end="")
                    raise BadValue("unknown buffer type")
            return value
        if kind == "json":
            def no_constants(token: str) -> None:
                raise ValueError(f"invalid literal {token}")
            try:
                json.loads(value, parse_constant=no_constants)
            except ValueError as exc:
                raise BadValue(f"[json.exception.parse_error.101] parse error: {exc}") from None
            return value
        if kind == "file":
            try:
                with open(value, "rb"):
                    pass
            except OSError:
                raise BadValue(opt["error"].replace("{value}", value)) from None
            return value
        if kind == "directory":
            if not os.path.isdir(value):
                raise BadValue(opt["error"].replace("{value}", value))
            return value
        return value  # string, and strings whose checks are not copied ("validated")

    @staticmethod
    def refuse(opt: dict[str, Any], number: float) -> None:
        """``rejects`` holds what the handler refused among the values tried: -5 stands for any value
        below -1, the others for themselves; ``max`` is the largest value it takes."""
        rejects = opt.get("rejects", {})
        for probe, message in rejects.items():
            if (probe == "-5" and number < -1) or (probe != "-5" and number == float(probe)):
                raise BadValue(message)
        if "max" in opt and number > opt["max"]:
            raise BadValue(opt["max_error"])

    def parse(self, argv: list[str], environ: dict[str, str]) -> dict[str, Any]:
        parser = self.table["parser"]
        record: dict[str, Any] = {"argv": list(argv), "options": [], "values": {}, "env": {}}
        values = record["values"]

        def handler_error(arg: str, opt: dict[str, Any], what: str) -> ArgError:
            return ArgError(parser["handler_error"].format(arg=arg, what=what, usage=opt["usage"]))

        # environment first (common_params_parse_ex: "handle environment variables")
        for opt in self.table["option"]:
            env, env_neg = opt.get("env"), opt.get("env_negative")
            raw = None
            if env_neg and env_neg in environ:
                record["env"][env_neg] = environ[env_neg]
                raw = "0"
            elif env and env in environ:
                record["env"][env] = raw = environ[env]
            if raw is None:
                continue
            try:
                if opt["arity"] == 0:
                    if opt["kind"] == "bool":
                        if raw not in TRUTHY + FALSEY:
                            raise BadValue("invalid boolean value")
                        value: Any = raw in TRUTHY
                    elif raw in TRUTHY:
                        value = True
                    else:
                        continue
                else:
                    value = self.check(opt, raw)
            except BadValue as exc:
                raise ArgError(f'error while handling environment variable "{env}": {exc}\n\n') from None
            values[opt["key"]] = raw if opt["arity"] else value
            record["options"].append({"arg": env_neg if raw == "0" and env_neg else env, "key": opt["key"],
                                      "value": values[opt["key"]], "from": "env"})

        usage = False
        i = 0
        while i < len(argv):
            arg = argv[i]
            if parser.get("underscores_to_dashes", True) and arg.startswith("--"):
                arg = arg.replace("_", "-")
            if arg not in self.by_name:
                raise ArgError(parser["invalid_argument"].format(arg=arg))
            opt, positive = self.by_name[arg]
            env = opt.get("env")
            if env and (env in environ or opt.get("env_negative", "\0") in environ):
                print(parser["env_overridden"].format(env=env, arg=arg), file=sys.stderr)
            if opt["arity"] == 0:
                value = positive if opt["kind"] == "bool" else True
                record["options"].append({"arg": argv[i], "key": opt["key"], "value": value, "from": "argv"})
                values[opt["key"]] = value
                if opt["key"] == "--help":
                    usage = True
                elif opt.get("exits"):
                    self.exit_option(opt["key"])
                i += 1
                continue
            taken: list[str] = []
            for _ in range(opt["arity"]):
                if i + 1 >= len(argv):
                    raise handler_error(arg, opt, parser["missing_value"])
                i += 1
                taken.append(argv[i])
            try:
                if opt["arity"] == 1:
                    self.check(opt, taken[0])
            except BadValue as exc:
                raise handler_error(arg, opt, str(exc)) from None
            value = taken[0] if opt["arity"] == 1 else taken
            record["options"].append({"arg": argv[i - opt["arity"]], "key": opt["key"], "value": value, "from": "argv"})
            values[opt["key"]] = value
            i += 1
        if usage:
            for section in ("common", "sampling", "speculative", "example-specific"):
                print(f"----- {section} params -----\n")
                for opt in self.table["option"]:
                    if opt["section"] == section:
                        print(opt["usage"])
            raise SystemExit(0)
        return record

    def exit_option(self, key: str) -> None:
        if key == "--version":
            print(version_text(self.table), file=sys.stderr, end="")
        elif key == "--list-devices":
            print("Available devices:")
            for device in self.devices:
                print(f"  {device}: llama-server stand-in device")
        elif key == "--cache-list":
            print("model cache directory: (stand-in)\nnumber of models in cache: 0")
        elif key == "--completion-bash":
            names = " ".join(n for o in self.table["option"] for n in o["names"])
            print(f'_llama_completions() {{ COMPREPLY=( $(compgen -W "{names}" -- "${{COMP_WORDS[COMP_CWORD]}}") ); }}')
            print("complete -F _llama_completions llama-server")
        raise SystemExit(0)


def version_text(table: dict[str, Any]) -> str:
    custom = os.environ.get("LLAMA_STANDIN_VERSION")
    if custom is not None:
        return custom if custom.endswith("\n") else custom + "\n"
    build = table["source"].get("build", 0)
    return (f"version: {build} (standin)\n"
            f"built with Python {platform.python_version()} (llama-server stand-in) for {sys.platform}\n")


# --- the server ---------------------------------------------------------------------------------------

LOCALHOSTS = ("localhost", "127.0.0.1", "[::1]")


def cors_origin(setting: str, origin: str) -> str | None:
    """The Access-Control-Allow-Origin llama-server b11549 sends (None: no header)."""
    if setting == "*":
        return origin
    if setting == "localhost":
        m = re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://(\[[^\]]*\]|[^:/]*)(:\d+)?/?$", origin)
        return origin if m and m.group(1).lower() in LOCALHOSTS else None
    return setting


class StandIn:
    def __init__(self, table: dict[str, Any], record: dict[str, Any], api_keys: list[str]):
        self.table = table
        self.record = record
        self.values = record["values"]
        self.api_keys = api_keys
        self.started = time.monotonic()
        self.load_seconds = float(os.environ.get("LLAMA_STANDIN_LOAD_SECONDS", "0") or 0)
        aliases = [a for a in str(self.values.get("--alias", "")).split(",") if a]
        self.model_id = aliases[0] if aliases else str(self.values.get("--model", ""))
        self.aliases = aliases or [self.model_id]
        self.created = int(time.time())

    def loading(self) -> bool:
        return time.monotonic() - self.started < self.load_seconds

    def models(self) -> dict[str, Any]:
        model = {"name": self.model_id, "model": self.model_id, "modified_at": "", "size": "", "digest": "",
                 "type": "model", "description": "", "tags": [""], "capabilities": ["completion"],
                 "parameters": "", "details": {"parent_model": "", "format": "gguf", "family": "", "families": [""],
                                               "parameter_size": "", "quantization_level": ""}}
        entry = {"id": self.model_id, "aliases": self.aliases, "tags": [], "object": "model",
                 "created": self.created, "owned_by": "llamacpp", "meta": {"standin": True}}
        return {"models": [model], "object": "list", "data": [entry]}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self
        server_table = self.table["server"]
        values = self.values
        origins = str(values.get("--cors-origins", server_table["cors_origins_default"]))
        credentials = values.get("--cors-credentials", server_table["cors_credentials_default"])
        methods = str(values.get("--cors-methods", server_table["cors_methods_default"]))
        allow_headers = str(values.get("--cors-headers", server_table["cors_headers_default"]))
        public = set(server_table["public_paths_with_api_key"])

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "llama.cpp"
            sys_version = ""

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reply(self, status: int, body: str, extra: dict[str, str] | None = None) -> None:
                data = body.encode()
                self.send_response(status)
                allow = cors_origin(origins, self.headers.get("Origin", ""))
                if allow is not None:
                    self.send_header("Access-Control-Allow-Origin", allow)
                for name, value in (extra or {}).items():
                    self.send_header(name, value)
                is_json = body.startswith(("{", "["))
                self.send_header("Content-Type", "application/json; charset=utf-8" if is_json else "text/html")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def authorized(self) -> bool:
                if not standin.api_keys or self.path.split("?")[0] in public:
                    return True
                key = self.headers.get("Authorization", "") or self.headers.get("X-Api-Key", "")
                key = key.removeprefix("Bearer ")
                return key in standin.api_keys

            def do_OPTIONS(self) -> None:
                self.reply(200, "", {"Access-Control-Allow-Credentials": "true" if credentials else "false",
                                     "Access-Control-Allow-Methods": methods,
                                     "Access-Control-Allow-Headers": allow_headers})

            def answer(self, post: bool) -> None:
                if post:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length:
                        self.rfile.read(length)
                if standin.loading():
                    return self.reply(503, server_table["health_loading"])
                if not self.authorized():
                    return self.reply(401, server_table["unauthorized"])
                path = self.path.split("?")[0]
                if not post and path in ("/health", "/v1/health"):
                    return self.reply(200, server_table["health_ok"])
                if not post and path in ("/models", "/v1/models"):
                    return self.reply(200, json.dumps(standin.models(), separators=(",", ":")))
                if post:
                    return self.reply(501, json.dumps({"error": {
                        "message": "llama-server stand-in: no model, no inference", "type": "not_supported_error",
                        "code": 501}}, separators=(",", ":")))
                return self.reply(404, server_table["not_found"])

            def do_GET(self) -> None:
                self.answer(post=False)

            def do_HEAD(self) -> None:
                self.answer(post=False)

            def do_POST(self) -> None:
                self.answer(post=True)

        return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> tuple[Server, str]:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET

    class Bound(Server):
        address_family = family

    server = Bound((host.strip("[]"), port), handler)
    shown = f"[{host.strip('[]')}]" if family == socket.AF_INET6 else host
    return server, f"http://{shown}:{server.server_address[1]}"


def write_record(record: dict[str, Any]) -> None:
    path = os.environ.get("LLAMA_STANDIN_RECORD")
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, path)


def api_keys_of(values: dict[str, Any]) -> list[str]:
    keys = [k for k in str(values.get("--api-key", "")).split(",") if k]
    if "--api-key-file" in values:
        with open(values["--api-key-file"], encoding="utf-8") as f:
            keys += [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    return keys


def main(argv: list[str]) -> int:
    table = load_table()
    parser = Parser(table)
    try:
        record = parser.parse(argv, dict(os.environ))
    except ArgError as exc:
        print(str(exc), file=sys.stderr)
        write_record({"argv": list(argv), "error": str(exc), "exit": table["parser"]["exit_status_on_error"],
                      "pid": os.getpid()})
        return table["parser"]["exit_status_on_error"]
    record["pid"] = os.getpid()
    record["api_keys"] = api_keys = api_keys_of(record["values"])
    given = "--port" in record["values"] or "--host" in record["values"]
    serve = given and not os.environ.get("LLAMA_STANDIN_NO_SERVE")
    if not serve:
        write_record(record)
        return 0

    standin = StandIn(table, record, api_keys)
    handler = standin.handler()
    hosts = getline_split(str(record["values"].get("--host", table["server"]["default_host"])))
    port = int(stoi(str(record["values"].get("--port", table["server"]["default_port"]))))
    servers: list[Server] = []
    try:
        for host in hosts:
            if host.endswith(".sock"):
                raise OSError(f"UNIX socket {host}: not supported by the stand-in")
            server, url = bind(host, port, handler)
            servers.append(server)
            record.setdefault("listening", []).append(url)
    except OSError as exc:
        print(f"srv    start: couldn't bind HTTP server socket, hostname: {','.join(hosts)}, port: {port} ({exc})",
              file=sys.stderr)
        record["error"] = str(exc)
        write_record(record)
        return 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for server in servers:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    for url in record["listening"]:
        print(f"main: server is listening on {url} - starting the main loop", file=sys.stderr, flush=True)
    write_record(record)

    model = record["values"].get("--model")
    fail = os.environ.get("LLAMA_STANDIN_FAIL") == "load" or (model is not None and not os.path.isfile(model))
    while not stop.wait(0.05):
        if fail and not standin.loading():
            print(f"llama_model_load: error loading model: failed to open {model!r} (llama-server stand-in)",
                  file=sys.stderr)
            print("main: exiting due to model loading error", file=sys.stderr, flush=True)
            for server in servers:
                server.shutdown()
            return 1
    for server in servers:
        server.shutdown()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
