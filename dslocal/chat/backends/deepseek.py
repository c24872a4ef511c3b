"""The DeepSeek API as the cloud alternative when this machine is too small.

It speaks the OpenAI protocol at ``https://api.deepseek.com`` (TLS verified, always); the model name
chooses the mode: ``deepseek-reasoner`` thinks (reasoning in ``reasoning_content``), ``deepseek-chat``
does not. ``content`` is the final answer verbatim (the API never puts ``<think>`` tags in it), so it is
not parsed for tags: an answer that talks about ``</think>`` stays the answer. The key comes from
``DEEPSEEK_API_KEY`` or the OS keyring (dslocal.chat.keys).
"""

from __future__ import annotations

from dslocal.chat.backends.openai import OpenAIChat
from dslocal.chat.events import ChatOptions
from dslocal.chat.keys import get_key, spec
from dslocal.errors import ConfigError

DEFAULT_URL = "https://api.deepseek.com"
THINKING_MODEL = "deepseek-reasoner"
CHAT_MODEL = "deepseek-chat"


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
        super().__init__(base_url, model or THINKING_MODEL, api_key=key, dialect="deepseek", start="answer",
                         read_timeout=read_timeout)
        self.fixed_model = model  # a name the user chose wins over the think switch

    def model_hint(self) -> str:
        return f"the DeepSeek API's models are {CHAT_MODEL} and {THINKING_MODEL} (or name none: /think picks)"

    def request_model(self, options: ChatOptions) -> str:
        if self.fixed_model:
            return self.fixed_model
        return CHAT_MODEL if options.think is False else THINKING_MODEL


def _local(url: str) -> bool:
    from dslocal.chat.backends.openai import is_loopback

    return url.startswith("http://") and is_loopback(url)
