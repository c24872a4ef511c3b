"""The live check, from where the client sits: does the endpoint answer, has it the model, does it chat?

Each probe is ``ok``, ``failed`` (with the cause and the fix) or ``skipped`` (with the reason). The
addresses tried: the host's (what the endpoint is configured at), the Docker bridge gateway (what
``host.docker.internal:host-gateway`` resolves to; only when a Docker daemon answers), and the LAN address
(when asked). A refused connection is explained by the sockets that listen on the port (``/proc/net``):
nothing at all, or loopback only. A short chat proves the model answers and says where its thinking
arrives: a field of its own (``thinking``, ``reasoning``, ``reasoning_content``), inline ``<think>``, or none.
The key is sent in the Authorization header only; it never appears in a probe's text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import requests

from dslocal.integrate import network
from dslocal.integrate.endpoint import Endpoint

CONNECT_TIMEOUT = 3.0
PROMPT = "Reply with one word: OK."


@dataclass(frozen=True)
class Probe:
    name: str
    url: str
    state: str  # ok, failed, skipped
    detail: str
    cause: str | None = None
    fix: str | None = None


@dataclass(frozen=True)
class CheckReport:
    engine: str
    model: str
    probes: tuple[Probe, ...]
    thinking: str | None = None  # where the reasoning arrived, when the chat ran

    @property
    def ok(self) -> bool:
        return all(p.state != "failed" for p in self.probes)

    def as_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "model": self.model, "ok": self.ok, "thinking": self.thinking,
                "probes": [asdict(p) for p in self.probes]}


def _scrub(text: str, key: str | None) -> str:
    return text.replace(key, "****") if key else text


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _health_path(endpoint: Endpoint) -> str:
    return "/api/version" if endpoint.engine == "ollama" else ("/models" if endpoint.engine == "deepseek" else "/v1/models")


def _address_fix(endpoint: Endpoint, name: str) -> str:
    if endpoint.engine == "ollama":
        flag = "--docker" if name == "docker bridge" else "--lan"
        return f"make Ollama listen there: 'dslocal ollama expose {flag}' (it warns what that exposes)"
    return "restart it on that address with a key: 'dslocal serve MODEL --host 0.0.0.0 --api-key KEY'"


def _refused(endpoint: Endpoint, name: str, host: str) -> tuple[str, str]:
    listening = network.listeners(endpoint.port)
    start = ("start it: 'dslocal ollama start'" if endpoint.engine == "ollama" else "start it: 'dslocal serve MODEL'")
    if listening is not None and not listening:
        return f"nothing listens on port {endpoint.port}", start
    loopback_target = _is_loopback(host)
    if listening and network.only_loopback(listening) and not loopback_target:
        return (f"the server listens on {', '.join(listening)} only (not on {host})", _address_fix(endpoint, name))
    if listening and not network.binds_everywhere(listening) and host not in listening:
        return f"the server listens on {', '.join(listening)}, not on {host}", _address_fix(endpoint, name)
    return f"{host}:{endpoint.port} refuses connections", start


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def reach(endpoint: Endpoint, name: str, host: str | None = None, key: str | None = None) -> Probe:
    """GET the endpoint's health path at ``host`` (default: the endpoint's own)."""
    host = host or endpoint.host
    base = endpoint.url if host == endpoint.host else endpoint.at(host)
    url = base + _health_path(endpoint)
    try:
        response = requests.get(url, headers=_headers(key), timeout=(CONNECT_TIMEOUT, 10))
    except requests.ConnectTimeout:
        return Probe(name, base, "failed", f"no answer from {host}:{endpoint.port} within {CONNECT_TIMEOUT:g} s",
                     f"a firewall drops connections to port {endpoint.port}",
                     _firewall_fix(endpoint, name))
    except requests.ConnectionError as exc:
        if "Name or service not known" in str(exc) or "nodename nor servname" in str(exc):
            return Probe(name, base, "failed", f"{host} does not resolve", f"{host} is not a known name here",
                         "inside containers add extra_hosts: host.docker.internal:host-gateway")
        cause, fix = _refused(endpoint, name, host)
        return Probe(name, base, "failed", "connection refused", cause, fix)
    except requests.RequestException as exc:
        return Probe(name, base, "failed", _scrub(f"{type(exc).__name__}", key), "the server does not answer HTTP",
                     "check what listens on that port")
    if response.status_code == 401:
        return Probe(name, base, "failed", "401: the server wants a key", "no key or a wrong key was sent",
                     f"set {endpoint.key_env} to the server's key" if endpoint.key_env else "give the server's key")
    if response.status_code == 403 and endpoint.engine == "ollama":
        return Probe(name, base, "failed", "403 Forbidden", "Ollama refuses this origin",
                     "add it to OLLAMA_ORIGINS (comma-separated) and restart Ollama")
    return Probe(name, base, "ok", f"answers (HTTP {response.status_code})")


def _firewall_fix(endpoint: Endpoint, name: str) -> str:
    if name == "docker bridge":
        return f"allow the bridge in: e.g. 'ufw allow from 172.16.0.0/12 to any port {endpoint.port} proto tcp'"
    return f"allow TCP {endpoint.port} from your LAN: e.g. 'ufw allow from 192.168.0.0/16 to any port {endpoint.port} proto tcp'"


def origin_probe(endpoint: Endpoint, origin: str) -> Probe:
    """Whether a browser page at ``origin`` may call the API (Ollama answers 403 to other origins)."""
    url = endpoint.url + _health_path(endpoint)
    try:
        response = requests.get(url, headers={"Origin": origin}, timeout=(CONNECT_TIMEOUT, 10))
    except requests.RequestException:
        return Probe("origin", endpoint.url, "skipped", "the server does not answer from the host")
    allowed = response.headers.get("Access-Control-Allow-Origin")
    if response.status_code == 403 or (allowed not in (origin, "*")):
        fix = (f"OLLAMA_ORIGINS={origin} in Ollama's environment, then restart it" if endpoint.engine == "ollama"
               else f"'dslocal serve MODEL --cors-origin {origin}'")
        return Probe("origin", endpoint.url, "failed", f"HTTP {response.status_code}, no CORS grant for {origin}",
                     "browsers refuse the answer to a page of another origin", fix)
    return Probe("origin", endpoint.url, "ok", f"{origin} is allowed")


def check_model(endpoint: Endpoint, model: str, key: str | None, resolve_name: Callable[[list[str]], str | None]) -> Probe:
    """Whether the server has ``model`` (Ollama: /api/tags; serve: /v1/models)."""
    url = endpoint.url + ("/api/tags" if endpoint.engine == "ollama" else "/v1/models")
    try:
        response = requests.get(url, headers=_headers(key), timeout=(CONNECT_TIMEOUT, 10))
        body = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        body = None
    if not isinstance(body, dict):
        return Probe("model", endpoint.url, "skipped", "the server did not list its models (the chat will say)")
    if endpoint.engine == "ollama":
        names = [str(m.get("name") or m.get("model")) for m in body.get("models") or []]
    else:
        names = [str(m.get("id")) for m in body.get("data") or []]
    found = resolve_name(names)
    if found is None:
        shown = ", ".join(names[:5]) or "none"
        fix = (f"pull it: 'dslocal pull {model}'" if endpoint.engine == "ollama"
               else f"serve it: 'dslocal serve {model}'")
        return Probe("model", endpoint.url, "failed", f"not among the server's models ({shown})",
                     f"{model} is not pulled" if endpoint.engine == "ollama" else f"{model} is not served", fix)
    return Probe("model", endpoint.url, "ok", f"{found} is there")


def _classify(message: dict[str, Any], field: str) -> str:
    if str(message.get(field) or "").strip():
        return f"separately, in '{field}'"
    for other in ("thinking", "reasoning", "reasoning_content"):
        if str(message.get(other) or "").strip():
            return f"separately, in '{other}'"
    if "<think>" in str(message.get("content") or "") or "</think>" in str(message.get("content") or ""):
        return "inline, as <think> in the content (the client must split it)"
    return "not at all (no reasoning in this answer)"


def chat(endpoint: Endpoint, model: str, key: str | None, *, native: bool, timeout: float = 300) -> tuple[Probe, str | None]:
    """One short chat as the client sends it: Ollama's /api/chat (native) or the OpenAI API."""
    if native:
        url, field = endpoint.url + "/api/chat", "thinking"
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": False,
                                "options": {"num_predict": 64}}
    else:
        url, field = endpoint.openai_base + "/chat/completions", endpoint.reasoning_openai
        body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "stream": False, "max_tokens": 64}
    try:
        response = requests.post(url, json=body, headers=_headers(key), timeout=(CONNECT_TIMEOUT, timeout))
    except requests.Timeout:
        return Probe("chat", url, "failed", f"no answer within {timeout:g} s", "the model is still loading or too slow",
                     "retry with a longer --timeout; 'dslocal ps' shows what is loaded"), None
    except requests.RequestException as exc:
        return Probe("chat", url, "failed", type(exc).__name__, "the server went away", "see the probes above"), None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code != 200:
        said = data.get("error") if isinstance(data, dict) else None
        said = said.get("message") if isinstance(said, dict) else said
        return Probe("chat", url, "failed", _scrub(f"HTTP {response.status_code}: {str(said or '')[:200]}", key),
                     _chat_cause(response.status_code), _chat_fix(endpoint, model, response.status_code)), None
    message = data.get("message") if native else ((data.get("choices") or [{}])[0].get("message") or {})
    thinking = _classify(message or {}, field)
    answer = str((message or {}).get("content") or "").strip()
    return Probe("chat", url, "ok", f"answered ({len(answer)} characters); thinking arrives {thinking}"), thinking


