"""The DeepSeek API as the cloud alternative when this machine is too small.

It speaks the OpenAI protocol at ``https://api.deepseek.com`` (TLS verified, always). The model is
``deepseek-flash`` unless the user names another (sent as given: ``deepseek-v4-pro``, or the legacy
``deepseek-v4-flash``, which the API still serves with the same model); the pricing page lists the
models, and ``deepseek-chat``/``deepseek-reasoner`` are retired (the API answers 400 "Model Not Exist").
Thinking is a request field, not a model (guides/thinking_mode): ``{"thinking": {"type":
"enabled"|"disabled"}}`` and ``reasoning_effort`` (``low``, ``high``, ``max``; on by default at ``high``),
sent by the "deepseek" dialect of :func:`dslocal.chat.backends.openai.think_fields`. Reasoning streams in
``delta.reasoning_content``. ``content`` is the final answer verbatim (the API never puts ``<think>``
tags in it), so it is not parsed for tags: an answer that talks about ``</think>`` stays the answer. The
key comes from ``DEEPSEEK_API_KEY`` or the OS keyring (dslocal.chat.keys).
"""

from __future__ import annotations

from dslocal.chat.backends.openai import OpenAIChat
from dslocal.chat.keys import get_key, spec
from dslocal.errors import ConfigError

DEFAULT_URL = "https://api.deepseek.com"
DEFAULT_MODEL = "deepseek-flash"  # quick_start/pricing: "use deepseek-flash as the model name"
MODELS = ("deepseek-flash", "deepseek-v4-pro")
# The effort levels /think can name, in ModelRules order (the first is the default: the API's own, high).
# "medium" is not among them: resolve_think sends it as the first ("high"), as the API itself maps it.
THINK_LEVELS = ("high", "low", "max")


class DeepSeekChat(OpenAIChat):
    name = "deepseek"

    def __init__(self, model: str | None = None, *, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 read_timeout: float = 600.0) -> None:
        key = api_key or get_key("deepseek")
        if not key:
            env = spec("deepseek").env
            raise ConfigError("no DeepSeek API key", f"set {env}, or store one with 'dslocal key set deepseek'")
        if not base_url.startswith("https://") and not _local(base_url):
            raise ConfigError(f"{base_url} is not https", "the DeepSeek API is only used over verified TLS")
        super().__init__(base_url, model or DEFAULT_MODEL, api_key=key, dialect="deepseek", start="answer",
                         read_timeout=read_timeout)

    def model_hint(self) -> str:
        return (f"the DeepSeek API's models are {' and '.join(MODELS)} (deepseek-chat and deepseek-reasoner are "
                "retired: name none, and /think on|off|low|high|max picks the mode)")


def _local(url: str) -> bool:
    from dslocal.chat.backends.openai import is_loopback

    return url.startswith("http://") and is_loopback(url)
