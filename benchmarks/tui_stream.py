"""The chat screen keeping up with a fast model: 5,000 tokens at 500 tokens per second, headless.

The loopback server of ``chat_stream.py`` (its own process) streams an Ollama ``/api/chat`` answer as
NDJSON, one token per line: 40% reasoning inline in ``<think>`` tags, then Markdown (headings, lists, code
blocks). The chat screen reads it the way it reads Ollama: ``services.chat`` gives a Target whose backend
is :class:`dslocal.chat.backends.ollama.OllamaChat` (the reasoning parser, the stats), the screen's
:class:`dslocal.chat.session.ChatSession` keeps a real history store, and the screen draws in a Textual
app run headless (``app.run_test()``, 100x40: everything but the terminal write).

The backend is wrapped to stamp each delta as the client receives it; a draw is stamped when the screen
has painted it (its compositor's first refresh after the screen's ``render_hook`` reported the draw). The
lag of a chunk is the time from its arrival to the first paint that contains it. Printed: the lag at
25/50/75% of the stream (the median over the chunks of the 2.5% of the stream up to that point: one chunk's
lag depends on where it fell between two draws; a backlog would make these grow), the lag of the last chunk,
the worst and 95th percentile lag, the draws per second and the CPU spent per 1,000 tokens (the client,
parser and session included); and the time to the first screen: ``make_app(...)`` to the chat screen's
first paint, in this process and in a fresh one (imports included), and to a model connected. A reference
run streams the same answer into Textual's own ``Markdown`` widget (``Markdown.append``, what
``MarkdownStream`` calls) in place of the screen's answer body; it is printed, not judged.

Targets: the last chunk drawn less than 100 ms after it arrived, no quartile over 100 ms (no growing
backlog), and the first screen in under 1 s. Exit code 0 on PASS.

    .venv/bin/python benchmarks/tui_stream.py [--tokens 5000] [--rate 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

SIZE = (100, 40)
LAG_TARGET = 0.100
FIRST_SCREEN_TARGET = 1.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def services(chat: Any, store: Any) -> Any:
    """The TUI's services for the chat screen alone: one model, a real store, nothing else does anything."""
    from dslocal.tui.services import OllamaState, Services

    def nothing(*_args: Any, **_kwargs: Any) -> Any:
        return None

    return Services(hardware=nothing, verdicts=lambda _p: [], catalog=list, plan=nothing,
                    recommend=lambda _p: [], modelfile=lambda _v, _p: "",
                    ollama_state=lambda: OllamaState(True, True, "bench", "127.0.0.1"),
                    ollama_models=lambda: [{"name": "bench:latest"}], ollama_loaded=list,
                    ollama_control=lambda _a: "", ollama_log=lambda _n: [], chat=chat, history=lambda: store,
                    pull=nothing, sources=lambda _v: [], disk_plan=lambda _v: {}, models_dir=Path(tempfile.gettempdir()))


class Stamped:
    """A backend wrapped to stamp each delta as it arrives: (seconds, characters received so far)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.arrivals: list[tuple[float, int]] = []

    def stream(self, messages: Sequence[Any], options: Any) -> Iterator[Any]:
        from dslocal.chat.events import AnswerDelta, ThinkingDelta

        chars = 0
        for event in self.inner.stream(messages, options):
            if isinstance(event, (ThinkingDelta, AnswerDelta)) and event.text:
                chars += len(event.text)
                self.arrivals.append((time.perf_counter(), chars))
            yield event


FIRST_PAINT: dict[str, float] = {}


def watch_first_paint() -> None:
    """Stamp the chat screen's first paint (its compositor's first refresh), once per screen."""
    from textual.screen import Screen

    from dslocal.tui.screens.chat import ChatScreen

    def refresh(self: Any) -> None:
        Screen._compositor_refresh(self)
        FIRST_PAINT.setdefault(str(id(self)), time.perf_counter())

    ChatScreen._compositor_refresh = refresh  # type: ignore[method-assign]


async def first_screen(app: Any, pilot: Any) -> float:
    """Wait for the chat screen's first paint; the time it happened."""
    from dslocal.tui.screens.chat import ChatScreen

    while not isinstance(app.screen, ChatScreen) or str(id(app.screen)) not in FIRST_PAINT:
        await asyncio.sleep(0.001)
    return FIRST_PAINT[str(id(app.screen))]


def first_screen_only() -> None:
    """In a fresh process: imports, make_app, first refresh of the chat screen (printed as JSON)."""
    started = time.perf_counter()
    from dslocal.tui.app import make_app

    imported = time.perf_counter()
    watch_first_paint()

    async def run() -> float:
        app = make_app(services(lambda name: None, None), first="chat")
        async with app.run_test(size=SIZE) as pilot:
            return await first_screen(app, pilot)

    painted = asyncio.run(run())
    print(json.dumps({"imports": imported - started, "total": painted - started}))


