"""llama-server's option table (dslocal/engines/llama_server_flags.toml, read out of llama.cpp b11549's
own parser) and the llama-server stand-in that parses argv by it (tests/llama_server_standin.py).

The table must hold every argument dslocal generates, with the arity llama.cpp gives it; the stand-in
must accept and refuse command lines as llama-server does, record what it got, and answer /health
so that a launcher's readiness wait works against it. Where the xllamacpp wheel the table came from is
installed, its compiled parser (llama.cpp's common_params_parse) is the referee for the stand-in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
TABLE_PATH = REPO / "dslocal" / "engines" / "llama_server_flags.toml"
STANDIN = REPO / "tests" / "llama_server_standin.py"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy

# What dslocal generates (dslocal/engines/launch.py) or may generate from a plan: spelling, arity.
GENERATED: dict[str, tuple[str, int]] = {
    "model": ("--model", 1),
    "alias": ("--alias", 1),
    "ctx_size": ("--ctx-size", 1),
    "n_gpu_layers": ("--n-gpu-layers", 1),
    "threads": ("--threads", 1),
    "threads_batch": ("--threads-batch", 1),
    "cache_type_k": ("--cache-type-k", 1),
    "cache_type_v": ("--cache-type-v", 1),
    "flash_attn": ("--flash-attn", 1),
    "override_tensor": ("--override-tensor", 1),
    "n_cpu_moe": ("--n-cpu-moe", 1),
    "cpu_moe": ("--cpu-moe", 0),
    "jinja": ("--jinja", 0),
    "chat_template": ("--chat-template", 1),
    "chat_template_kwargs": ("--chat-template-kwargs", 1),
    "reasoning_format": ("--reasoning-format", 1),
    "host": ("--host", 1),
    "port": ("--port", 1),
    "api_key": ("--api-key", 1),
    "api_key_file": ("--api-key-file", 1),
    "parallel": ("--parallel", 1),
    "no_repack": ("--no-repack", 0),
    "no_webui": ("--no-webui", 0),
    "cors_origins": ("--cors-origins", 1),
    "load_mode": ("--load-mode", 1),
    "split_mode": ("--split-mode", 1),
    "tensor_split": ("--tensor-split", 1),
    "main_gpu": ("--main-gpu", 1),
    "fit": ("--fit", 1),
    "fit_target": ("--fit-target", 1),
    "fit_ctx": ("--fit-ctx", 1),
    "offline": ("--offline", 0),
    "verbose": ("--verbose", 0),
}
KV_CACHE_TYPES = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"}
MOE_RULE = r"blk\.([3-9]|[1-5][0-9]|60)\.ffn_.*_exps\.=CPU"


@pytest.fixture(scope="module")
def table() -> dict[str, Any]:
    with open(TABLE_PATH, "rb") as f:
        return tomllib.load(f)


@pytest.fixture(scope="module")
def options(table) -> dict[str, dict[str, Any]]:
    """Every spelling -> its option."""
    return {name: opt for opt in table["option"] for name in opt["names"]}


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "DeepSeek-V3-Q2_K-00001-of-00002.gguf"
    path.write_bytes(b"GGUF")  # the stand-in only checks that the file is there
    return path


def full_command_line(model: Path) -> list[str]:
    return [
        "--model", str(model), "--alias", "deepseek-v3", "--ctx-size", "8192", "--n-gpu-layers", "12",
        "--threads", "8", "--threads-batch", "16", "--cache-type-k", "q8_0", "--cache-type-v", "q8_0",
        "--flash-attn", "on", "--override-tensor", MOE_RULE, "--override-tensor", r"exps=CPU",
        "--n-cpu-moe", "3", "--cpu-moe", "--jinja", "--reasoning-format", "deepseek",
        "--chat-template-kwargs", '{"thinking": true}', "--parallel", "1", "--no-repack", "--no-webui",
        "--cors-origins", "", "--load-mode", "mmap", "--fit", "off", "--offline",
    ]


def standin(args: list[str], tmp_path: Path, env: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    record = tmp_path / "record.json"
    record.unlink(missing_ok=True)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_ARG_", "LLAMA_STANDIN_"))}
    environ.pop("LLAMA_API_KEY", None)
    environ.update({"LLAMA_STANDIN_RECORD": str(record), **(env or {})})
    done = subprocess.run([str(STANDIN), *args], check=False, capture_output=True, text=True, env=environ,
                          timeout=timeout)
    return done, json.loads(record.read_text()) if record.exists() else None


class Served:
    def __init__(self, args: list[str], tmp_path: Path, env: dict[str, str] | None = None):
        self.record_path = tmp_path / "served.json"
        self.record_path.unlink(missing_ok=True)  # a stopped stand-in's record says where it was
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_ARG_", "LLAMA_STANDIN_"))}
        environ.pop("LLAMA_API_KEY", None)
        environ.update({"LLAMA_STANDIN_RECORD": str(self.record_path), **(env or {})})
        self.process = subprocess.Popen([sys.executable, str(STANDIN), *args], env=environ,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.record_path.exists():
                record = json.loads(self.record_path.read_text())
                if record.get("listening"):
                    self.record = record
                    self.base_url = record["listening"][0]
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.process.kill()
        raise AssertionError(f"the stand-in did not listen: {self.process.communicate()}")

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.base_url + path, headers=headers or {}, method=method)
        try:
            with _DIRECT.open(request, timeout=5) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=10)
        return self.process.returncode, err


# --- the table ------------------------------------------------------------------------------------------


def test_the_table_parses_and_says_which_llama_cpp_it_came_from(table, options):
    source = table["source"]
    assert source["repository"] == "https://github.com/ggml-org/llama.cpp"
    assert (source["tag"], source["build"]) == ("b11549", 11549)
    assert source["xllamacpp_version"] == "2026.10.11549" and len(source["xllamacpp_revision"]) == 40
    assert source["date"] == "2026-10-10"
    assert len(table["option"]) > 200
    spellings = [name for opt in table["option"] for name in opt["names"]]
    assert len(spellings) == len(set(spellings)), "a spelling belongs to one option"
    for opt in table["option"]:
        assert set(opt.get("negative", ())) <= set(opt["names"])
        assert opt["arity"] in (0, 1, 2) and (opt["arity"] == 0) == ("hint" not in opt), opt["key"]
        assert opt["usage"].startswith(opt["names"][0]), opt["key"]


@pytest.mark.parametrize("what", sorted(GENERATED))
def test_every_flag_dslocal_generates_is_a_llama_server_option_with_its_arity(table, options, what):
    spelling, arity = GENERATED[what]
    assert table["dslocal"]["flags"][what] == spelling
    assert spelling in options, f"{spelling} is not an option of llama-server {table['source']['tag']}"
    assert options[spelling]["arity"] == arity
    if arity == 0:
        assert options[spelling]["kind"] in ("flag", "bool")


def test_the_table_lists_what_dslocal_generates_and_nothing_unchecked(table):
    assert set(table["dslocal"]["flags"]) == set(GENERATED)


def test_spellings_and_values_dslocal_relies_on(options):
    assert options["-m"] is options["--model"]
    assert options["-c"] is options["--ctx-size"]
    assert options["-ngl"] is options["--n-gpu-layers"] is options["--gpu-layers"]
    assert options["--n-gpu-layers"]["kind"] == "int" and set(options["-ngl"]["keywords"]) == {"auto", "all"}
    assert options["-t"] is options["--threads"] and options["-tb"] is options["--threads-batch"]
    assert options["-ctk"] is options["--cache-type-k"] and options["-ctv"] is options["--cache-type-v"]
    assert set(options["--cache-type-k"]["values"]) == set(options["--cache-type-v"]["values"]) == KV_CACHE_TYPES
    assert options["-fa"] is options["--flash-attn"]
    assert {"on", "off", "auto"} <= set(options["--flash-attn"]["values"])
    assert "maybe" not in options["--flash-attn"]["values"]
    assert options["-ot"] is options["--override-tensor"] and options["-ot"]["kind"] == "tensor-overrides"
    assert options["-ncmoe"] is options["--n-cpu-moe"] and options["-cmoe"] is options["--cpu-moe"]
    assert options["--jinja"]["negative"] == ["--no-jinja"]
    assert set(options["--reasoning-format"]["values"]) == {"none", "auto", "deepseek", "deepseek-legacy"}
    assert options["--chat-template-kwargs"]["kind"] == "json"
    assert options["-np"] is options["--parallel"] and options["-a"] is options["--alias"]
    assert options["--no-repack"] is options["-nr"] is options["--repack"]
    assert set(options["--repack"]["negative"]) == {"-nr", "--no-repack"}
    assert options["--no-webui"] is options["--ui"] and "--no-webui" in options["--ui"]["negative"]
    assert set(options["--load-mode"]["values"]) == {"auto", "none", "mmap", "mlock", "mmap+mlock", "dio"}
    assert set(options["--split-mode"]["values"]) == {"none", "layer", "row", "tensor"}
    assert options["--api-key"]["env"] == "LLAMA_API_KEY"
    assert options["--cors-origins"]["env"] == "LLAMA_ARG_CORS_ORIGINS"


@pytest.mark.parametrize("gone", ["--mlock", "--mmap", "--no-mmap", "--no-extra-bufts", "--direct-io"])
def test_spellings_this_llama_cpp_no_longer_has(options, gone):
    assert gone not in options


def test_what_ollama_passes_its_bundled_llama_server_is_in_the_table(table, options):
    ollama = table["ollama_v0_32_15"]
    assert ollama["llama_cpp"] == "b10488"
    assert all(flag in options for flag in ollama["flags"])


def test_the_servers_defaults_are_recorded(table):
    server = table["server"]
    assert (server["default_host"], server["default_port"]) == ("127.0.0.1", 8080)
    assert server["cors_origins_default"] == "*", "llama-server allows every origin unless told otherwise"
    assert server["public_paths_with_api_key"] == ["/health", "/v1/health"]


def test_the_launchers_arguments_are_accepted_as_llama_server_would(tmp_path, model):
    """dslocal/engines/launch.py's command line, every option on, through the stand-in's parser."""
    from dslocal.engines.launch import Launch

    launch = Launch(model=model, alias="deepseek-v3", n_ctx=8192, n_gpu_layers=12, threads=8, cache_type="q8_0",
                    flash_attn="on", override_tensors=(MOE_RULE, "exps=CPU"), n_cpu_moe=3, port=0, api_key="k-1",
                    reasoning_format="deepseek-legacy", chat_template="{{ messages }}", no_repack=True, verbose=True)
    done, record = standin(launch.args(), tmp_path, env={**launch.environment(), "LLAMA_STANDIN_NO_SERVE": "1"})
    assert done.returncode == 0, done.stderr
    assert record["values"]["--model"] == str(model) and record["api_keys"] == ["k-1"]


# --- the stand-in: parsing -------------------------------------------------------------------------------


def test_the_standin_is_an_executable_script_that_says_what_it_is():
    assert os.access(STANDIN, os.X_OK)
    assert STANDIN.read_text().startswith("#!/usr/bin/env python3\n")
    assert "STAND-IN" in STANDIN.read_text().split('"""')[1]


