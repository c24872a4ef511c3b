"""Whether a running cluster answers: each node's health and models, the model and context, one reasoned reply.

What the engines serve (their sources: sglang/srt/entrypoints/http_server.py, vllm/entrypoints/serve/):

* ``GET /health``: 200 when the engine is up (503 while starting or dead), an empty body;
* ``GET /v1/models``: ``{"object": "list", "data": [{"id": NAME, "max_model_len": TOKENS, ...}]}`` on
  both (SGLang's card carries ``max_model_len`` = its context length too);
* ``POST /v1/chat/completions``: the reasoning in ``message.reasoning_content`` (SGLang) or
  ``message.reasoning`` (vLLM since it renamed the field), the answer in ``message.content``.

Worker nodes of SGLang and vLLM's headless nodes serve no HTTP: their refusal is reported, and is
expected, for every URL but the head's. The API key goes in the Authorization header, never in a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

CONNECT_TIMEOUT = 3.05
CHAT_TIMEOUT = 120  # a reasoning model thinks before it answers
PROMPT = "What is 17 + 25? Answer with the number only."


@dataclass(frozen=True)
class NodeCheck:
    url: str
    reachable: bool
    healthy: bool
    models: tuple[tuple[str, int | None], ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChatCheck:
    ok: bool
    reasoning: bool
    content: str = ""
    problem: str = ""


@dataclass(frozen=True)
class ClusterReport:
    nodes: tuple[NodeCheck, ...]
    chat: ChatCheck | None
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems


def _get(session: requests.Session, url: str) -> requests.Response:
    return session.get(url, timeout=(CONNECT_TIMEOUT, 15))


def check_node(session: requests.Session, url: str, model: str | None, ctx: int | None) -> NodeCheck:
    try:
        health = _get(session, f"{url}/health")
    except requests.ConnectionError:
        return NodeCheck(url, False, False, problems=(f"{url}: nothing answers (connection refused or no route)",))
    except requests.Timeout:
        return NodeCheck(url, False, False, problems=(f"{url}: no answer within {CONNECT_TIMEOUT:.0f} s",))
    problems = [] if health.status_code == 200 else [f"{url}/health answered {health.status_code}"
                                                     + (" (still loading)" if health.status_code == 503 else "")]
    try:
        listing = _get(session, f"{url}/v1/models")
        if listing.status_code == 401:
            return NodeCheck(url, True, not problems, problems=(*problems, f"{url}/v1/models refused the API key (401)"))
        listing.raise_for_status()
        cards = listing.json().get("data") or []
        models = tuple((str(c.get("id")), c.get("max_model_len")) for c in cards if isinstance(c, dict))
    except (requests.RequestException, ValueError, AttributeError) as exc:
        return NodeCheck(url, True, not problems, problems=(*problems, f"{url}/v1/models: {type(exc).__name__}"))
    problems += _model_problems(url, models, model, ctx)
    return NodeCheck(url, True, health.status_code == 200, models, tuple(problems))


def _model_problems(url: str, models: tuple[tuple[str, int | None], ...], model: str | None,
                    ctx: int | None) -> list[str]:
    if not models:
        return [f"{url} serves no model"]
    names = [name for name, _ in models]
    if model is not None and model not in names:
        return [f"{url} serves {', '.join(names)}, not {model}"]
    length = dict(models).get(model or names[0])
    if ctx is not None and length is not None and length < ctx:
        return [f"{url} serves {model or names[0]} with a context of {length} tokens, less than the plan's {ctx}"]
    return []


def check_chat(session: requests.Session, url: str, model: str) -> ChatCheck:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2048,
            "chat_template_kwargs": {"thinking": True}}  # V3.1/V3.2's hybrid thinking; R1 always reasons
    try:
        reply = session.post(f"{url}/v1/chat/completions", json=body, timeout=(CONNECT_TIMEOUT, CHAT_TIMEOUT))
        reply.raise_for_status()
        message = reply.json()["choices"][0]["message"]
    except (requests.RequestException, ValueError, KeyError, IndexError, TypeError) as exc:
        return ChatCheck(False, False, problem=f"chat completion through {url} failed: {_why(exc)}")
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    content = message.get("content") or ""
    if not content.strip():
        return ChatCheck(False, bool(reasoning), problem=f"the chat completion through {url} came back empty")
    if not reasoning.strip():
        return ChatCheck(False, False, content, f"the reply through {url} has no reasoning: start the engine with "
                                                "--reasoning-parser (as the plan's commands do)")
    return ChatCheck(True, True, content)


def _why(exc: Exception) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return type(exc).__name__


def check_cluster(urls: list[str], model: str | None = None, ctx: int | None = None,
                  api_key: str | None = None) -> ClusterReport:
    """Every URL's health and models; then one chat completion through the first (the head)."""
    session = requests.Session()
    if api_key:
        session.headers["Authorization"] = f"Bearer {api_key}"
    nodes = tuple(check_node(session, url.rstrip("/"), model, ctx) for url in urls)
    head = nodes[0]
    problems = [p for node in nodes for p in node.problems]
    chat = None
    if head.reachable and head.models and not head.problems:
        chat = check_chat(session, head.url, model or head.models[0][0])
        if not chat.ok:
            problems.append(chat.problem)
    elif head.reachable or not problems:
        problems.append(f"no chat completion tried: the head node {head.url} is not ready")
    return ClusterReport(nodes, chat, tuple(problems))