def textual_markdown_body() -> type:
    """The reference: the answer in Textual's own Markdown widget, grown with ``Markdown.append`` (what
    ``MarkdownStream`` calls), in place of the screen's AnswerBody."""
    from textual.widgets import Markdown

    class TextualMarkdownBody(Markdown):
        def __init__(self, text: str = "", *, classes: str | None = None, streaming: bool = False) -> None:
            super().__init__(text, classes=classes)

        def append(self, text: str) -> Any:  # type: ignore[override]
            return super().append(text)  # awaited by the screen's draw, so the lag counts it

        def reset(self) -> None:
            self.update("")

        def finish(self) -> None:
            pass

    return TextualMarkdownBody


async def one_run(streamer: Any, n_tokens: int, rate: float, expected_chars: int) -> dict[str, Any]:
    from dslocal.chat.backends.ollama import OllamaChat
    from dslocal.chat.connect import Target
    from dslocal.chat.history import HistoryStore
    from dslocal.chat.rules import rules_for
    from dslocal.ollama.client import OllamaClient
    from dslocal.tui.app import make_app
    from dslocal.tui.widgets.chat_answer import AnswerView, PromptArea

    url = streamer.url(rate)
    client = OllamaClient(url.split("/r?")[0])
    client.chat_stream = lambda body, timeout=None: client._stream(url.split(client.url)[1], body, timeout)  # type: ignore[method-assign]
    backend = Stamped(OllamaChat(client, "bench"))
    connected: list[float] = []

    def chat(name: str) -> Any:
        return Target(backend, rules_for("r1-distill-qwen-7b"), name)

    renders: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as folder, HistoryStore(Path(folder) / "h.sqlite3") as store:
        FIRST_PAINT.clear()
        started = time.perf_counter()
        app = make_app(services(chat, store), first="chat")
        async with app.run_test(size=SIZE) as pilot:
            painted = await first_screen(app, pilot)
            screen = app.screen
            while screen.session is None:
                await asyncio.sleep(0.005)
            connected.append(time.perf_counter())
            # A draw counts once the screen has painted it: the compositor's next refresh after the draw.
            handed = [0]
            screen.render_hook = lambda chars: handed.__setitem__(0, chars)
            compositor_refresh = screen._compositor_refresh

            def painted_now() -> None:
                compositor_refresh()
                if handed[0] > (renders[-1][1] if renders else 0):
                    renders.append((time.perf_counter(), handed[0]))

            screen._compositor_refresh = painted_now
            screen.query_one(PromptArea).insert("Why is the sky blue?")
            cpu0, wall0 = cpu(), time.perf_counter()
            await pilot.press("enter")
            deadline = time.monotonic() + 10 * n_tokens / rate + 60
            while screen.stream is not None or not screen.query(AnswerView) or screen.query(AnswerView).last().streaming:
                if time.monotonic() > deadline or app._exit_renderables or app.return_code is not None:
                    raise RuntimeError("the chat screen never finished the answer")
                await asyncio.sleep(0.01)
            await pilot.pause()
            wall, used = time.perf_counter() - wall0, cpu() - cpu0
            view = screen.query(AnswerView).last()
            shown = len(view.thinking) + len(view.body.source)
            saved = store.latest().messages[-1]
    arrivals = backend.arrivals
    lags = []
    j = 0
    for when, chars in arrivals:
        while j < len(renders) and renders[j][1] < chars:
            j += 1
        lags.append(renders[j][0] - when if j < len(renders) else float("inf"))
    # The lag at 25/50/75%: the median over the chunks of the 2.5% of the stream up to that point (a single
    # chunk's lag depends on where it fell between two draws); at 100%: the last chunk itself.
    window = max(1, len(lags) // 40)
    at = {pct: statistics.median(lags[max(0, round(len(lags) * pct / 100) - window):round(len(lags) * pct / 100)])
          for pct in (25, 50, 75)}
    at[100] = lags[-1]
    return {"first_paint": painted - started, "connected": connected[0] - started, "lags": at,
            "worst": max(lags), "p95": sorted(lags)[int(len(lags) * 0.95)], "draws": len(renders), "wall": wall,
            "cpu_per_1k": used / n_tokens * 1000, "chunks": len(arrivals), "shown": shown,
            "received": arrivals[-1][1] if arrivals else 0, "saved_ok": not saved.partial and bool(saved.content)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the reference run with Textual's Markdown.append (not part of the verdict)")
    parser.add_argument("--first-screen-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first_screen_only:
        first_screen_only()
        return 0

    cold = []
    for _ in range(3):  # a fresh process: what 'dslocal tui' pays before its first screen
        out = subprocess.run([sys.executable, __file__, "--first-screen-only"], capture_output=True, text=True,
                             check=True)
        cold.append(json.loads(out.stdout.strip().splitlines()[-1]))

    from chat_stream import (  # the loopback server of chat_stream.py
        Streamer,
        lines,
        tokens,
    )

    watch_first_paint()
    pieces = tokens(args.tokens)
    streamer = Streamer(lines(pieces))
    streamer.start()  # forks before any thread of this process starts
    expected = sum(map(len, pieces))
    print(f"{len(pieces)} tokens ({expected} characters), paced at {args.rate:g} tok/s, screen {SIZE[0]}x{SIZE[1]}")
    runs = []
    for number in range(args.repeat):
        result = asyncio.run(one_run(streamer, len(pieces), args.rate, expected))
        runs.append(result)
        lags = result["lags"]
        print(f"  run {number + 1}: lag 25% {lags[25] * 1000:5.1f} ms, 50% {lags[50] * 1000:5.1f} ms,"
              f" 75% {lags[75] * 1000:5.1f} ms, last {lags[100] * 1000:5.1f} ms; worst {result['worst'] * 1000:5.1f} ms,"
              f" p95 {result['p95'] * 1000:5.1f} ms; {result['draws']} draws in {result['wall']:.2f} s"
              f" ({result['draws'] / result['wall']:.1f}/s); CPU {result['cpu_per_1k']:.3f} s per 1k tokens;"
              f" first paint {result['first_paint'] * 1000:.0f} ms, model connected {result['connected'] * 1000:.0f} ms;"
              f" {result['chunks']} chunks, {result['shown']} characters shown")

    reference = None
    if not args.no_reference:
        from dslocal.tui.widgets import chat_answer as chat

        body, chat.AnswerBody = chat.AnswerBody, textual_markdown_body()
        try:
            reference = asyncio.run(one_run(streamer, len(pieces), args.rate, expected))
        finally:
            chat.AnswerBody = body
        lags = reference["lags"]
        print(f"  reference, Textual's Markdown.append: lag 25% {lags[25] * 1000:5.0f} ms, 50% {lags[50] * 1000:5.0f} ms,"
              f" 75% {lags[75] * 1000:5.0f} ms, last {lags[100] * 1000:5.0f} ms; {reference['draws']} draws"
              f" ({reference['draws'] / reference['wall']:.1f}/s); CPU {reference['cpu_per_1k']:.3f} s per 1k tokens")

    def med(key: str, pct: int | None = None) -> float:
        return statistics.median(r[key][pct] if pct else r[key] for r in runs)

    cold_total = statistics.median(c["total"] for c in cold)
    cold_imports = statistics.median(c["imports"] for c in cold)
    print()
    print(f"{'figure':44s} {'median':>10s}")
    for pct in (25, 50, 75, 100):
        label = "lag of the last chunk" if pct == 100 else f"lag at {pct}% (median of 2.5%)"
        print(f"{label:44s} {med('lags', pct) * 1000:8.1f} ms")
    print(f"{'worst lag of any chunk':44s} {med('worst') * 1000:8.1f} ms")
    print(f"{'draws per second':44s} {statistics.median(r['draws'] / r['wall'] for r in runs):8.1f}")
    print(f"{'CPU per 1,000 tokens':44s} {med('cpu_per_1k'):8.3f} s")
    print(f"{'first screen, this process (make_app + paint)':44s} {med('first_paint') * 1000:8.0f} ms")
    print(f"{'first screen, fresh process (with imports)':44s} {cold_total * 1000:8.0f} ms"
          f"  (imports {cold_imports * 1000:.0f} ms)")
    print(f"{'model connected (make_app to ready to send)':44s} {med('connected') * 1000:8.0f} ms")

    complete = all(r["shown"] == r["received"] and r["saved_ok"] for r in runs)
    lag_ok = all(med("lags", pct) < LAG_TARGET for pct in (25, 50, 75, 100))
    screen_ok = cold_total < FIRST_SCREEN_TARGET and med("first_paint") < FIRST_SCREEN_TARGET
    verdict = "PASS" if lag_ok and screen_ok and complete else "FAIL"
    print(f"\nlast chunk {med('lags', 100) * 1000:.1f} ms (target under {LAG_TARGET * 1000:.0f} ms, every quartile too),"
          f" first screen {cold_total * 1000:.0f} ms (target under {FIRST_SCREEN_TARGET * 1000:.0f} ms)"
          f"{'' if complete else ', TEXT MISSING'}: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