def test_the_standin_runs_as_llama_server_from_path(tmp_path):
    """A launcher finds ``llama-server`` on PATH: a symlink to the stand-in still finds its table."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "llama-server").symlink_to(STANDIN)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(["llama-server", "--version"], check=False, capture_output=True, text=True, env=env,
                          timeout=30)
    assert done.returncode == 0 and done.stderr.startswith("version: ")


def test_the_standin_accepts_a_full_command_line_and_records_it(tmp_path, model):
    done, record = standin(full_command_line(model), tmp_path)
    assert done.returncode == 0, done.stderr
    values = record["values"]
    assert values["--model"] == str(model)
    assert values["--ctx-size"] == "8192" and values["--gpu-layers"] == "12"
    assert values["--threads"] == "8" and values["--threads-batch"] == "16"
    assert values["--cache-type-k"] == values["--cache-type-v"] == "q8_0"
    assert values["--flash-attn"] == "on" and values["--reasoning-format"] == "deepseek"
    assert values["--override-tensor"] == "exps=CPU", "the last one"
    assert [o["value"] for o in record["options"] if o["key"] == "--override-tensor"] == [MOE_RULE, "exps=CPU"]
    assert values["--n-cpu-moe"] == "3" and values["--cpu-moe"] is True and values["--jinja"] is True
    assert values["--chat-template-kwargs"] == '{"thinking": true}'
    assert values["--repack"] is False and values["--ui"] is False, "the negative spellings"
    assert values["--cors-origins"] == ""
    assert record["argv"] == full_command_line(model)
    assert "listening" not in record, "no --host/--port: nothing to serve"


def test_short_spellings_underscores_and_values_that_look_like_flags(tmp_path):
    done, record = standin(["-c", "4096", "--n_gpu_layers", "auto", "-ngl", "-1", "-a", "--x", "-fa", "auto"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert record["values"]["--gpu-layers"] == "-1" and record["values"]["--alias"] == "--x"
    assert record["options"][1]["arg"] == "--n_gpu_layers"


@pytest.mark.parametrize("args, message", [
    (["--mlock"], "error: invalid argument: --mlock"),
    (["--port=8080"], "error: invalid argument: --port=8080"),
    (["model.gguf"], "error: invalid argument: model.gguf"),
    (["--no-extra-bufts"], "error: invalid argument: --no-extra-bufts"),
])
def test_an_unknown_argument_is_refused_with_llama_cpps_words(tmp_path, args, message):
    done, record = standin(["-c", "512", *args], tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == message
    assert record["error"].startswith(message) and record["exit"] == 1


def test_a_missing_value_is_refused_with_the_options_usage(tmp_path):
    done, _ = standin(["--ctx-size", "512", "--port"], tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith('error while handling argument "--port": expected value for argument\n\nusage:\n'
                                  "--port PORT ")
    assert done.stderr.rstrip().endswith("to show complete usage, run with -h")


@pytest.mark.parametrize("args, what", [
    (["-fa", "maybe"], "error: unknown value for --flash-attn: 'maybe'"),
    (["--flash-attn", "ON"], "error: unknown value for --flash-attn: 'ON'"),
    (["--reasoning-format", "bogus"], "Unknown reasoning format: bogus"),
    (["-ctk", "q9"], "Unsupported cache type: q9"),
    (["--cache-type-v", "Q8_0"], "Unsupported cache type: Q8_0"),
    (["--split-mode", "rows"], "invalid value"),
    (["-c", "abc"], "stoi"),
    (["-c", "99999999999"], "stoi"),
    (["-np", "0"], "error: invalid value for n_parallel"),
    (["--n-cpu-moe", "-1"], "invalid value"),
    (["-ot", r"blk\.1\.ffn_.*_exps\."], "invalid value"),
    (["-ot", "exps=CUDA0"], "unknown buffer type"),
    (["--chat-template-kwargs", "{thinking: true}"], "[json.exception.parse_error.101]"),
])
def test_a_bad_value_is_refused_as_llama_cpp_refuses_it(tmp_path, args, what):
    done, _ = standin(args, tmp_path)
    assert done.returncode == 1
    first = next(line for line in done.stderr.splitlines() if line.startswith("error"))
    assert first.startswith(f'error while handling argument "{args[0]}": {what}')


def test_numbers_are_read_as_cpp_reads_them(tmp_path):
    """std::stoi/std::stof take a leading number: "12abc" is 12, " 7" is 7; lists go item by item."""
    done, record = standin(["-c", "12abc", "-t", " 7", "--temp", "1e-3", "-ts", "3,1", "-fitt", "512,"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert record["values"]["--ctx-size"] == "12abc" and record["values"]["--threads"] == " 7"
    done, _ = standin(["-ts", "3,x"], tmp_path)
    assert done.returncode == 1 and 'error while handling argument "-ts": stof' in done.stderr


def test_environment_variables_count_and_the_command_line_wins(tmp_path):
    done, record = standin(["--ctx-size", "1024"], tmp_path,
                           env={"LLAMA_ARG_CTX_SIZE": "2048", "LLAMA_API_KEY": "k-123", "LLAMA_ARG_NO_JINJA": "1"})
    assert done.returncode == 0, done.stderr
    assert record["values"]["--ctx-size"] == "1024"
    assert "warn: LLAMA_ARG_CTX_SIZE environment variable is set, but will be overwritten" in done.stderr
    assert record["values"]["--jinja"] is False
    assert record["api_keys"] == ["k-123"] and record["env"]["LLAMA_API_KEY"] == "k-123"
    done, _ = standin([], tmp_path, env={"LLAMA_ARG_FLASH_ATTN": "sometimes"})
    assert done.returncode == 1 and 'error while handling environment variable "LLAMA_ARG_FLASH_ATTN"' in done.stderr


def test_version_is_printed_like_llama_cpps_and_exits_0(tmp_path, table):
    done, _ = standin(["--version"], tmp_path)
    assert done.returncode == 0 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == f"version: {table['source']['build']} (standin)"
    assert lines[1].startswith("built with ") and " for " in lines[1]
    done, _ = standin(["--version"], tmp_path, env={"LLAMA_STANDIN_VERSION": table["source"]["version_output"][0]})
    assert done.stderr == "version: 0.6.0-dev (build 0, commit unknown)\n"


# --- the stand-in: serving -------------------------------------------------------------------------------


def test_it_serves_health_and_models_until_sigterm(tmp_path, model):
    served = Served([*full_command_line(model), "--host", "127.0.0.1", "--port", "0"], tmp_path)
    try:
        status, headers, body = served.get("/health")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert headers["Server"].startswith("llama.cpp")
        status, _, body = served.get("/v1/models")
        assert status == 200
        models = json.loads(body)
        assert models["object"] == "list" and models["data"][0]["id"] == "deepseek-v3"
        assert models["data"][0]["owned_by"] == "llamacpp"
        assert served.get("/nope")[0] == 404
        assert served.record["values"]["--port"] == "0" and served.base_url.startswith("http://127.0.0.1:")
        assert served.get("/health", {"Origin": "http://evil.example"})[1]["Access-Control-Allow-Origin"] == "", \
            "--cors-origins '': an empty Access-Control-Allow-Origin, which no page's origin matches"
    finally:
        code, err = served.stop()
    assert code == 0
    assert f"main: server is listening on {served.base_url}" in err


def test_an_api_key_guards_all_but_health(tmp_path, model):
    served = Served(["-m", str(model), "--port", "0"], tmp_path, env={"LLAMA_API_KEY": "k-123"})
    try:
        assert served.get("/health")[0] == 200
        status, _, body = served.get("/v1/models")
        assert status == 401 and json.loads(body)["error"]["type"] == "authentication_error"
        assert served.get("/v1/models", {"Authorization": "Bearer k-123"})[0] == 200
        assert served.get("/v1/models", {"X-Api-Key": "k-123"})[0] == 200
        assert served.get("/v1/models", {"Authorization": "Bearer wrong"})[0] == 401
    finally:
        served.stop()


def test_cors_is_open_by_default_like_llama_servers(tmp_path, model):
    served = Served(["-m", str(model), "--port", "0"], tmp_path)
    try:
        _, headers, _ = served.get("/v1/models", {"Origin": "http://evil.example"})
        assert headers["Access-Control-Allow-Origin"] == "http://evil.example"
        status, headers, _ = served.get("/v1/chat/completions", {"Origin": "http://evil.example"}, method="OPTIONS")
        assert status == 200 and headers["Access-Control-Allow-Credentials"] == "true"
    finally:
        served.stop()
    served = Served(["-m", str(model), "--port", "0", "--cors-origins", "localhost"], tmp_path)
    try:
        assert "Access-Control-Allow-Origin" not in served.get("/health", {"Origin": "http://evil.example"})[1]
        local = served.get("/health", {"Origin": "http://localhost:3000"})[1]
        assert local["Access-Control-Allow-Origin"] == "http://localhost:3000"
    finally:
        served.stop()


def test_loading_answers_503_then_a_missing_model_exits_1(tmp_path):
    served = Served(["-m", str(tmp_path / "absent.gguf"), "--port", "0"], tmp_path,
                    env={"LLAMA_STANDIN_LOAD_SECONDS": "0.6"})
    status, _, body = served.get("/health")
    assert status == 503 and json.loads(body)["error"]["message"] == "Loading model"
    assert served.process.wait(timeout=10) == 1
    assert "main: exiting due to model loading error" in served.process.stderr.read()


# --- the referee: llama.cpp's own parser, compiled into the xllamacpp wheel the table came from -----------

_REFEREE = textwrap.dedent("""
    import ctypes, json, sys, xllamacpp
    lib = ctypes.CDLL(xllamacpp.xllamacpp.__file__)
    parse = getattr(lib, "_Z19common_params_parseiPPcR13common_params13llama_examplePFviS0_E")
    parse.restype = ctypes.c_bool
    parse.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    def run(args):
        params = xllamacpp.CommonParams()  # a cdef class whose first field is the common_params itself
        argv = ["llama-server", *args]
        c_argv = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
        return bool(parse(len(argv), c_argv, id(params) + 16, 12, None)), params  # 12: LLAMA_EXAMPLE_SERVER
    ok, params = run(["-c", "4321"])
    assert ok and params.n_ctx == 4321, "the common_params is not where it was"
    ok, _ = run(json.loads(sys.argv[1]))
    print("@@" + json.dumps(ok))
