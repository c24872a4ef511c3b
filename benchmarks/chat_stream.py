"""The chat pipeline's cost at 2,000 tokens per second: parser + backend + terminal renderer against
reading the raw stream, side by side in one run.

A real loopback HTTP server streams an Ollama ``/api/chat`` answer as NDJSON, one token per line, paced
at RATE tokens per second: reasoning inline in ``<think>`` tags (so the parser works on every token), then
a Markdown answer (headings, lists, code blocks). Two clients read the same stream:

* raw: ``requests`` + ``json.loads`` of every line, nothing else (the floor any client pays);
* dslocal: :class:`dslocal.chat.backends.ollama.OllamaChat` (reasoning parser, stats) into the chat REPL's
  :class:`dslocal.cli.chat_render.RichRenderer` (Live Markdown on a 100x40 terminal, written to a pipe).

Printed: for the paced stream, each client's wall time and the overhead (how much later dslocal finishes
than the raw reader, i.e. how far rendering makes the text lag); the CPU seconds each client spent per
1,000 tokens; and, unpaced, how many tokens per second each can take at most. Target: paced overhead
under 5%. Cases alternate and repeat; the medians decide. Exit code 0 on PASS.

    .venv/bin/python benchmarks/chat_stream.py [--tokens 20000] [--rate 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import multiprocessing
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from dslocal.chat.backends.ollama import OllamaChat  # noqa: E402
from dslocal.chat.events import ChatOptions, Message  # noqa: E402
from dslocal.cli.chat_render import RichRenderer  # noqa: E402
from dslocal.ollama.client import OllamaClient  # noqa: E402

ANSWER_BLOCK = """## Step {n}

The sky looks blue because air molecules scatter **short wavelengths** more than long ones
(Rayleigh scattering, proportional to 1/λ⁴). Some consequences:

- sunsets are red, the light crosses more air;
- the sky is paler near the horizon;
- on the Moon the sky is black.

```python
def rayleigh(wavelength_nm: float) -> float:
    return (550.0 / wavelength_nm) ** 4
```

"""
THINKING_LINE = "Let me think about scattering: blue light, 450 nm, scatters about 5.5 times more than red. "


def tokens(n: int) -> list[str]:
    """About 4 characters per token; 40% reasoning in <think> tags, then the Markdown answer."""
    think_chars = int(n * 0.4) * 4
    thinking = (THINKING_LINE * (think_chars // len(THINKING_LINE) + 1))[:think_chars]
    answer_n = n - int(n * 0.4) - 2
    answer, i = "", 0
    while len(answer) < answer_n * 4:
        answer += ANSWER_BLOCK.format(n=i)
        i += 1
    answer = answer[: answer_n * 4]
    pieces = ["<think>"] + [thinking[i:i + 4] for i in range(0, len(thinking), 4)] + ["</think>"]
    pieces += [answer[i:i + 4] for i in range(0, len(answer), 4)]
    return pieces


def lines(pieces: list[str]) -> list[bytes]:
    out = []
    for piece in pieces:
        out.append(json.dumps({"model": "bench", "created_at": "2026-12-02T00:00:00Z",
                               "message": {"role": "assistant", "content": piece}, "done": False}).encode() + b"\n")
    out.append(json.dumps({"model": "bench", "created_at": "2026-12-02T00:00:00Z",
                           "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                           "total_duration": 1, "load_duration": 1, "prompt_eval_count": 10,
                           "prompt_eval_duration": 1000, "eval_count": len(pieces),
                           "eval_duration": 10**9}).encode() + b"\n")
    return out


class Streamer:
    """A loopback server that writes the prepared NDJSON lines at ``rate`` lines per second (0: at once).
    It runs in its own process, so the clients' CPU time is theirs alone."""

    def __init__(self, body: list[bytes]) -> None:
        self.body = body
        self.rate = 0.0
        streamer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rate = float(self.path.partition("rate=")[2] or 0)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                start = time.perf_counter()
                for i, line in enumerate(streamer.body):
                    if rate:
                        delay = start + i / rate - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    try:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client read the final line and left
                try:
                    self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    return

            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # noqa: ANN001
                pass  # a client closing its keep-alive connection is not news

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def start(self) -> None:
        self.process = multiprocessing.get_context("fork").Process(target=self.server.serve_forever, daemon=True)
        self.process.start()
        self.server.socket.close()

    def url(self, rate: float) -> str:
        return f"http://127.0.0.1:{self.port}/r?rate={rate:g}"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: Live redraws in its own
    return usage.ru_utime + usage.ru_stime


def read_raw(url: str) -> tuple[float, float, int]:
    started, cpu0 = time.perf_counter(), cpu()
    response = requests.post(url, json={"model": "bench"}, stream=True)
    n = 0
    for line in response.iter_lines():
        if line:
            json.loads(line)
            n += 1
    return time.perf_counter() - started, cpu() - cpu0, n


def read_dslocal(url: str) -> tuple[float, float, int]:
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=100, height=40, color_system="truecolor")
    client = OllamaClient(url.split("/r?")[0])
    client.chat_stream = lambda body, timeout=None: client._stream(url.split(client.url)[1], body, timeout)  # type: ignore[method-assign]
    backend = OllamaChat(client, "bench")
    started, cpu0 = time.perf_counter(), cpu()
    n = 0
    with RichRenderer(console, "fold") as renderer:
        for event in backend.stream([Message("user", "Why is the sky blue?")], ChatOptions()):
            renderer.event(event)
            n += 1
    wall = time.perf_counter() - started
    return wall, cpu() - cpu0, n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=20000)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pieces = tokens(args.tokens)
    streamer = Streamer(lines(pieces))
    streamer.start()
    results: dict[str, list[tuple[float, float, int]]] = {"raw": [], "dslocal": []}
    unpaced: dict[str, list[tuple[float, float, int]]] = {"raw": [], "dslocal": []}
    readers = {"raw": read_raw, "dslocal": read_dslocal}
    print(f"{len(pieces)} tokens ({sum(map(len, pieces))} characters), paced at {args.rate:g} tok/s")
    for round_no in range(args.repeat):
        order = ["raw", "dslocal"] if round_no % 2 == 0 else ["dslocal", "raw"]
        for name in order:
            results[name].append(readers[name](streamer.url(args.rate)))
            unpaced[name].append(readers[name](streamer.url(0)))
            wall, used, _ = results[name][-1]
            print(f"  round {round_no + 1} {name:8s} paced {wall:7.3f} s wall, {used:6.3f} s CPU;"
                  f" unpaced {unpaced[name][-1][0]:6.3f} s")
    wall = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
    used = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
    top = {k: len(pieces) / statistics.median(r[0] for r in v) for k, v in unpaced.items()}
    overhead = wall["dslocal"] / wall["raw"] - 1
    print()
    print(f"{'client':10s} {'paced wall':>11s} {'CPU / 1k tokens':>16s} {'unpaced tok/s':>14s}")
    for name in ("raw", "dslocal"):
        print(f"{name:10s} {wall[name]:10.3f}s {used[name] / len(pieces) * 1000:15.3f}s {top[name]:14.0f}")
    verdict = "PASS" if overhead < 0.05 else "FAIL"
    print(f"\npaced overhead: {overhead * 100:+.2f}% (target under 5%): {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