def _chat_cause(status: int) -> str:
    return {401: "the key is missing or wrong", 402: "the account's balance is used up",
            404: "the server has no such model", 400: "the server refused the request"}.get(status, "the server failed")


def _chat_fix(endpoint: Endpoint, model: str, status: int) -> str:
    if status == 404:
        return f"pull it: 'dslocal pull {model}'" if endpoint.engine == "ollama" else "name a model the server lists"
    if status == 401:
        return f"set {endpoint.key_env}" if endpoint.key_env else "give the server's key"
    if status == 402:
        return "top it up at https://platform.deepseek.com/top_up"
    return "see the server's log ('dslocal ollama logs')" if endpoint.engine == "ollama" else "see the server's log"


def bridge(endpoint: Endpoint, key: str | None, docker: network.Docker | None = None) -> Probe:
    docker = docker or network.docker_status()
    if not docker.available:
        return Probe("docker bridge", "", "skipped", f"no Docker here: {docker.reason}")
    if not docker.gateway:
        return Probe("docker bridge", "", "skipped", "Docker answers but its bridge has no gateway address")
    probe = reach(endpoint, "docker bridge", docker.gateway, key)
    if probe.state == "ok":
        return Probe(probe.name, probe.url, "ok", f"{probe.detail}; containers reach it as "
                     f"{endpoint.at('host.docker.internal')} with extra_hosts: host.docker.internal:host-gateway")
    return probe