""")

REFEREE_CASES = [
    ["--offline", "-m", "/x/m.gguf", "-c", "8192", "-ngl", "12", "-t", "8", "-tb", "16", "-ctk", "q8_0",
     "-ctv", "q8_0", "-fa", "on", "-ot", MOE_RULE, "-ncmoe", "3", "-cmoe", "--jinja", "--reasoning-format",
     "deepseek-legacy", "--chat-template-kwargs", "{}", "--host", "127.0.0.1", "--port", "8080", "--api-key",
     "k", "-a", "ds", "-np", "1", "--no-repack", "--no-webui", "--cors-origins", "", "--load-mode", "mmap",
     "--fit", "off", "-fitt", "512", "-fitc", "4096", "-sm", "layer", "-mg", "0", "-ts", "3,1"],
    ["--mlock"], ["--no-mmap"], ["--port=8080"], ["x.gguf"], ["--port"], ["-fa", "maybe"], ["-fa", "ON"],
    ["-fa", "enabled"], ["--reasoning-format", "bogus"], ["-ctk", "q9"], ["-c", "abc"], ["-c", "12abc"],
    ["-np", "0"], ["-np", "-1"], ["-ncmoe", "-1"], ["-ot", "exps"], ["-ot", "exps=CUDA0"], ["-ngl", "all"],
    ["-ngl", "lots"], ["--chat-template-kwargs", "{bad"], ["--ctx_size", "5"], ["--draft", "4"],
    ["--no-ui", "--webui"], ["--fit", "auto"], ["-lm", "mmap+mlock"], ["-lm", "MMAP"],
]


@pytest.mark.parametrize("args", REFEREE_CASES, ids=lambda a: " ".join(a)[:60] or "empty")
def test_the_standin_agrees_with_llama_cpps_own_parser(tmp_path, table, args):
    xllamacpp = pytest.importorskip("xllamacpp")
    if xllamacpp.__version__ != table["source"]["xllamacpp_version"]:
        pytest.skip(f"xllamacpp {xllamacpp.__version__} is not the {table['source']['xllamacpp_version']} the "
                    "table came from: regenerate the table")
    referee = subprocess.run([sys.executable, "-c", _REFEREE, json.dumps(args)], check=False, capture_output=True,
                             text=True, timeout=60, cwd=tmp_path, env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9/"})
    assert "@@" in referee.stdout, referee.stderr
    accepted = json.loads(referee.stdout.split("@@")[1])
    done, _ = standin(args, tmp_path, env={"LLAMA_STANDIN_NO_SERVE": "1"})
    assert (done.returncode == 0) == accepted, done.stderr
    if not accepted:
        def first_error(text: str) -> str:
            return next((line for line in text.splitlines() if line.startswith("error")), "")
        ours, theirs = first_error(done.stderr), first_error(referee.stderr)
        if theirs.startswith(("error while handling argument \"--chat-template-kwargs\"",)):
            ours, theirs = ours.split(": [json")[0], theirs.split(": [json")[0]  # nlohmann's text, not copied
        assert ours == theirs
