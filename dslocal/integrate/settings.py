"""The exact settings each client needs for a local DeepSeek (or the DeepSeek API).

Sources the fields follow (the tests cite them too):
* Dify: langgenius/dify-official-plugins @7af22831 (2026-08-21), ``models/ollama/provider/ollama.yaml``
  (Model Name, Base URL, API Key (optional), Completion mode, Model context size, Upper bound for max
  tokens, Vision support, Function call support) and ``models/ollama/models/llm/llm.py`` (per-app
  parameters, among them ``num_ctx`` default 2048 and "GPU Layers" ``num_gpu`` default 1);
  ``models/openai_api_compatible/provider/openai_api_compatible.yaml`` for ``dslocal serve``;
  ``models/deepseek/provider/deepseek.yaml`` and ``models/llm/_position.yaml`` for the API.
* Open WebUI: ``OLLAMA_BASE_URL``, ``OPENAI_API_BASE_URL``, ``OPENAI_API_KEY`` (its .env.example and
  compose files), ``host.docker.internal:host-gateway`` on Linux.
* Continue: config.yaml ``models`` entries (name, provider, model, apiBase, apiKey, roles,
  capabilities, defaultCompletionOptions.contextLength / maxTokens) and ``${{ secrets.NAME }}``.
No output ever holds a key: a placeholder, and where the key comes from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from dslocal.errors import UsageError
from dslocal.integrate.endpoint import Endpoint
from dslocal.integrate.model import ModelInfo

CLIENTS = ("dify", "openwebui", "openai", "continue")
WHERE = ("docker", "host", "lan")
DEFAULT_WHERE = {"dify": "docker", "openwebui": "docker", "openai": "host", "continue": "host"}
DOCKER_HOST = "host.docker.internal"
DEEPSEEK_MODEL = "deepseek-v4-flash"  # the first model of Dify's DeepSeek plugin (_position.yaml)
DEEPSEEK_CONTEXT = 1_000_000  # deepseek-v4-flash.yaml: context_size
DEEPSEEK_MAX_TOKENS = 384_000  # deepseek-v4-flash.yaml: max_tokens max


@dataclass(frozen=True)
class Field:
    label: str  # as the client shows it
    key: str  # the form's variable, the environment variable or the config key
    value: str
    note: str = ""


@dataclass(frozen=True)
class ClientSettings:
    client: str
    engine: str
    provider: str
    base_url: str
    fields: tuple[Field, ...]
    leave_unset: tuple[Field, ...] = ()
    snippets: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["snippets"] = [{"title": t, "text": s} for t, s in self.snippets]
        return data


def client_url(endpoint: Endpoint, where: str, lan: str | None = None) -> str:
    """The base URL a client running ``where`` reaches ``endpoint`` at."""
    if not endpoint.local or where == "host":
        return endpoint.url
    if where == "docker":
        return endpoint.at(DOCKER_HOST)
    if where == "lan":
        if not lan:
            raise UsageError("this machine has no LAN address", "connect it to a network, or use --where host")
        return endpoint.at(lan)
    raise UsageError(f"unknown place {where!r}", f"one of {', '.join(WHERE)}")


def _yes(flag: bool) -> str:
    return "Yes" if flag else "No"


def _reach_notes(endpoint: Endpoint, where: str) -> list[str]:
    if not endpoint.local or where == "host":
        return []
    notes = []
    if where == "docker":
        notes.append(f"{DOCKER_HOST} is built into Docker Desktop; on Linux add "
                     f"'extra_hosts: [\"{DOCKER_HOST}:host-gateway\"]' to the containers that call the model")
    what = "Ollama" if endpoint.engine == "ollama" else "dslocal serve"
    fix = ("'dslocal ollama expose --docker' (containers on this machine only) or '--lan'"
           if endpoint.engine == "ollama" else "'dslocal serve MODEL --host 0.0.0.0 --api-key KEY'")
    notes.append(f"{what} must listen beyond 127.0.0.1 for this to answer: {fix}; "
                 "'dslocal integrate check' proves it")
    return notes


def for_client(client: str, endpoint: Endpoint, model: ModelInfo, where: str | None = None,
               lan: str | None = None) -> ClientSettings:
    if client not in CLIENTS:
        raise UsageError(f"unknown client {client!r}", f"one of {', '.join(CLIENTS)}")
    where = where or DEFAULT_WHERE[client]
    url = client_url(endpoint, where, lan)
    build = {"dify": _dify, "openwebui": _openwebui, "openai": _openai, "continue": _continue}[client]
    settings = build(endpoint, model, url)
    notes = (*settings.notes, *_reach_notes(endpoint, where), *model.notes)
    return ClientSettings(settings.client, settings.engine, settings.provider, settings.base_url, settings.fields,
                          settings.leave_unset, settings.snippets, notes)


# -- Dify --------------------------------------------------------------------------------------------------

def _dify(endpoint: Endpoint, model: ModelInfo, url: str) -> ClientSettings:
    if endpoint.engine == "deepseek":
        return _dify_deepseek(endpoint, url)
    if endpoint.engine == "serve":
        return _dify_openai_compatible(endpoint, model, url)
    fields = (
        Field("Model Name", "model", model.name),
        Field("Base URL", "base_url", url, "the host root, without /api"),
        Field("API Key (optional)", "api_key", "", "leave blank: Ollama takes no key"),
        Field("Completion mode", "mode", "Chat", "chat: /api/chat, with thinking and tool calls"),
        Field("Model context size", "context_size", str(model.num_ctx),
              f"= num_ctx, from {model.context_source}; Dify only budgets prompts with it"),
        Field("Upper bound for max tokens", "max_tokens", str(model.max_tokens), "half the window, reasoning included"),
        Field("Vision support", "vision_support", _yes(model.vision), f"from {model.capability_source}"),
        Field("Function call support", "function_call_support", _yes(model.tools), f"from {model.capability_source}"),
    )
    unset = (
        Field("GPU Layers", "num_gpu", "", "leave it off: its default 1 becomes -ngl 1 (one layer on the GPU) on "
              "Ollama >= 0.30; unset, Ollama lets llama-server fit the model"),
        Field("Size of context window", "num_ctx", "", f"leave it off so the Modelfile's num_ctx {model.num_ctx} "
              "applies (its default 2048 would shrink the window); if set, set exactly that"),
    )
    notes = ["Settings > Model Providers > Ollama > Add Model; the model type is LLM"]
    if model.thinking:
        notes.append("thinking arrives in Ollama's 'thinking' field; the Ollama plugin shows it as reasoning "
                     "(plugins before 2025-11 dropped it: update the plugin)")
    return ClientSettings("dify", endpoint.engine, "Ollama (langgenius/ollama plugin)", url, fields, unset, (), tuple(notes))


def _thinking_mode(model: ModelInfo) -> str:
    if not model.thinking:
        return "not_supported"
    return "supported" if model.catalog_id and _hybrid(model) else "only_thinking_supported"


def _hybrid(model: ModelInfo) -> bool:
    from dslocal.chat.rules import rules_for

    return rules_for(model.catalog_id or model.name).thinking in ("hybrid", "levels")


def _dify_openai_compatible(endpoint: Endpoint, model: ModelInfo, url: str) -> ClientSettings:
    fields = (
        Field("Model Name", "model", model.catalog_id or model.name, "the id that /v1/models lists"),
        Field("API Key", "api_key", endpoint.key_placeholder or "", endpoint.key_help or ""),
        Field("API Base URL", "endpoint_url", f"{url}/v1"),
        Field("Completion mode", "mode", "Chat"),
        Field("Model context size", "context_size", str(model.num_ctx), f"from {model.context_source}"),
        Field("Upper bound for max tokens", "max_tokens_to_sample", str(model.max_tokens)),
        Field("Thinking Mode Support", "agent_thought_support", _thinking_mode(model),
              "reasoning arrives in 'reasoning_content', which the plugin reads"),
        Field("Function Call Type", "function_calling_type", "Tool Call" if model.tools else "Not Support"),
        Field("Vision Support", "vision_support", "Not Support" if not model.vision else "Support"),
    )
    return ClientSettings("dify", endpoint.engine, "OpenAI-API-compatible (langgenius/openai_api_compatible plugin)",
                          url, fields, (), (), ("Settings > Model Providers > OpenAI-API-compatible > Add Model",))


def _dify_deepseek(endpoint: Endpoint, url: str) -> ClientSettings:
    fields = (
        Field("API Key", "api_key", endpoint.key_placeholder or "", endpoint.key_help or ""),
        Field("API Base URL", "endpoint_url", url, "optional; this is the default"),
    )
    notes = (f"the DeepSeek plugin lists its models itself ({DEEPSEEK_MODEL} first, context {DEEPSEEK_CONTEXT}); "
             "reasoning arrives in 'reasoning_content'", "paste the key into Dify's form yourself: dslocal never prints it")
    return ClientSettings("dify", "deepseek", "DeepSeek (langgenius/deepseek plugin)", url, fields, (), (), notes)


# -- Open WebUI --------------------------------------------------------------------------------------------

def _compose(environment: list[str]) -> str:
    env = "\n".join(f"      {line}" for line in environment)
    return ("services:\n  open-webui:\n    image: ghcr.io/open-webui/open-webui:main\n    ports:\n"
            "      - \"127.0.0.1:3000:8080\"\n    environment:\n" + env + "\n"
            "    extra_hosts:\n      - \"host.docker.internal:host-gateway\"\n    volumes:\n"
            "      - open-webui:/app/backend/data\nvolumes:\n  open-webui:\n")


def _openwebui(endpoint: Endpoint, model: ModelInfo, url: str) -> ClientSettings:
    if endpoint.engine == "ollama":
        fields = (Field("Ollama API URL", "OLLAMA_BASE_URL", url, "the host root, without /api"),)
        environment = [f"OLLAMA_BASE_URL: {url}"]
        notes = [f"pick {model.name} in the model list; thinking arrives in Ollama's 'thinking' field"]
    else:
        base = endpoint.openai_base if endpoint.engine == "deepseek" else f"{url}/v1"
        fields = (Field("OpenAI API URL", "OPENAI_API_BASE_URL", base),
                  Field("OpenAI API Key", "OPENAI_API_KEY", endpoint.key_placeholder or "", endpoint.key_help or ""),
                  Field("Ollama API", "ENABLE_OLLAMA_API", "false", "no Ollama behind it"))
        environment = [f"OPENAI_API_BASE_URL: {base}", f"OPENAI_API_KEY: ${{{endpoint.key_env}}}",
                       "ENABLE_OLLAMA_API: \"false\""]
        notes = [f"compose takes {endpoint.key_env} from the shell that runs 'docker compose up': the key stays out "
                 "of the file", "reasoning arrives in 'reasoning_content'"]
    snippet = ("docker-compose.yaml", _compose(environment))
    run = ("docker run", "docker run -d -p 127.0.0.1:3000:8080 --add-host=host.docker.internal:host-gateway "
           + " ".join(f"-e {line.split(': ', 1)[0]}={_shell_value(line)}" for line in environment)
           + " -v open-webui:/app/backend/data --name open-webui ghcr.io/open-webui/open-webui:main")
    return ClientSettings("openwebui", endpoint.engine, "Open WebUI", url, fields, (), (snippet, run), tuple(notes))


def _shell_value(line: str) -> str:
    value = line.split(": ", 1)[1].strip('"')
    return f"\"{value}\"" if value.startswith("$") else value


# -- OpenAI SDKs -------------------------------------------------------------------------------------------

def _openai(endpoint: Endpoint, model: ModelInfo, url: str) -> ClientSettings:
    base = endpoint.openai_base if endpoint.engine == "deepseek" else f"{url}/v1"
    name = DEEPSEEK_MODEL if endpoint.engine == "deepseek" else (
        model.name if endpoint.engine == "ollama" else model.catalog_id or model.name)
    field = endpoint.reasoning_openai
    if endpoint.key_env:
        key_value, key_code = endpoint.key_placeholder or "", f'os.environ["{endpoint.key_env}"]'
    else:
        key_value, key_code = "ollama", '"ollama"'
    fields = (
        Field("base URL", "OPENAI_BASE_URL", base),
        Field("API key", "OPENAI_API_KEY", key_value,
              endpoint.key_help or "any non-empty text: the SDK needs one, Ollama ignores it"),
        Field("model", "model", name),
        Field("reasoning", field, f"choices[0].message.{field} / choices[0].delta.{field}",
              "Ollama's /v1 sends 'reasoning', not 'reasoning_content'" if field == "reasoning"
              else "not in content: read it from this field"),
    )
    code = (f"import os\nfrom openai import OpenAI\n\nclient = OpenAI(base_url=\"{base}\", api_key={key_code})\n"
            f"reply = client.chat.completions.create(model=\"{name}\", "
            "messages=[{\"role\": \"user\", \"content\": \"Hello\"}])\n"
            f"message = reply.choices[0].message\nprint(getattr(message, \"{field}\", None))  # the reasoning\n"
            "print(message.content)  # the answer\n")
    notes = ("the key is read from the environment at run time; never put it in code or config files",) if endpoint.key_env else ()
    return ClientSettings("openai", endpoint.engine, "OpenAI SDKs (Python, JavaScript, ...)", base, fields, (),
                          (("python", code),), notes)


# -- Continue ----------------------------------------------------------------------------------------------

def _continue(endpoint: Endpoint, model: ModelInfo, url: str) -> ClientSettings:
    if endpoint.engine == "deepseek":
        provider, name, base, ctx, limit = "deepseek", DEEPSEEK_MODEL, endpoint.url, DEEPSEEK_CONTEXT, 8192
        capabilities = ["tool_use"]
    else:
        provider = "ollama" if endpoint.engine == "ollama" else "openai"
        name = model.name if endpoint.engine == "ollama" else model.catalog_id or model.name
        base, ctx, limit = (url if provider == "ollama" else f"{url}/v1"), model.num_ctx, model.max_tokens
        capabilities = [c for c, has in (("tool_use", model.tools), ("image_input", model.vision)) if has]
    lines = ["name: dslocal", "version: 0.0.1", "schema: v1", "models:", f"  - name: {name} (dslocal)",
             f"    provider: {provider}", f"    model: {name}", f"    apiBase: {base}"]
    if endpoint.key_env:
        lines.append(f"    apiKey: ${{{{ secrets.{endpoint.key_env} }}}}")
    lines += ["    roles: [chat, edit, apply]"]
    if capabilities:
        lines.append(f"    capabilities: [{', '.join(capabilities)}]")
    lines += ["    defaultCompletionOptions:", f"      contextLength: {ctx}", f"      maxTokens: {limit}"]
    fields = (Field("provider", "provider", provider), Field("model", "model", name), Field("apiBase", "apiBase", base),
              Field("contextLength", "defaultCompletionOptions.contextLength", str(ctx)),
              Field("maxTokens", "defaultCompletionOptions.maxTokens", str(limit)))
    if endpoint.key_env:
        fields += (Field("apiKey", "apiKey", f"${{{{ secrets.{endpoint.key_env} }}}}", endpoint.key_help or ""),)
    notes = ("~/.continue/config.yaml; secrets come from ~/.continue/.env, never from this file",) if endpoint.key_env else (
        "~/.continue/config.yaml",)
    return ClientSettings("continue", endpoint.engine, "Continue (config.yaml)", base, fields, (),
                          (("config.yaml", "\n".join(lines) + "\n"),), notes)


def deepseek_model() -> ModelInfo:
    """The DeepSeek API's model as Dify's DeepSeek plugin describes it (deepseek-v4-flash.yaml)."""
    return ModelInfo(name=DEEPSEEK_MODEL, catalog_id=None, num_ctx=DEEPSEEK_CONTEXT,
                     context_source="Dify's DeepSeek plugin (deepseek-v4-flash.yaml)", vision=False, tools=True,
                     thinking=True, capability_source="Dify's DeepSeek plugin", pulled=True)