def lan(endpoint: Endpoint, key: str | None, address: str | None = None) -> Probe:
    address = address or network.lan_address()
    if not address:
        return Probe("lan", "", "failed", "this machine has no LAN address", "no network but loopback",
                     "connect it to the network")
    probe = reach(endpoint, "lan", address, key)
    if probe.state == "ok":
        return Probe("lan", probe.url, "ok", f"{probe.detail} from this machine; other machines also need "
                     f"the firewall to let TCP {endpoint.port} in")
    return probe


def run_check(endpoint: Endpoint, model: str, key: str | None, *, native: bool, lan_wanted: bool = False,
              docker: network.Docker | None = None, origin: str | None = None,
              resolve_name: Callable[[list[str]], str | None] | None = None, timeout: float = 300) -> CheckReport:
    """Every probe a client's view needs, in order: host, Docker bridge, LAN (asked), origin (asked), model, chat."""
    resolve_name = resolve_name or (lambda names: model if model in names else None)
    host = reach(endpoint, "host", key=key)
    probes = [host]
    if endpoint.local:
        probes.append(bridge(endpoint, key, docker))
        if lan_wanted:
            probes.append(lan(endpoint, key))
    if origin:
        probes.append(origin_probe(endpoint, origin))
    thinking = None
    if host.state != "ok":
        probes.append(Probe("chat", "", "skipped", "the server does not answer from the host"))
        return CheckReport(endpoint.engine, model, tuple(probes))
    name = model
    if endpoint.engine != "deepseek":
        found = check_model(endpoint, model, key, resolve_name)
        probes.append(found)
        if found.state == "failed":
            probes.append(Probe("chat", "", "skipped", "the model is not there"))
            return CheckReport(endpoint.engine, model, tuple(probes))
        if found.state == "ok":
            name = found.detail.removesuffix(" is there")
    talk, thinking = chat(endpoint, name, key, native=native and endpoint.engine == "ollama", timeout=timeout)
    probes.append(talk)
    return CheckReport(endpoint.engine, name, tuple(probes), thinking)
